# Copyright: (c) 2026, gpuserve.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for plugins/module_utils/systemd_unit.py (no systemd needed)."""

from __future__ import annotations

import pytest

from ansible_collections.gpuserve.vllm.plugins.module_utils.systemd_unit import (
    SystemdUnitError,
    find_root_cause,
    journal_tail,
    unit_state,
)


class FakeRun:
    def __init__(self, rc=0, out="", err=""):
        self.rc, self.out, self.err = rc, out, err
        self.calls = []

    def __call__(self, args, **kwargs):
        self.calls.append(list(args))
        return self.rc, self.out, self.err


SHOW_OUT = "ActiveState=activating\nSubState=auto-restart\nNRestarts=3\nExecMainStatus=1\nExecMainPID=4242\nMainPID=0\n"


def test_unit_state_command_and_parsing():
    run = FakeRun(out=SHOW_OUT)
    state = unit_state(run, "vllm-main.service")
    assert run.calls == [[
        "systemctl", "show", "vllm-main.service",
        "-p", "ActiveState", "-p", "SubState", "-p", "NRestarts",
        "-p", "ExecMainStatus", "-p", "ExecMainPID", "-p", "MainPID", "--no-pager",
    ]]
    assert state == {
        "ActiveState": "activating", "SubState": "auto-restart", "NRestarts": 3,
        "ExecMainStatus": 1, "ExecMainPID": 4242, "MainPID": 0,
    }


def test_unit_state_missing_and_odd_properties():
    # systemd < 235 has no NRestarts; unknown keys and junk lines are ignored
    run = FakeRun(out="ActiveState=inactive\nSubState=dead\nExecMainPID=\nMainPID=0\nOther=x\njunk\n")
    state = unit_state(run, "u.service", systemctl="/usr/bin/systemctl")
    assert run.calls[0][0] == "/usr/bin/systemctl"
    assert state["NRestarts"] is None
    assert state["ExecMainPID"] is None
    assert state["ActiveState"] == "inactive"
    assert "Other" not in state


def test_unit_state_error():
    with pytest.raises(SystemdUnitError, match="Failed to connect to bus"):
        unit_state(FakeRun(rc=1, err="Failed to connect to bus"), "u.service")


def test_journal_tail_commands():
    run = FakeRun(out="line one\n\nline two\n")
    assert journal_tail(run, "vllm-main.service", 60) == ["line one", "line two"]
    assert run.calls[-1] == ["journalctl", "-u", "vllm-main.service", "-n", "60", "--no-pager", "-o", "cat"]
    journal_tail(run, "vllm-main.service", 10, since_ts=1700000000.7)
    assert run.calls[-1][-2:] == ["--since", "@1700000000"]


def test_journal_tail_no_entries_and_error():
    assert journal_tail(FakeRun(out="-- No entries --\n"), "u", 5) == []
    with pytest.raises(SystemdUnitError):
        journal_tail(FakeRun(rc=1, err="No journal files were found."), "u", 5)


ENGINE_LOG = [
    "(APIServer pid=100) INFO 05-01 10:00:00 [api_server.py:1800] vLLM API server version 0.22.0",
    "(EngineCore_DP0 pid=200) INFO 05-01 10:00:05 [gpu_model_runner.py:2000] Model loading took 14.2 GiB",
    "(EngineCore_DP0 pid=200) ERROR 05-01 10:00:09 [core.py:700] EngineCore failed to start.",
    "(EngineCore_DP0 pid=200) ERROR 05-01 10:00:09 [core.py:700] Traceback (most recent call last):",
    '(EngineCore_DP0 pid=200) ERROR 05-01 10:00:09 [core.py:700]   File "/opt/vllm/core.py", line 691, in run',
    "(EngineCore_DP0 pid=200) ERROR 05-01 10:00:09 [core.py:700]     engine_core = EngineCoreProc(...)",
    "(EngineCore_DP0 pid=200) ERROR 05-01 10:00:09 [core.py:700] ValueError: To serve at least one request "
    "with the models's max seq len (32768), (3.50 GiB KV cache is needed, which is larger than the "
    "available KV cache memory (1.20 GiB).",
    "(APIServer pid=100) Traceback (most recent call last):",
] + ['(APIServer pid=100)   File "/opt/vllm/frame%d.py", line %d, in f' % (i, i) for i in range(20)] + [
    "(APIServer pid=100) RuntimeError: Engine core initialization failed. See root cause above. "
    "Failed core proc(s): {}",
    "vllm-main.service: Main process exited, code=exited, status=1/FAILURE",
    "vllm-main.service: Failed with result 'exit-code'.",
]


def test_root_cause_skips_the_api_server_traceback():
    cause = find_root_cause(ENGINE_LOG)
    assert cause[-1].endswith("Failed core proc(s): {}")
    assert any("ValueError: To serve at least one request" in line for line in cause)
    assert not any("frame" in line for line in cause)
    assert len(cause) <= 16


def test_root_cause_marker_without_header():
    lines = ["noise %d" % i for i in range(30)] + ["RuntimeError: Engine core initialization failed."]
    cause = find_root_cause(lines)
    assert cause == lines[-16:]


def test_root_cause_first_traceback():
    lines = [
        "starting",
        "Traceback (most recent call last):",
        '  File "/opt/vllm/bin/vllm", line 5, in <module>',
        "    from vllm.entrypoints.cli.main import main",
        "ImportError: libcudart.so.12: cannot open shared object file",
        "later noise",
    ]
    assert find_root_cause(lines) == lines[1:5]


def test_root_cause_long_traceback_is_cut_to_its_end():
    lines = ["Traceback (most recent call last):"] + ["  frame %d" % i for i in range(40)] + ["OSError: boom"]
    cause = find_root_cause(lines, context=10)
    assert len(cause) == 10
    assert cause[0] == lines[0]
    assert cause[-1] == "OSError: boom"


def test_root_cause_falls_back_to_last_lines():
    lines = ["line %d" % i for i in range(40)]
    assert find_root_cause(lines) == lines[-15:]
    assert find_root_cause([]) == []
