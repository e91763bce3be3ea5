"""Verify the observability role against the live stack: real Prometheus, Alertmanager,
node/nginx/blackbox exporters from Debian's packages, scraping the real vLLM, LiteLLM and nginx.

Prometheus is queried inside the target with Python's urllib (its API listens on loopback).
"""

from __future__ import annotations

import json
import os
import shlex

import pytest

PORTS = {9090: "prometheus", 9093: "alertmanager", 9100: "node exporter", 9113: "nginx exporter",
         9115: "blackbox exporter"}
SCRIPT = r"""
import json, sys, time, urllib.parse, urllib.request
def api(path, **params):
    url = 'http://127.0.0.1:9090' + path + ('?' + urllib.parse.urlencode(params) if params else '')
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return json.load(e)
"""


def prom(host, code: str, args=None):
    out = host.run(f"python3 -c {shlex.quote(SCRIPT + code)} {shlex.quote(json.dumps(args or {}))}")
    assert out.rc == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("unit", ["prometheus", "prometheus-alertmanager", "prometheus-node-exporter",
                                  "prometheus-nginx-exporter", "prometheus-blackbox-exporter"])
def test_services_running(host, unit):
    svc = host.service(unit)
    assert svc.is_enabled and svc.is_running


def test_everything_on_loopback(host):
    listening = host.check_output("ss -Hltn | awk '{print $4}'").split()
    for port, name in PORTS.items():
        addresses = [a for a in listening if a.rsplit(":", 1)[-1] == str(port)]
        assert addresses, f"{name} does not listen on {port}"
        assert all(a.startswith(("127.0.0.1:", "[::1]:")) for a in addresses), (name, addresses)


def test_gateway_key_only_in_credentials_file(host):
    creds = host.file("/etc/prometheus/litellm.credentials")
    assert creds.mode == 0o640 and creds.user == "root" and creds.group == "prometheus"
    key = creds.content_string.strip()
    assert key.startswith("sk-")
    assert key not in host.file("/etc/prometheus/prometheus.yml").content_string


def test_all_targets_up(host):
    result = prom(host, r"""
deadline = time.time() + 120
while True:
    targets = api('/api/v1/targets')['data']['activeTargets']
    state = [[t['labels']['job'], t['labels'].get('instance'), t['health'], t.get('lastError', ''), t['labels']]
             for t in targets]
    if (all(s[2] == 'up' for s in state) and len(state) > 0) or time.time() > deadline:
        break
    time.sleep(5)
print(json.dumps(state))
""")
    jobs = {entry[0] for entry in result}
    assert {"prometheus", "alertmanager", "vllm", "litellm", "node", "nginx", "tls"} <= jobs, jobs
    down = [s for s in result if s[2] != "up"]
    assert not down, down
    vllm = [s[4] for s in result if s[0] == "vllm"][0]
    assert vllm["model"] == "tiny" and vllm["instance"] == "tiny" and "host" in vllm and "gpu" in vllm


def test_rules_loaded(host):
    groups = prom(host, "print(json.dumps([g['name'] for g in api('/api/v1/rules')['data']['groups']]))")
    assert {"vllm", "gateway", "tls", "targets"} <= set(groups), groups


def test_every_dashboard_query_runs(host):
    path = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "observability",
                        "files", "dashboards", "panel_queries.json")
    with open(path) as f:
        queries = [q["expr_resolved"] for q in json.load(f)["queries"]]
    result = prom(host, r"""
out = []
for q in ARGS:
    r = api('/api/v1/query', query=q)
    out.append([q, r.get('status'), r.get('error'), len(r.get('data', {}).get('result', []))])
print(json.dumps(out))
""".replace("ARGS", "json.loads(sys.argv[1])"), queries)
    broken = [r for r in result if r[1] != "success"]
    assert not broken, broken
    # the series that exist return data (the engine and the gateway have served requests)
    with_data = {r[0] for r in result if r[3] > 0}
    assert any("vllm:generation_tokens_total" in q for q in with_data), with_data
    assert any("node_" in q for q in with_data), with_data
