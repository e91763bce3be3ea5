# Copyright: (c) 2026, gpuserve.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of litellm_api: field comparison, update bodies, error messages, key files."""

from __future__ import annotations

import json

import pytest

from ansible_collections.gpuserve.vllm.plugins.module_utils.litellm_api import (
    LitellmClient,
    compute_changes,
    error_message,
    key_info,
    read_master_key_file,
    update_body,
)

ROW = {
    "token": "ab" * 32, "key_alias": "chat", "key_name": "sk-...wxyz", "models": ["b", "a"], "max_budget": 10,
    "budget_duration": "30d", "rpm_limit": 60, "tpm_limit": None, "max_parallel_requests": None,
    "metadata": {"owner": "chat", "tags": ["prod"], "logging": [{"callback_vars": {"k": "secret"}}]},
    "team_id": None, "user_id": "u1", "litellm_budget_table": {"budget_id": "b1", "soft_budget": 2.0},
}


def desired(**kwargs):
    base = dict.fromkeys(("models", "max_budget", "budget_duration", "soft_budget", "rpm_limit", "tpm_limit",
                          "max_parallel_requests", "metadata", "team_id", "user_id"))
    base.update(kwargs)
    return base


def test_unset_fields_are_not_managed():
    assert compute_changes(ROW, desired()) == ({}, {}, {})


def test_equal_values_make_no_change():
    changes, before, after = compute_changes(ROW, desired(
        models=["a", "b"], max_budget=10.0, soft_budget=2, rpm_limit=60, user_id="u1",
        metadata={"owner": "chat"}))
    assert changes == {}
    assert before["metadata"] == {"owner": "chat"}  # LiteLLM's own metadata keys are not compared
    assert before.keys() == after.keys()


def test_only_differing_fields_change():
    changes, before, after = compute_changes(ROW, desired(rpm_limit=90, max_budget=10, team_id="t1", tpm_limit=5))
    assert changes == {"rpm_limit": 90, "team_id": "t1", "tpm_limit": 5}
    assert before == {"rpm_limit": 60, "max_budget": 10, "team_id": None, "tpm_limit": None}


def test_new_key_sends_every_set_field():
    changes, before, after = compute_changes(None, desired(rpm_limit=1, models=[]))
    assert changes == after == {"rpm_limit": 1, "models": []}
    assert before == {}


def test_metadata_set_by_user_is_compared_in_full():
    changes, dummy, dummy2 = compute_changes(ROW, desired(metadata={"owner": "chat", "tags": ["dev"]}))
    assert changes == {"metadata": {"owner": "chat", "tags": ["dev"]}}
    changes, dummy, dummy2 = compute_changes(ROW, desired(metadata={}))
    assert changes == {"metadata": {}}


def test_update_body_keeps_litellm_metadata():
    body = update_body(ROW, {"metadata": {"owner": "search"}, "rpm_limit": 5})
    assert body == {"metadata": {"tags": ["prod"], "logging": [{"callback_vars": {"k": "secret"}}],
                                 "owner": "search"}, "rpm_limit": 5}


def test_metadata_as_json_string():
    row = dict(ROW, metadata=json.dumps({"owner": "chat"}))
    assert compute_changes(row, desired(metadata={"owner": "chat"}))[0] == {}


def test_key_info_is_not_secret():
    info = key_info(dict(ROW, key="sk-secret"))
    assert "key" not in info
    assert info["soft_budget"] == 2.0
    assert info["metadata"] == {"owner": "chat", "tags": ["prod"]}


@pytest.mark.parametrize("body, expected", [
    (b'{"error": {"message": "Authentication Error", "type": "auth_error", "param": null, "code": "401"}}',
     "Authentication Error (type auth_error)"),
    (b'{"detail": [{"type": "int_parsing", "loc": ["body", "rpm_limit"], "msg": "Input should be a valid integer"}]}',
     "rpm_limit: Input should be a valid integer"),
    (b'{"detail": {"error": "Team not found"}}', "Team not found"),
    (b'{"detail": "Not Found"}', "Not Found"),
    (b'Bad Gateway', "Bad Gateway"),
    (b'', "(empty response body)"),
])
def test_error_message(body, expected):
    assert error_message(body) == expected


@pytest.mark.parametrize("content", [
    "sk-master\n",
    "# gateway\nDATABASE_URL=postgresql://x\nLITELLM_MASTER_KEY=sk-master\n",
    "export LITELLM_MASTER_KEY='sk-master'\n",
])
def test_read_master_key_file(tmp_path, content):
    path = tmp_path / "env"
    path.write_text(content)
    assert read_master_key_file(str(path)) == "sk-master"


def test_read_master_key_file_without_key(tmp_path):
    path = tmp_path / "env"
    path.write_text("DATABASE_URL=postgresql://x\n")
    with pytest.raises(ValueError, match="LITELLM_MASTER_KEY="):
        read_master_key_file(str(path))


def test_client_never_shows_master_key():
    client = LitellmClient("http://127.0.0.1:4000/v1/", "sk-master")
    assert client.base_url == "http://127.0.0.1:4000"
    assert "sk-master" not in repr(client)
    assert client.scrub("echo sk-master") == "echo <redacted>"
