"""Verify the litellm_gateway role: the real LiteLLM proxy (no database: Prisma's engines
cannot be downloaded here) routing to the real vLLM engine, behind the real nginx.

Requests are made inside the target by Python scripts that read the keys from the 0600
environment files, so no key appears on a command line.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess

UNIT = "litellm.service"
ENV_FILE = "/etc/litellm/litellm.env"
GATEWAY = "http://127.0.0.1:4000"

SCRIPT = r"""
import json, ssl, sys, http.client
def env(path, name):
    for line in open(path):
        if line.startswith(name + '='):
            return line.split('=', 1)[1].strip().strip('"')
MASTER = env('/etc/litellm/litellm.env', 'LITELLM_MASTER_KEY')
def call(method, path, key=None, body=None, via='gateway'):
    if via == 'nginx':
        c = http.client.HTTPSConnection('gpuserve.test', 443, timeout=300, context=ssl.create_default_context())
    else:
        c = http.client.HTTPConnection('127.0.0.1', 4000, timeout=300)
    headers = {'Content-Type': 'application/json'}
    if key:
        headers['Authorization'] = 'Bearer ' + key
    c.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    r = c.getresponse()
    return [r.status, r.read().decode(errors='replace')]
"""


def run(host, code: str):
    out = host.run(f"python3 -c {shlex.quote(SCRIPT + code)}")
    assert out.rc == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_unit_active_and_hardened(host):
    svc = host.service(UNIT)
    assert svc.is_enabled and svc.is_running
    pid = host.check_output(f"systemctl show -p MainPID --value {UNIT}")
    assert host.check_output(f"stat -c %U /proc/{pid}") == "litellm"
    host.run_expect([0], f"systemd-analyze verify --man=no /etc/systemd/system/{UNIT}")
    out = host.check_output(f"systemd-analyze security --no-pager {UNIT}")
    score = float([line for line in out.splitlines() if "Overall exposure level" in line][0].split(":")[1].split()[0])
    assert score <= 2.5, out[-1500:]


def test_secrets_only_in_the_private_env_file(host):
    env = host.file(ENV_FILE)
    assert env.mode == 0o600 and env.user == "root"
    keys = run(host, "print(json.dumps([MASTER, env('/etc/litellm/litellm.env', 'LITELLM_SALT_KEY'),"
                     " env('/etc/litellm/litellm.env', 'GPUSERVE_BACKEND_KEY_0')]))")
    assert keys[0].startswith("sk-") and all(len(k) >= 16 for k in keys)
    config = host.file("/etc/litellm/config.yaml").content_string
    unit = host.file(f"/etc/systemd/system/{UNIT}").content_string
    journal = host.run(f"journalctl -u {UNIT} --no-pager -o cat").stdout
    cmdlines = host.run("cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '").stdout
    assert "os.environ/LITELLM_MASTER_KEY" in config and "os.environ/GPUSERVE_BACKEND_KEY_0" in config
    for key in keys:
        assert key not in config
        assert key not in unit
        assert key not in journal
        assert key not in cmdlines


def test_routes_to_the_engine(host):
    models, chat = run(host, r"""
m = call('GET', '/v1/models', key=MASTER)
c = call('POST', '/v1/chat/completions', key=MASTER,
         body={'model': 'tiny', 'messages': [{'role': 'user', 'content': 'Hi'}], 'max_tokens': 8})
print(json.dumps([m, c]))
""")
    assert models[0] == 200, models
    assert [m["id"] for m in json.loads(models[1])["data"]] == ["tiny"]
    assert chat[0] == 200, chat
    answer = json.loads(chat[1])
    assert answer["usage"]["completion_tokens"] == 8
    assert answer["choices"][0]["message"]["content"]


def test_rejects_a_wrong_key(host):
    direct, through_nginx, none = run(host, r"""
