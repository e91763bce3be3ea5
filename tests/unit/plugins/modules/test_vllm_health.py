# Copyright: (c) 2026, gpuserve.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tests for the vllm_health module.

The module runs in-process against ``VllmStandIn``, a stand-in for vLLM's HTTP surface:
the real engine is exercised by the Molecule scenario. systemd is faked by patching the
module's run_command.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gpuserve.vllm.plugins.modules import vllm_health

RIGHT_KEY = "sk-right-8c1f0e2d9a"
WRONG_KEY = "sk-wrong-3b7e61aa04"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: VllmStandIn

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def _send(self, status, body=None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status, message, kind):
        self._send(status, {"error": {"message": message, "type": kind, "param": None, "code": status}})

    def _authorized(self):
        if not self.server.api_key or self.headers.get("Authorization") == "Bearer " + self.server.api_key:
            return True
        self._send(401, {"error": "Unauthorized"})
        return False

    def do_GET(self):
        self.server.record(self, None)
        if self.path == "/health":
            self._send(200)
        elif self.path == "/version":
            self._send(200, {"version": self.server.version})
        elif self.path == "/v1/models":
            if self._authorized():
                self._send(200, {"object": "list", "data": [
                    {"id": name, "object": "model", "created": 1767225600, "owned_by": "vllm",
                     "root": "/var/lib/vllm/models/" + name, "parent": None, "max_model_len": max_len,
                     "permission": [{"id": "modelperm-1", "object": "model_permission"}]}
                    for name, max_len in self.server.models]})
        else:
            self._send(404, {"detail": "Not Found"})

    def do_POST(self):
        payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self.server.record(self, payload)
        if self.path not in ("/v1/chat/completions", "/v1/completions"):
            self._send(404, {"detail": "Not Found"})
            return
        if not self._authorized():
            return
        names = [name for name, dummy in self.server.models]
        if payload.get("model") not in names:
            self._error(404, "The model `%s` does not exist." % payload.get("model"), "NotFoundError")
        elif self.path == "/v1/chat/completions" and not self.server.chat_template:
            self._error(400, "As of transformers v4.44, default chat template is no longer allowed, so you "
                             "must provide a chat template if the tokenizer does not define one.", "BadRequestError")
        else:
            choice = {"index": 0, "finish_reason": "length"}
            if self.path == "/v1/completions":
                choice["text"] = " world"
            else:
                choice["message"] = {"role": "assistant", "content": "Hi"}
            self._send(200, {"id": "cmpl-1", "object": "text_completion", "model": payload["model"],
                             "choices": [choice], "usage": {"prompt_tokens": 1, "completion_tokens": 1}})


class VllmStandIn(ThreadingHTTPServer):
    """Stand-in for vLLM's HTTP surface: the real engine is exercised by the Molecule scenario.

    Binds an ephemeral port on 127.0.0.1 at once but listens only after ``delay``
    seconds (or never, with ``delay=None``): until then connections are refused, as
    while vLLM loads its model. Every request it answers is recorded in ``requests``.
    """

    daemon_threads = True
    timeout = 0.05  # handle_request() poll

    def __init__(self, api_key=None, models=(("tiny", 4096),), chat_template=True, version="0.22.0"):
        super().__init__(("127.0.0.1", 0), _Handler, bind_and_activate=False)
        self.server_bind()  # port reserved, not listening: connection refused
        self.api_key = api_key
        self.models = list(models)
        self.chat_template = chat_template
        self.version = version
        self.requests = []
        self._stop = threading.Event()
        self._thread = None

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server_address[1]

    def record(self, handler, payload):
        self.requests.append((handler.command, handler.path, handler.headers.get("Authorization"), payload))

    def start(self, delay=0.0):
        def serve():
            if delay is None or self._stop.wait(delay):
                return
            self.server_activate()
            while not self._stop.is_set():
                self.handle_request()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.server_close()


@pytest.fixture
def stand_in():
    servers = []

    def make(delay=0.0, **kwargs):
        server = VllmStandIn(**kwargs)
        servers.append(server)
        return server.start(delay)

    yield make
    for server in servers:
        server.stop()


def run_module(capsys, args):
    """Run the module in-process; return (result dict, raw stdout, seconds taken)."""
    started = time.monotonic()
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            vllm_health.main()
    elapsed = time.monotonic() - started
    out = capsys.readouterr().out
    return json.loads(out), out, elapsed


@pytest.fixture
def fake_systemd(monkeypatch):
    """Patch the module's run_command: systemctl show answers ``states`` in turn, journalctl ``journal``."""
    calls = []

    def install(states, journal=""):
        states = list(states)

        def run_command(self, args, **kwargs):
            calls.append(list(args))
            if "show" in args:
                return 0, states.pop(0) if len(states) > 1 else states[0], ""
            if args[0].endswith("journalctl"):
                return 0, journal, ""
            raise AssertionError("unexpected command %r" % (args,))

        monkeypatch.setattr(AnsibleModule, "run_command", run_command)
        monkeypatch.setattr(AnsibleModule, "get_bin_path", lambda self, name, *a, **k: "/usr/bin/" + name)
        return calls
    return install


