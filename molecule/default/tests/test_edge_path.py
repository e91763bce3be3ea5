"""Verify the edge data path (litellm_gateway_data_path: edge, the default): nginx asks the
gateway's key service (gpuserve-keyd) about every request, streams straight from the real vLLM,
and logs each response's token usage, which the key service adds to the key's spend.

Keys are created through the key service's LiteLLM-compatible API with the master key, read
inside the host from the 0600 environment file: no key is on a command line. Requests go
through the real nginx over HTTPS (certificate from Pebble).
"""

from __future__ import annotations

import json
import shlex
import uuid

import pytest

UNIT = "gpuserve-keyd.service"
PRICE_IN, PRICE_OUT = 0.001, 0.002  # litellm_gateway_token_prices of the scenario

SCRIPT = r"""
import json, re, ssl, sys, time, http.client, urllib.request
from concurrent.futures import ThreadPoolExecutor
def env(path, name):
    for line in open(path):
        if line.startswith(name + '='):
            return line.split('=', 1)[1].strip().strip('"')
MASTER = env('/etc/litellm/litellm.env', 'LITELLM_MASTER_KEY')
ENGINE = env('/etc/vllm/tiny.env', 'VLLM_API_KEY')
def call(method, path, key=None, body=None, via='nginx'):
    if via == 'nginx':
        c = http.client.HTTPSConnection('gpuserve.test', 443, timeout=300, context=ssl.create_default_context())
    elif via == 'keyd':
        c = http.client.HTTPConnection('127.0.0.1', 4000, timeout=30)
    else:
        c = http.client.HTTPConnection('127.0.0.1', 8000, timeout=300)
    headers = {'Content-Type': 'application/json'}
    if key:
        headers['Authorization'] = 'Bearer ' + key
    c.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    r = c.getresponse()
    text = r.read().decode(errors='replace')
    c.close()
    return r.status, dict(r.getheaders()), text
def admin(method, path, body=None):
    status, headers, text = call(method, path, MASTER, body, via='keyd')
    assert status == 200, (path, status, text)
    return json.loads(text)
def chat(key, max_tokens=8, stream=False):
    body = {'model': 'tiny', 'messages': [{'role': 'user', 'content': 'Say something about edges.'}],
            'max_tokens': max_tokens, 'stream': stream, 'ignore_eos': True}
    return call('POST', '/v1/chat/completions', key, body)
def vllm_counters():
    text = urllib.request.urlopen('http://127.0.0.1:8000/metrics', timeout=30).read().decode()
    out = {}
    for name in ('vllm:prompt_tokens_total', 'vllm:generation_tokens_total'):
        out[name] = sum(float(m) for m in re.findall('^' + re.escape(name) + r'(?:\{[^}]*\})? ([0-9.e+]+)$',
                                                     text, re.M))
    return out
ARGS = json.loads(sys.argv[1])
"""


def run(host, code: str, args: dict | None = None):
    out = host.run(f"python3 -c {shlex.quote(SCRIPT + code)} {shlex.quote(json.dumps(args or {}))}")
    assert out.rc == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_key_service_active_hardened_and_litellm_absent(host):
    svc = host.service(UNIT)
    assert svc.is_enabled and svc.is_running
    assert not host.file("/etc/systemd/system/litellm.service").exists
    assert not host.file("/opt/litellm/venv").exists  # LiteLLM is not installed on this path
    score = host.run(f"systemd-analyze security {UNIT} --no-pager | tail -1").stdout
    value = float(score.split("exposure level for")[1].split(":")[1].split()[0])
    assert value <= 2.5, score
    listening = host.check_output("ss -Hltn | awk '{print $4}'").split()
    assert "127.0.0.1:4000" in listening
    assert not [a for a in listening if a.endswith(":4000") and not a.startswith("127.0.0.1:")]


