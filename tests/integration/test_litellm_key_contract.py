# Copyright: (c) 2026, gpuserve.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The litellm_key module against a CONTRACT SERVER, not against LiteLLM.

LiteLLM's key endpoints cannot run on this test machine: they need PostgreSQL plus Prisma
engine binaries that Prisma downloads at run time from a host this machine cannot reach.
So the module runs in-process against ``LitellmContractServer`` (tests/integration/
litellm_contract.py), a stand-in that validates EVERY request body with LiteLLM's own pydantic
request models from the installed, pinned ``litellm`` package (GenerateKeyRequest,
UpdateKeyRequest, KeyRequest, RegenerateKeyRequest) and answers in the shapes LiteLLM's key
endpoints return. test_litellm_key_live.py runs the idempotence scenario against a real LiteLLM
when LITELLM_TEST_URL and LITELLM_TEST_MASTER_KEY are set.
"""

from __future__ import annotations

import pytest

from ansible_collections.gpuserve.vllm.tests.integration.litellm_contract import (
    CONTRACT_LITELLM_VERSION,
    LitellmContractServer,
    hash_token,
)

MASTER = "sk-master-7d1e0c4b2a9f"
WRONG = "sk-wrong-51ac90e3dd"
ALIAS = "chat-app"
WRITE_PATHS = ("/key/generate", "/key/update", "/key/delete")


@pytest.fixture
def server():
    srv = LitellmContractServer(MASTER).start()
    yield srv
    srv.stop()


@pytest.fixture
def run(run_litellm_key, server):
    def call(**args):
        args.setdefault("url", server.url)
        args.setdefault("master_key", MASTER)
        args.setdefault("key_alias", ALIAS)
        args = {k: v for k, v in args.items() if v is not None}  # master_key=None: leave it out
        result, out = run_litellm_key(args)
        assert MASTER not in out, "the master key leaked into the module output"
        return result, out
    return call


def _is_write(call):
    return call[0] == "POST" and (call[1] in WRITE_PATHS or call[1].endswith("/regenerate"))


def test_contract_follows_pinned_litellm():
    from importlib.metadata import version
    assert version("litellm") == CONTRACT_LITELLM_VERSION


def test_idempotence_scenario(idempotence_scenario, server):
    steps = idempotence_scenario(server.url, MASTER, ALIAS)
    # the scenario's check mode step wrote nothing: every write is accounted for by the other steps
    paths = [c[1] for c in server.writes()]
    assert paths.count("/key/generate") == 1
    assert paths.count("/key/update") == 1
    assert paths.count("/key/delete") == 1  # the clean-slate call found nothing to delete
    assert steps["check_mode"][0]["diff"] == {"before": {
        "models": ["tiny"], "max_budget": 10.0, "budget_duration": "30d", "rpm_limit": 120, "tpm_limit": 100000,
        "max_parallel_requests": 4, "metadata": {"owner": "gpuserve-tests"}}, "after": {
        "models": ["tiny"], "max_budget": 10.0, "budget_duration": "30d", "rpm_limit": 240, "tpm_limit": 100000,
        "max_parallel_requests": 4, "metadata": {"owner": "gpuserve-tests"}}}


def test_create_returns_key_once(run, server):
    result, out = run(models=["tiny", "tiny-lora"], max_budget=5, soft_budget=4, duration="30d",
                      metadata={"owner": "chat"}, team_id="team-1", user_id="user-1")
    assert result.get("failed") is not True, result
    assert result["changed"] is True
    key = result["key"]
    assert key.startswith("sk-")
    assert result["token"] == hash_token(key)
    assert result["key_alias"] == ALIAS
    assert result["key_info"]["key_name"] == "sk-...%s" % key[-4:]
    assert result["key_info"]["soft_budget"] == 4
    assert result["key_info"]["expires"]
    assert "key" not in result["key_info"]
    assert result["diff"]["before"] == {}
    assert result["diff"]["after"]["models"] == ["tiny", "tiny-lora"]
    assert key not in str(result["diff"]) + str(result["key_info"]) + result["msg"]
    generate = [c for c in server.calls if c[1] == "/key/generate"]
    assert len(generate) == 1
    assert generate[0][3] == {"key_alias": ALIAS, "models": ["tiny", "tiny-lora"], "max_budget": 5.0,
                              "soft_budget": 4.0, "duration": "30d", "metadata": {"owner": "chat"},
                              "team_id": "team-1", "user_id": "user-1"}

    again, out = run(models=["tiny-lora", "tiny"], max_budget=5.0, soft_budget=4, duration="30d",
                     metadata={"owner": "chat"}, team_id="team-1", user_id="user-1")
    assert again["changed"] is False, again
    assert "key" not in again
    assert key not in out
    assert again["token"] == result["token"]
    assert len(server.writes()) == 1


def test_update_sends_only_the_field_that_differs(run, server):
    run(models=["tiny"], max_budget=5, rpm_limit=60, metadata={"owner": "chat"})
    token = server.store._by_alias(ALIAS)[0]["token"]
    server.calls.clear()
    result, dummy = run(models=["tiny"], max_budget=5, rpm_limit=600, metadata={"owner": "chat"})
    assert result["changed"] is True
    assert "key" not in result
    assert result["diff"]["before"]["rpm_limit"] == 60 and result["diff"]["after"]["rpm_limit"] == 600
    assert result["key_info"]["rpm_limit"] == 600
    assert "rpm_limit" in result["msg"]
    updates = [c for c in server.calls if c[1] == "/key/update"]
    assert [c[3] for c in updates] == [{"key": token, "rpm_limit": 600}]
    assert [c[1] for c in server.writes()] == ["/key/update"]
    row = server.store.rows[token]
    assert row["rpm_limit"] == 600 and row["max_budget"] == 5.0 and row["models"] == ["tiny"]


def test_update_soft_budget_and_metadata_keeps_litellm_fields(run, server):
    run(metadata={"owner": "chat"})
    token = server.store._by_alias(ALIAS)[0]["token"]
    # something else (the UI, another tool) set tags, which LiteLLM keeps in the metadata
    server.store.rows[token]["metadata"]["tags"] = ["prod"]
    result, dummy = run(metadata={"owner": "chat"})
    assert result["changed"] is False, result
    server.calls.clear()
    result, dummy = run(metadata={"owner": "search"}, soft_budget=2.5)
    assert result["changed"] is True
    body = [c[3] for c in server.calls if c[1] == "/key/update"][0]
    assert body == {"key": token, "metadata": {"tags": ["prod"], "owner": "search"}, "soft_budget": 2.5}
    assert server.store.rows[token]["metadata"] == {"tags": ["prod"], "owner": "search"}
    result, dummy = run(metadata={"owner": "search"}, soft_budget=2.5)
    assert result["changed"] is False, result


def test_unset_options_are_not_managed(run, server):
    run(rpm_limit=60, max_budget=3)
    server.calls.clear()
    result, dummy = run()
    assert result["changed"] is False
    assert result["diff"] == {"before": {}, "after": {}}
    assert result["key_info"]["rpm_limit"] == 60
    assert server.writes() == []


def test_check_mode_calls_no_write_endpoint(run, server):
    result, dummy = run(rpm_limit=60, _ansible_check_mode=True)
    assert result["changed"] is True
    assert "key" not in result and result["token"] is None
    assert result["diff"] == {"before": {}, "after": {"key_alias": ALIAS, "rpm_limit": 60}}
    assert "would create" in result["msg"]
    assert not [c for c in server.calls if _is_write(c)]
    assert server.store.rows == {}

    run(rpm_limit=60)
    server.calls.clear()
    result, dummy = run(rpm_limit=90, _ansible_check_mode=True)
    assert result["changed"] is True
    assert result["diff"] == {"before": {"rpm_limit": 60}, "after": {"rpm_limit": 90}}
    result, dummy = run(regenerate=True, _ansible_check_mode=True)
    assert result["changed"] is True and "key" not in result
    result, dummy = run(state="absent", _ansible_check_mode=True)
    assert result["changed"] is True
    assert result["diff"]["after"] == {}
    assert not [c for c in server.calls if _is_write(c)]
    assert {c[1] for c in server.calls} <= {"/key/list", "/key/info"}
    assert server.store._by_alias(ALIAS)[0]["rpm_limit"] == 60


def test_absent_deletes_then_is_idempotent(run, server):
    created, dummy = run(rpm_limit=60)
    result, dummy = run(state="absent")
    assert result["changed"] is True
    assert result["token"] == created["token"]
    assert [c[3] for c in server.calls if c[1] == "/key/delete"] == [{"keys": [created["token"]]}]
    assert server.store.rows == {}
    result, dummy = run(state="absent")
    assert result["changed"] is False
    assert result["key_info"] == {}
    assert len([c for c in server.calls if c[1] == "/key/delete"]) == 1


def test_regenerate_rotates(run, server):
    created, dummy = run(rpm_limit=60)
    server.calls.clear()
    result, out = run(rpm_limit=90, regenerate=True, duration="7d")
    assert result.get("failed") is not True, result
    assert result["changed"] is True
    assert result["key"].startswith("sk-") and result["key"] != created["key"]
    assert result["token"] == hash_token(result["key"]) != created["token"]
    assert created["key"] not in out
    regen = [c for c in server.calls if c[1].endswith("/regenerate")]
    assert [(c[1], c[3]) for c in regen] == [("/key/%s/regenerate" % created["token"],
                                              {"rpm_limit": 90, "duration": "7d"})]
    assert list(server.store.rows) == [result["token"]]
    assert server.store.rows[result["token"]]["rpm_limit"] == 90
    # the rotated key is found by its alias again, and is up to date
    again, dummy = run(rpm_limit=90)
    assert again["changed"] is False and again["token"] == result["token"]


def test_regenerate_creates_missing_key(run, server):
    result, dummy = run(regenerate=True)
    assert result["changed"] is True and result["key"].startswith("sk-")
    assert [c[1] for c in server.writes()] == ["/key/generate"]


def test_regenerate_without_enterprise_license(run_litellm_key):
    srv = LitellmContractServer(MASTER, premium=False).start()
    try:
        run_litellm_key({"url": srv.url, "master_key": MASTER, "key_alias": ALIAS})
        result, out = run_litellm_key({"url": srv.url, "master_key": MASTER, "key_alias": ALIAS,
                                       "regenerate": True})
    finally:
        srv.stop()
    assert result["failed"] is True
    assert result["status"] == 500
    assert "Regenerating Virtual Keys is an Enterprise feature" in result["msg"]
    assert "LITELLM_LICENSE" in result["msg"] and "state=absent" in result["msg"]
    assert MASTER not in out


def test_wrong_master_key(run, server):
    result, out = run(master_key=WRONG, rpm_limit=60)
    assert result["failed"] is True
    assert result["status"] == 401
    assert "HTTP 401" in result["msg"]
    assert "Authentication Error, Invalid proxy server token passed" in result["msg"]
    assert "master_key" in result["msg"]
    assert WRONG not in out and MASTER not in out
    assert [c[1] for c in server.calls] == ["/key/list"]


def test_master_key_file(run, server, tmp_path):
    env_file = tmp_path / "litellm.env"
    env_file.write_text("# LiteLLM gateway\nDATABASE_URL=postgresql://litellm@localhost/litellm\n"
                        "LITELLM_MASTER_KEY=\"%s\"\n" % MASTER)
    result, out = run(master_key=None, master_key_file=str(env_file), rpm_limit=60)
    assert result.get("failed") is not True, result
    assert result["changed"] is True
    bare = tmp_path / "master.key"
    bare.write_text(MASTER + "\n")
    result, out = run(master_key=None, master_key_file=str(bare), rpm_limit=60)
    assert result["changed"] is False
    assert MASTER not in out


def test_master_key_and_file_are_exclusive(run, tmp_path):
    result, dummy = run(master_key_file=str(tmp_path / "k"))
    assert result["failed"] is True
    assert "mutually exclusive" in result["msg"]


@pytest.mark.parametrize("status, body, expected, hint", [
    (400, {"error": {"message": "Key with alias 'chat-app' already exists. Unique key aliases across all keys "
                                "are required.", "type": "bad_request_error", "param": "key_alias", "code": "400"}},
     "Key with alias 'chat-app' already exists", ""),
    (403, {"error": {"message": "You are not allowed to access this key's info.", "type": "permission_error",
                     "param": None, "code": "403"}}, "not allowed", "may not manage keys"),
    (500, {"error": {"message": "DB not connected. This endpoint needs a database; set DATABASE_URL to a "
                                "PostgreSQL connection string", "type": "internal_server_error", "param": None,
                     "code": "500"}}, "DB not connected", "litellm_gateway role"),
    (503, {"error": {"message": "Database is unavailable: prisma engine not reachable", "type": "no_db_connection",
                     "param": None, "code": "503"}}, "prisma engine", "litellm_gateway role"),
    (500, {"detail": "Internal Server Error"}, "Internal Server Error", "journal"),
    (422, {"detail": [{"type": "int_parsing", "loc": ["body", "rpm_limit"], "msg": "Input should be a valid integer"}]},
     "rpm_limit: Input should be a valid integer", "check the option values"),
])
def test_http_errors_are_surfaced(run, server, status, body, expected, hint):
    server.inject("POST", "/key/generate", status, body)
    result, out = run(rpm_limit=60)
    assert result["failed"] is True
    assert result["status"] == status
    assert "HTTP %d" % status in result["msg"]
    assert "POST /key/generate" in result["msg"]
    assert expected in result["msg"]
    assert hint in result["msg"]
    assert MASTER not in out


def test_error_on_lookup_is_surfaced(run, server):
    server.inject("GET", "/key/list", 500,
                  {"error": {"message": "Not connected to DB!", "type": "None", "param": None, "code": "500"}})
    result, dummy = run(state="absent")
    assert result["failed"] is True and result["status"] == 500
    assert "cannot look the key up" in result["msg"]
    assert "Not connected to DB!" in result["msg"]
    assert "litellm_gateway" in result["msg"]


def test_server_message_echoing_master_key_is_scrubbed(run, server):
    server.inject("POST", "/key/generate", 400,
                  {"error": {"message": "bad header Bearer %s" % MASTER, "type": "x", "param": None, "code": "400"}})
    result, out = run(rpm_limit=60)
    assert result["failed"] is True
    assert MASTER not in out
    assert "<redacted>" in result["msg"] or "********" in result["msg"]


def test_connection_refused(run_litellm_key):
    srv = LitellmContractServer(MASTER)
    url = srv.url
    srv.server_close()  # port known, nothing listening
    result, out = run_litellm_key({"url": url, "master_key": MASTER, "key_alias": ALIAS})
    assert result["failed"] is True
    assert result["status"] is None
    assert "Is the LiteLLM gateway running at %s" % url in result["msg"]
    assert MASTER not in out


def test_duplicate_alias_fails(run, server):
    run(rpm_limit=60)
    row = dict(server.store._by_alias(ALIAS)[0], token="f" * 64)
    server.store.rows[row["token"]] = row
    result, dummy = run(rpm_limit=60)
    assert result["failed"] is True
    assert "2 keys share key_alias='chat-app'" in result["msg"]


def test_contract_rejects_what_litellm_rejects(server):
    """The stand-in itself: LiteLLM's models reject bad bodies with 422, a wrong key with 401."""
    import json
    from urllib.error import HTTPError
    from urllib.request import Request, urlopen

    def post(path, body, key=MASTER):
        req = Request(server.url + path, data=json.dumps(body).encode(), method="POST",
                      headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
        try:
            with urlopen(req) as resp:
                return resp.status, json.loads(resp.read())
        except HTTPError as exc:
            return exc.code, json.loads(exc.read())

    status, body = post("/key/generate", {"rpm_limit": "many"})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "rpm_limit"]
    status, body = post("/key/generate", {"rpm_limt": 5})
    assert status == 422 and body["detail"][0]["type"] == "extra_forbidden"
    status, body = post("/key/update", {"rpm_limit": 5})
    assert status == 422 and "either key or key_alias must be provided" in body["detail"][0]["msg"]
    status, body = post("/key/delete", {})
    assert status == 422 and "At least one of 'keys' or 'key_aliases'" in body["detail"][0]["msg"]
    status, body = post("/key/generate", {}, key=WRONG)
    assert status == 401 and body["error"]["type"] == "auth_error" and body["error"]["code"] == "401"
    status, body = post("/key/generate", {"key_alias": "a"})
    assert status == 200 and body["key"].startswith("sk-") and body["token"] == body["token_id"] == hash_token(
        body["key"])