def show(active, sub, restarts=0, status=0, pid=4242):
    return ("ActiveState=%s\nSubState=%s\nNRestarts=%d\nExecMainStatus=%d\nExecMainPID=%d\nMainPID=%d\n"
            % (active, sub, restarts, status, pid, pid if active == "active" else 0))


ENGINE_JOURNAL = "\n".join([
    "(APIServer pid=100) INFO 05-01 10:00:00 [api_server.py:1800] vLLM API server version 0.22.0",
    "(EngineCore_DP0 pid=200) ERROR 05-01 10:00:09 [core.py:700] EngineCore failed to start.",
    "(EngineCore_DP0 pid=200) ERROR 05-01 10:00:09 [core.py:700] Traceback (most recent call last):",
    '(EngineCore_DP0 pid=200) ERROR 05-01 10:00:09 [core.py:700]   File "/opt/vllm/core.py", line 691, in run',
    "(EngineCore_DP0 pid=200) ERROR 05-01 10:00:09 [core.py:700] torch.OutOfMemoryError: CUDA out of memory. "
    "Tried to allocate 2.00 GiB.",
    "(APIServer pid=100) Traceback (most recent call last):",
    '(APIServer pid=100)   File "/opt/vllm/bin/vllm", line 10, in <module>',
    "(APIServer pid=100)     sys.exit(main())",
    "(APIServer pid=100) RuntimeError: Engine core initialization failed. See root cause above. "
    "Failed core proc(s): {}",
    "vllm-main.service: Main process exited, code=exited, status=1/FAILURE",
]) + "\n"


def test_engine_comes_up_after_connection_refused(stand_in, capsys):
    server = stand_in(delay=1.5, api_key=RIGHT_KEY)
    result, out, dummy = run_module(capsys, {
        "url": server.url, "api_key": RIGHT_KEY, "served_model_name": "tiny",
        "expected_max_model_len": 4096, "interval": 0.2, "timeout": 20,
    })
    assert result.get("failed") is not True, result
    assert result["healthy"] is True
    assert result["changed"] is False
    assert result["time_to_healthy"] >= 1.5
    assert result["models"] == ["tiny"]
    assert result["model"] == "tiny"
    assert result["max_model_len"] == 4096
    assert result["version"] == "0.22.0"
    assert len(result["warmup_latencies_ms"]) == 2
    assert result["url"] == server.url
    assert RIGHT_KEY not in out
    posts = [r for r in server.requests if r[0] == "POST"]
    assert [r[1] for r in posts] == ["/v1/completions"] * 2
    assert all(r[2] == "Bearer " + RIGHT_KEY for r in posts)


def test_wrong_api_key(stand_in, capsys):
    server = stand_in(api_key=RIGHT_KEY)
    result, out, dummy = run_module(capsys, {"url": server.url, "api_key": WRONG_KEY, "served_model_name": "tiny"})
    assert result["failed"] is True
    assert "API key was rejected" in result["msg"]
    assert "401" in result["msg"]
    assert WRONG_KEY not in out and RIGHT_KEY not in out


def test_api_key_file(stand_in, capsys, tmp_path):
    server = stand_in(api_key=RIGHT_KEY)
    env_file = tmp_path / "main.env"
    env_file.write_text("# vLLM instance main\nHF_HOME=/var/cache/vllm\nVLLM_API_KEY=\"%s\"\n" % RIGHT_KEY)
    result, out, dummy = run_module(capsys, {"url": server.url, "api_key_file": str(env_file),
                                             "warmup_requests": 1})
    assert result.get("failed") is not True, result
    assert len(result["warmup_latencies_ms"]) == 1
    assert RIGHT_KEY not in out

    bare = tmp_path / "key"
    bare.write_text(RIGHT_KEY + "\n")
    result, out, dummy = run_module(capsys, {"url": server.url, "api_key_file": str(bare)})
    assert result["healthy"] is True
    assert RIGHT_KEY not in out


def test_api_key_and_file_are_exclusive(capsys, tmp_path):
    result, dummy, dummy2 = run_module(capsys, {"api_key": RIGHT_KEY, "api_key_file": str(tmp_path / "k")})
    assert result["failed"] is True
    assert "mutually exclusive" in result["msg"]


def test_served_model_missing(stand_in, capsys):
    server = stand_in(models=[("tiny", 4096), ("tiny-lora", 4096)])
    result, dummy, dummy2 = run_module(capsys, {"url": server.url, "served_model_name": "qwen"})
    assert result["failed"] is True
    assert "'qwen'" in result["msg"]
    assert "tiny, tiny-lora" in result["msg"]
    assert result["models"] == ["tiny", "tiny-lora"]


def test_max_model_len_mismatch(stand_in, capsys):
    server = stand_in()
    result, dummy, dummy2 = run_module(capsys, {"url": server.url, "served_model_name": "tiny",
                                                "expected_max_model_len": 8192})
    assert result["failed"] is True
    assert "4096" in result["msg"] and "8192" in result["msg"]
    assert not [r for r in server.requests if r[0] == "POST"]