def test_secrets_stay_in_root_only_files(host):
    auth = host.file("/etc/nginx/gpuserve/backend-auth.conf")
    assert auth.mode == 0o600 and auth.user == "root"
    keys = run(host, "print(json.dumps([MASTER, ENGINE]))")
    conf = host.file("/etc/nginx/nginx.conf").content_string
    unit = host.file(f"/etc/systemd/system/{UNIT}").content_string
    keyd_conf = host.file("/etc/litellm/keyd.json").content_string
    pid = host.check_output(f"systemctl show -p MainPID --value {UNIT}")
    cmdline = host.check_output(f"tr '\\0' ' ' < /proc/{pid}/cmdline")
    for key in keys:
        assert key not in conf + unit + keyd_conf + cmdline
        assert key in auth.content_string or key == keys[0]


def test_keys_created_deleted_and_blocked_take_effect_within_10s(host):
    result = run(host, r"""
out = {}
key = admin('POST', '/key/generate', {'key_alias': 'edge-lifecycle-' + ARGS['tag']})
out['first'] = chat(key['key'])[0]
out['wrong'] = chat('sk-edge-not-a-key-0000')
def refused_after(action, expect):
    action()
    t0 = time.time()
    while time.time() - t0 < 30:
        status, headers, text = chat(key['key'])
        if status == expect:
            return time.time() - t0, json.loads(text)
        time.sleep(0.2)
    return None, None
out['blocked_after'], out['blocked_body'] = refused_after(
    lambda: admin('POST', '/key/block', {'key': key['token']}), 403)
admin('POST', '/key/unblock', {'key': key['token']})
out['unblocked'] = chat(key['key'])[0]
out['deleted_after'], out['deleted_body'] = refused_after(
    lambda: admin('POST', '/key/delete', {'keys': [key['token']]}), 401)
print(json.dumps(out))
""", {"tag": uuid.uuid4().hex[:8]})
    assert result["first"] == 200
    wrong_status, dummy, wrong_body = result["wrong"]
    assert wrong_status == 401 and json.loads(wrong_body)["error"]["code"] == "invalid_api_key"
    assert result["blocked_after"] is not None and result["blocked_after"] <= 10, result
    assert result["blocked_body"]["error"]["code"] == "key_blocked"
    assert result["unblocked"] == 200
    assert result["deleted_after"] is not None and result["deleted_after"] <= 10, result
    assert result["deleted_body"]["error"]["code"] == "invalid_api_key"


def test_key_over_budget_refused_within_10s(host):
    # one request of ~20 prompt + 40 completion tokens costs ~0.1 at the scenario's prices
    result = run(host, r"""
key = admin('POST', '/key/generate', {'key_alias': 'edge-budget-' + ARGS['tag'], 'max_budget': 0.05})
first = chat(key['key'], max_tokens=40)
t0 = time.time()
refused, body = None, None
while time.time() - t0 < 30:
    status, headers, text = chat(key['key'], max_tokens=1)
    if status == 429:
        refused, body = time.time() - t0, json.loads(text)
        break
    time.sleep(0.2)
info = admin('GET', '/key/info?key=' + key['token'])['info']
print(json.dumps({'first': first[0], 'usage': json.loads(first[2])['usage'], 'refused': refused, 'body': body,
                  'spend': info['spend'], 'tokens': info['gpuserve_usage']}))
""", {"tag": uuid.uuid4().hex[:8]})
    assert result["first"] == 200
    assert result["refused"] is not None and result["refused"] <= 10, result
    assert result["body"]["error"]["type"] == "insufficient_quota"
    usage = result["usage"]
    assert result["tokens"]["prompt_tokens"] >= usage["prompt_tokens"]
    assert result["spend"] >= usage["prompt_tokens"] * PRICE_IN + usage["completion_tokens"] * PRICE_OUT - 1e-9


