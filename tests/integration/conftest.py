"""Fixtures of the integration tests (tests/conftest.py makes the collection importable)."""

from __future__ import annotations

import json
import os

import pytest

# litellm (imported by the contract server) would fetch its model cost map from GitHub on import
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture
def run_litellm_key(capsys):
    """Run the litellm_key module in-process; return (result dict, raw stdout)."""
    from ansible.module_utils.testing import patch_module_args

    from ansible_collections.gpuserve.vllm.plugins.modules import litellm_key

    def run(args):
        with patch_module_args(args):
            with pytest.raises(SystemExit):
                litellm_key.main()
        out = capsys.readouterr().out
        return json.loads(out), out

    return run


@pytest.fixture
def idempotence_scenario(run_litellm_key):
    """The create / repeat / update / repeat / check mode / delete / repeat scenario.

    Shared by the contract test and the live test. Returns the results, in order, by step name.
    """

    def scenario(url, master_key, alias):
        base = {"url": url, "master_key": master_key, "key_alias": alias}
        spec = dict(base, models=["tiny"], max_budget=10.0, budget_duration="30d", rpm_limit=60,
                    tpm_limit=100000, max_parallel_requests=4, metadata={"owner": "gpuserve-tests"})
        steps = {}

        def step(name, args, changed, **expect):
            result, out = run_litellm_key(args)
            assert result.get("failed") is not True, (name, result)
            assert result["changed"] is changed, (name, result)
            assert master_key not in out, name
            for field, value in expect.items():
                assert result.get(field) == value, (name, field, result)
            steps[name] = (result, out)
            return result

        run_litellm_key(dict(base, state="absent"))  # clean slate
        created = step("create", spec, True)
        assert created["key"].startswith("sk-")
        assert created["token"] and created["token"] != created["key"]
        repeat = step("repeat", spec, False, token=created["token"])
        assert "key" not in repeat
        assert created["key"] not in steps["repeat"][1]
        step("update", dict(spec, rpm_limit=120), True, token=created["token"])
        assert steps["update"][0]["diff"]["before"]["rpm_limit"] == 60
        assert steps["update"][0]["diff"]["after"]["rpm_limit"] == 120
        step("update_repeat", dict(spec, rpm_limit=120), False)
        step("check_mode", dict(spec, rpm_limit=240, _ansible_check_mode=True), True)
        step("after_check_mode", dict(spec, rpm_limit=120), False)
        step("delete", dict(base, state="absent"), True)
        step("delete_repeat", dict(base, state="absent"), False)
        return steps

    return scenario