@pytest.mark.parametrize("count", [0, 3])
def test_warmup_count(stand_in, capsys, count):
    server = stand_in()
    result, dummy, dummy2 = run_module(capsys, {"url": server.url, "warmup_requests": count})
    assert result["healthy"] is True
    assert result["model"] == "tiny"
    assert len(result["warmup_latencies_ms"]) == count
    assert all(isinstance(ms, float) and ms > 0 for ms in result["warmup_latencies_ms"])
    assert len([r for r in server.requests if r[0] == "POST"]) == count


def test_chat_warmup_without_template_fails(stand_in, capsys):
    server = stand_in(chat_template=False)
    result, dummy, dummy2 = run_module(capsys, {"url": server.url, "warmup_kind": "chat"})
    assert result["failed"] is True
    assert "HTTP 400" in result["msg"]
    assert "chat template" in result["msg"]
    assert "warmup_kind=completion" in result["msg"]


def test_deadline_passes(stand_in, capsys):
    server = stand_in(delay=None)  # never listens
    result, dummy, elapsed = run_module(capsys, {"url": server.url, "timeout": 1, "interval": 0.2})
    assert result["failed"] is True
    assert elapsed >= 1
    assert "did not become healthy within" in result["msg"]
    assert "raise `timeout`" in result["msg"]
    assert "vllm_engine_health_timeout" in result["msg"]
    assert "Connection refused" in result["msg"]


def test_deadline_returns_journal(stand_in, capsys, fake_systemd):
    fake_systemd([show("active", "running")], journal="Loading safetensors checkpoint shards: 40%\n")
    server = stand_in(delay=None)
    result, dummy, dummy2 = run_module(capsys, {"url": server.url, "timeout": 1, "interval": 0.2,
                                                "unit": "vllm-main.service"})
    assert result["failed"] is True
    assert result["journal"] == ["Loading safetensors checkpoint shards: 40%"]
    assert "raise `timeout`" in result["msg"]


def test_unit_died_fails_at_once(stand_in, capsys, fake_systemd):
    calls = fake_systemd([show("failed", "failed", status=1)], journal=ENGINE_JOURNAL)
    server = stand_in(delay=None)
    result, dummy, elapsed = run_module(capsys, {"url": server.url, "timeout": 60, "interval": 0.2,
                                                 "unit": "vllm-main.service", "journal_lines": 80})
    assert result["failed"] is True
    assert elapsed < 5
    assert result["msg"].startswith("vLLM unit vllm-main.service died while starting (failed/failed")
    assert "torch.OutOfMemoryError: CUDA out of memory" in result["msg"]
    assert "Engine core initialization failed" in result["msg"]
    assert "sys.exit(main())" not in result["msg"]  # the API server's own frames are skipped
    assert len(result["journal"]) == len(ENGINE_JOURNAL.splitlines())
    assert any("OutOfMemoryError" in line for line in result["root_cause"])
    assert result["unit_state"]["ActiveState"] == "failed"
    assert ["/usr/bin/journalctl", "-u", "vllm-main.service", "-n", "80", "--no-pager", "-o", "cat"] in calls


@pytest.mark.parametrize("states, why", [
    ([show("activating", "start", restarts=0), show("activating", "start", restarts=1, pid=4343)], "restarted"),
    ([show("active", "running", pid=4242), show("active", "running", pid=5151)], "main PID 4242 -> 5151"),
    ([show("active", "running"), show("activating", "auto-restart", status=1)], "waiting to restart"),
])
def test_unit_restarted_fails(stand_in, capsys, fake_systemd, states, why):
    fake_systemd(states, journal=ENGINE_JOURNAL)
    server = stand_in(delay=None)
    result, dummy, elapsed = run_module(capsys, {"url": server.url, "timeout": 60, "interval": 0.1,
                                                 "unit": "vllm-main.service"})
    assert result["failed"] is True
    assert elapsed < 5
    assert "died while starting" in result["msg"]
    assert why in result["msg"]


def test_unit_not_started(stand_in, capsys, fake_systemd):
    fake_systemd([show("inactive", "dead", pid=0)])
    server = stand_in(delay=None)
    result, dummy, elapsed = run_module(capsys, {"url": server.url, "timeout": 60, "unit": "vllm-main.service"})
    assert result["failed"] is True
    assert elapsed < 5
    assert "not running" in result["msg"]
    assert "systemctl start vllm-main.service" in result["msg"]


def test_check_mode_makes_no_request(stand_in, capsys):
    server = stand_in(api_key=RIGHT_KEY)
    result, out, dummy = run_module(capsys, {"url": server.url, "api_key": RIGHT_KEY, "served_model_name": "tiny",
                                             "_ansible_check_mode": True})
    assert result["changed"] is False
    assert result["skipped"] is True
    assert "check mode" in result["msg"]
    assert result.get("failed") is not True
    time.sleep(0.1)
    assert server.requests == []
    assert RIGHT_KEY not in out