def test_per_key_token_counts_match_vllm_counters(host):
    """Mixed traffic (chat and completions, streamed and not, two keys, 4 in parallel): the tokens
    the key service counted per key add up to vLLM's own counters within 1%."""
    result = run(host, r"""
tag = ARGS['tag']
keys = [admin('POST', '/key/generate', {'key_alias': 'edge-count-%s-%d' % (tag, i)}) for i in range(2)]
before = vllm_counters()
def one(i):
    key = keys[i % 2]['key']
    stream = i % 3 != 0
    n = 8 + (i * 7) % 40
    if i % 2:
        body = {'model': 'tiny', 'prompt': 'token ' * (5 + i), 'max_tokens': n, 'stream': stream, 'ignore_eos': True}
        path = '/v1/completions'
    else:
        body = {'model': 'tiny', 'messages': [{'role': 'user', 'content': 'count ' * (3 + i)}],
                'max_tokens': n, 'stream': stream, 'ignore_eos': True}
        path = '/v1/chat/completions'
    status, headers, text = call('POST', path, key, body)
    usage = None
    if stream:
        for line in text.splitlines():
            if line.startswith('data: {') and '"usage":{' in line:
                usage = json.loads(line[6:])['usage']
    else:
        usage = json.loads(text).get('usage')
    return status, usage
with ThreadPoolExecutor(4) as pool:
    results = list(pool.map(one, range(ARGS['n'])))
def counted():
    rows = [admin('GET', '/key/info?key=' + k['token'])['info']['gpuserve_usage'] for k in keys]
    return rows
deadline = time.time() + 30
rows = counted()
while sum(r['requests'] for r in rows) < ARGS['n'] and time.time() < deadline:
    time.sleep(0.3)
    rows = counted()
after = vllm_counters()
print(json.dumps({'statuses': [r[0] for r in results], 'client_usage': [r[1] for r in results], 'rows': rows,
                  'vllm_prompt': after['vllm:prompt_tokens_total'] - before['vllm:prompt_tokens_total'],
                  'vllm_generation': after['vllm:generation_tokens_total'] - before['vllm:generation_tokens_total']}))
""", {"tag": uuid.uuid4().hex[:8], "n": 24})
    assert set(result["statuses"]) == {200}, result["statuses"]
    # every response, streamed or not, carried its usage to the client
    assert all(u and u["completion_tokens"] > 0 for u in result["client_usage"]), result["client_usage"]
    rows = result["rows"]
    assert sum(r["requests"] for r in rows) == 24, rows
    prompt = sum(r["prompt_tokens"] for r in rows)
    completion = sum(r["completion_tokens"] for r in rows)
    assert result["vllm_prompt"] > 0 and result["vllm_generation"] > 0
    assert abs(prompt - result["vllm_prompt"]) <= 0.01 * result["vllm_prompt"], (prompt, result["vllm_prompt"])
    assert abs(completion - result["vllm_generation"]) <= 0.01 * result["vllm_generation"], (
        completion, result["vllm_generation"])
    # and match what the clients were told
    assert prompt == sum(u["prompt_tokens"] for u in result["client_usage"])
    assert completion == sum(u["completion_tokens"] for u in result["client_usage"])


def test_usage_log_holds_no_secret(host):
    keys = run(host, "print(json.dumps([MASTER, ENGINE]))")
    log = host.file("/var/log/gpuserve/usage.log")
    assert log.exists
    text = log.content_string
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert lines and all(set(entry) == {"time", "rid", "key", "status", "model", "prompt", "completion"}
                         for entry in lines)
    assert any(len(entry["key"]) == 64 for entry in lines)  # sha256 of a virtual key
    for key in keys:
        assert key not in text
    assert "sk-" not in text and "Bearer" not in text
    directory = host.file("/var/log/gpuserve")
    assert directory.mode == 0o750 and directory.group == "litellm"


@pytest.mark.parametrize("path", ["/_gpuserve/auth", "/auth", "/key/generate", "/metrics/"])
def test_key_service_not_reachable_through_nginx(host, path):
    result = run(host, r"""
print(json.dumps([call(m, ARGS['path'], MASTER, {} if m == 'POST' else None)[0] for m in ('GET', 'POST')]))
""", {"path": path})
    assert result == [404, 404]
