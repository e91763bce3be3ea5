"""Verify the vllm_engine role against the real vLLM (CPU build) it deployed.

Everything here talks to the real engine inside the systemd container: no fakes.
"""

from __future__ import annotations

import json
import shlex

import pytest

INSTANCE = "tiny"
UNIT = f"vllm-{INSTANCE}.service"
ENV_FILE = f"/etc/vllm/{INSTANCE}.env"
BASE = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def api_key(host) -> str:
    return host.ansible.get_variables()["vllm_engine_api_key"]


def http(host, method: str, path: str, key: str | None = None, body: dict | None = None) -> tuple[int, str]:
    """One HTTP request made inside the target with Python's urllib.

    The key reaches the target's Python on stdin, never as an argument, so it does not
    show up in the target's /proc/*/cmdline while the test runs.
    """
    script = f"""
import json, sys, urllib.request, urllib.error
key = sys.stdin.readline().strip()
req = urllib.request.Request({BASE + path!r}, method={method!r},
                             data={json.dumps(body).encode() if body is not None else None!r})
req.add_header("Content-Type", "application/json")
if key:
    req.add_header("Authorization", "Bearer " + key)
try:
    with urllib.request.urlopen(req, timeout=120) as r:
        print(r.status); sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); sys.stdout.write(e.read().decode())
"""
    cmd = f"printf '%s\\n' {shlex.quote(key or '')} | python3 -c {shlex.quote(script)}"
    out = host.run(cmd)
    assert out.rc == 0, out.stderr
    status, _sep, text = out.stdout.partition("\n")
    return int(status), text


def test_unit_enabled_and_active(host):
    svc = host.service(UNIT)
    assert svc.is_enabled
    assert svc.is_running


def test_env_file_is_private(host):
    f = host.file(ENV_FILE)
    assert f.exists
    assert f.mode == 0o600
    assert f.user == "vllm"


def test_engine_runs_as_service_user(host):
    pid = host.check_output(f"systemctl show -p MainPID --value {UNIT}")
    assert host.check_output(f"stat -c %U /proc/{pid}") == "vllm"


def test_api_key_never_on_a_command_line(host, api_key):
    # Split the key so that this scanner's own command line does not contain it.
    half = len(api_key) // 2
    script = (
        "import glob,sys\n"
        f"k={api_key[:half]!r}+{api_key[half:]!r}\n"
        "hits=[]\n"
        "for p in glob.glob('/proc/[0-9]*/cmdline'):\n"
        "    try: c=open(p,'rb').read().replace(b'\\0',b' ').decode(errors='replace')\n"
        "    except OSError: continue\n"
        "    if k in c: hits.append(p)\n"
        "print(len(glob.glob('/proc/[0-9]*/cmdline'))); print(hits)\n"
    )
    out = host.check_output(f"python3 -c {shlex.quote(script)}")
    count, hits = out.splitlines()
    assert int(count) > 5  # the scan saw the engine's processes
    assert hits == "[]"


def test_api_key_not_in_unit_or_journal(host, api_key):
    unit = host.file(f"/etc/systemd/system/{UNIT}").content_string
    assert api_key not in unit
    assert "--api-key" not in unit
    journal = host.run(f"journalctl -u {UNIT} --no-pager -o cat").stdout
    assert "Application startup complete" in journal  # the journal is really there
    assert api_key not in journal


def test_models_requires_the_key(host, api_key):
    status, _body = http(host, "GET", "/v1/models")
    assert status == 401
    status, _body = http(host, "GET", "/v1/models", key="sk-wrong-key-0000000000")
    assert status == 401
    status, text = http(host, "GET", "/v1/models", key=api_key)
    assert status == 200
    models = json.loads(text)["data"]
    assert [m["id"] for m in models] == ["tiny"]
    assert models[0]["max_model_len"] == 2048


def test_streaming_chat(host, api_key):
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 16,
        "stream": True,
    }
    status, text = http(host, "POST", "/v1/chat/completions", key=api_key, body=body)
    assert status == 200
    events = [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(chunks) >= 3
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


def test_metrics(host):
    status, text = http(host, "GET", "/metrics")
    assert status == 200
    for name in (
        "vllm:num_requests_running",
        "vllm:kv_cache_usage_perc",
        "vllm:time_to_first_token_seconds",
    ):
        assert name in text, name


def test_unit_hardening_score(host):
    # "Overall exposure level for vllm-tiny.service: 1.3 OK" (0 = fully locked down, 10 = none).
    out = host.check_output(f"systemd-analyze security --no-pager {UNIT}")
    overall = [line for line in out.splitlines() if "Overall exposure level" in line]
    assert overall, out[-2000:]
    score = float(overall[0].split(":")[1].split()[0])
    assert score <= 2.5, overall[0]


def test_unit_verifies(host):
    out = host.run(f"systemd-analyze verify --man=no /etc/systemd/system/{UNIT}")
    assert out.rc == 0, out.stderr


def test_health_after_restart(host, api_key):
    host.run_expect([0], f"systemctl restart {UNIT}")
    result = host.ansible(
        "gpuserve.vllm.vllm_health",
        f"url={BASE} served_model_name=tiny expected_max_model_len=2048 unit={UNIT} timeout=600 "
        f"warmup_requests=2 api_key={api_key}",
        check=False,
    )
    assert result.get("failed") is not True, result.get("msg")
    assert result["healthy"] is True
    assert result["time_to_healthy"] > 0
    assert len(result["warmup_latencies_ms"]) == 2
    assert "tiny" in result["models"]
    assert api_key not in json.dumps(result)