body = {'model': 'tiny', 'messages': [{'role': 'user', 'content': 'Hi'}], 'max_tokens': 4}
print(json.dumps([call('POST', '/v1/chat/completions', key='sk-not-a-key-000000000000', body=body),
                  call('POST', '/v1/chat/completions', key='sk-not-a-key-000000000000', body=body, via='nginx'),
                  call('POST', '/v1/chat/completions', body=body, via='nginx')]))
""")
    # Refused by the gateway: 401, or 400 "No connected db" for a key that is not the master
    # key when the gateway runs without a database (this scenario).
    for answer in (direct, through_nginx):
        assert answer[0] in (400, 401), answer
        assert "error" in json.loads(answer[1]), answer
    # Without any key nginx answers 401 itself (LiteLLM 1.108 would answer 500).
    assert none[0] == 401 and json.loads(none[1])["error"]["code"] == "missing_api_key", none


def test_streams_through_nginx(host):
    result = run(host, r"""
import time
c = http.client.HTTPSConnection('gpuserve.test', 443, timeout=300, context=ssl.create_default_context())
c.request('POST', '/v1/chat/completions', headers={'Authorization': 'Bearer ' + MASTER, 'Content-Type': 'application/json'},
          body=json.dumps({'model': 'tiny', 'messages': [{'role': 'user', 'content': 'Hi'}], 'max_tokens': 100,
                           'stream': True, 'ignore_eos': True}))
r = c.getresponse()
t0, arrivals, data = time.monotonic(), [], b''
while True:
    chunk = r.read1(65536)
    if not chunk:
        break
    arrivals.append(time.monotonic() - t0)
    data += chunk
events = [l[6:] for l in data.decode().splitlines() if l.startswith('data: ')]
print(json.dumps({'status': r.status, 'arrivals': arrivals, 'events': events}))
""")
    assert result["status"] == 200
    events = result["events"]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len(result["arrivals"]) >= 10, result["arrivals"]


def test_metrics_for_prometheus(host):
    with_key, without = run(host, r"""
print(json.dumps([call('GET', '/metrics/', key=MASTER), call('GET', '/metrics/')]))
""")
    assert with_key[0] == 200
    assert "litellm_" in with_key[1]
    # requests made by the tests above are counted
    assert any(line.startswith("litellm_proxy_total_requests_metric") for line in with_key[1].splitlines()), \
        [line for line in with_key[1].splitlines() if line.startswith("litellm_")][:40]
    assert without[0] == 401


def test_preflight_fails_early_without_prisma_engines(host):
    """With a database, LiteLLM needs Prisma's engines: when they are neither staged nor
    downloadable the role stops before changing anything, saying what to set. The download
    site is pointed at a closed port so that the test means the same with internet access."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    root = os.environ["MOLECULE_PROJECT_DIRECTORY"]
    extra = {
        "litellm_gateway_database": "local",
        "litellm_gateway_db_password": "molecule-only-db-password",
        "litellm_gateway_prisma_binaries_url": "http://127.0.0.1:9/",
    }
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_FORCE_COLOR="false")
    out = subprocess.run(
        ["ansible-playbook", "-i", inventory, os.path.join(root, "playbooks", "site.yml"),
         "--limit", "litellm_gateways", "--tags", "litellm_gateway_preflight", "-e", json.dumps(extra)],
        capture_output=True, text=True, timeout=600, env=env, check=False,
    )
    assert out.returncode != 0, out.stdout[-3000:]
    report = json.loads(out.stdout[out.stdout.index("{"):])
    failed = [
        (task["task"]["name"], result.get("msg", ""))
        for play in report["plays"] for task in play["tasks"]
        for result in task["hosts"].values() if result.get("failed")
    ]
    # the download check fails (ignored), then the task that stops the run
    name, msg = failed[-1]
    assert name.endswith("Fail early when Prisma's engines are neither staged nor downloadable"), failed
    for hint in ("litellm_gateway_prisma_query_engine_binary", "litellm_gateway_prisma_engines_mirror",
                 "litellm_gateway_database: none"):
        assert hint in msg, msg
    # Nothing changed: PostgreSQL was not installed.
    assert not host.package("postgresql").is_installed
