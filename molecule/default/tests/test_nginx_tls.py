"""Verify the nginx_tls role: real nginx, a certificate from a real ACME CA (Pebble, over
HTTP-01), the real vLLM engine behind it, and sslyze from PyPI scanning the TLS listener.

Requests are made inside the target by Python scripts that read the API key from the
engine's 0600 environment file, so the key never appears on a command line.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import uuid

import pytest

DOMAIN = "gpuserve.test"
ENGINE_UNIT = "vllm-tiny.service"
BURST = 40  # nginx_tls_rate_limit_burst default

PRELUDE = r"""
import json, os, ssl, sys, time, http.client
def _env(path, name):
    for line in open(path):
        if line.startswith(name + '='):
            return line.split('=', 1)[1].strip().strip('"')
def api_key():
    # The key clients present at nginx: the gateway's master key when the LiteLLM gateway
    # is behind nginx, else the engine's key. Read here, inside the host, from 0600 files.
    if os.path.exists('/etc/litellm/litellm.env'):
        return _env('/etc/litellm/litellm.env', 'LITELLM_MASTER_KEY')
    return _env('/etc/vllm/tiny.env', 'VLLM_API_KEY')
def engine_key():
    return _env('/etc/vllm/tiny.env', 'VLLM_API_KEY')
def connect(via):
    if via == 'nginx':
        return http.client.HTTPSConnection('gpuserve.test', 443, timeout=300,
                                           context=ssl.create_default_context())
    if via == 'gateway':
        return http.client.HTTPConnection('127.0.0.1', 4000, timeout=300)
    return http.client.HTTPConnection('127.0.0.1', 8000, timeout=300)
def request(conn, method, path, key=None, body=None):
    headers = {'Content-Type': 'application/json'}
    if key:
        headers['Authorization'] = 'Bearer ' + key
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    resp = conn.getresponse()
    return resp.status, dict(resp.getheaders()), resp.read().decode(errors='replace')
ARGS = json.loads(sys.argv[1])
"""


def pyrun(host, script: str, args: dict | None = None):
    """Run PRELUDE + script with python3 inside the target; the script prints JSON."""
    code = PRELUDE + script
    out = host.run(f"python3 -c {shlex.quote(code)} {shlex.quote(json.dumps(args or {}))}")
    assert out.rc == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def journal_since(host, unit: str, since: int) -> str:
    return host.run(f"journalctl -u {unit} --no-pager -o cat --since @{since}").stdout


def host_time(host) -> int:
    """The target's clock, in whole seconds (journalctl --since @N)."""
    return int(host.check_output("date +%s")) - 1


@pytest.fixture(scope="module")
def served_serial(host) -> str:
    return current_serial(host)


def current_serial(host) -> str:
    out = host.check_output(
        f"openssl s_client -connect 127.0.0.1:443 -servername {DOMAIN} </dev/null 2>/dev/null"
        " | openssl x509 -noout -serial -issuer"
    )
    return out


def test_config_validates(host):
    host.run_expect([0], "nginx -t -q")
    conf = host.file("/etc/nginx/nginx.conf").content_string
    assert "listen 443 ssl http2" in conf or "http2 on;" in conf
    assert "proxy_buffering off;" in conf
    # The access log format carries no credentials, query strings or bodies.
    log_format = conf[conf.index("log_format"):conf.index("access_log")]
    for forbidden in ("$http_authorization", "$request_body", "$request ", "$request_uri", "$args"):
        assert forbidden not in log_format, forbidden


def test_certificate_from_acme_ca(host, served_serial):
    # Pebble's issuer, for the domain, served by nginx; the lineage is certbot's.
    assert "Pebble Intermediate" in served_serial, served_serial
    host.run_expect([0], f"test -f /etc/letsencrypt/renewal/{DOMAIN}.conf")
    san = host.check_output(f"openssl x509 -in /etc/letsencrypt/live/{DOMAIN}/cert.pem -noout -ext subjectAltName")
    assert f"DNS:{DOMAIN}" in san
    timer = host.service("certbot.timer")
    assert timer.is_enabled and timer.is_running
    env = host.check_output("systemctl show certbot.service -p Environment")
    assert "REQUESTS_CA_BUNDLE=/etc/pebble/listener-ca.pem" in env


def test_http_redirects_except_acme_challenge(host):
    out = host.check_output("curl -s -o /dev/null -w '%{http_code} %{redirect_url}' http://gpuserve.test/v1/models")
    assert out == "301 https://gpuserve.test/v1/models"
    out = host.check_output("curl -s -o /dev/null -w '%{http_code}' http://gpuserve.test/.well-known/acme-challenge/nope")
    assert out == "404"


def test_https_serves_the_engine_with_trusted_certificate(host):
    result = pyrun(host, r"""
c = connect('nginx')
status, headers, body = request(c, 'GET', '/v1/models', key=api_key())
print(json.dumps({'status': status, 'hsts': headers.get('Strict-Transport-Security'),
                  'server': headers.get('Server'), 'models': [m['id'] for m in json.loads(body)['data']]}))
""")
    assert result["status"] == 200
    assert result["models"] == ["tiny"]
    assert result["hsts"] == "max-age=63072000"
    assert result["server"] == "nginx"  # server_tokens off: no version


STREAM = r"""
via = ARGS['via']
c = connect(via)
body = {'model': 'tiny', 'messages': [{'role': 'user', 'content': 'Tell me a story'}],
        'max_tokens': ARGS['max_tokens'], 'stream': True, 'ignore_eos': True, 'temperature': 0}
key = engine_key() if via == 'direct' else api_key()
c.request('POST', '/v1/chat/completions', body=json.dumps(body),
          headers={'Authorization': 'Bearer ' + key, 'Content-Type': 'application/json'})
t0 = time.monotonic()
resp = c.getresponse()
arrivals, events = [], 0
# read1 returns what the socket has: one call per network delivery.
while True:
    data = resp.read1(65536)
    if not data:
        break
    arrivals.append(time.monotonic() - t0)
    events += data.count(b'data: ')
print(json.dumps({'status': resp.status, 'arrivals': arrivals, 'events': events}))
"""


def test_streaming_arrives_as_produced(host):
    direct = pyrun(host, STREAM, {"via": "direct", "max_tokens": 200})
    proxied = pyrun(host, STREAM, {"via": "nginx", "max_tokens": 200})
    assert direct["status"] == proxied["status"] == 200
    assert proxied["events"] >= 200  # one event per token + role + [DONE]
    arrivals = proxied["arrivals"]
    # Many separate deliveries, the first long before the last: not one buffered burst.
    assert len(arrivals) >= 20, arrivals
    spread = arrivals[-1] - arrivals[0]
    direct_spread = direct["arrivals"][-1] - direct["arrivals"][0]
    assert spread >= 0.5 * direct_spread, (spread, direct_spread)
    assert arrivals[0] <= 0.5 * arrivals[-1], (arrivals[0], arrivals[-1])


def test_rate_limit_per_key(host):
    result = pyrun(host, r"""
# One key unknown to the backend, which answers 401: the limit is nginx's, before any backend.
c = connect('nginx')
statuses, limited = [], None
for i in range(ARGS['n']):
    status, headers, body = request(c, 'GET', '/v1/models', key='sk-ratelimit-probe-0001')
    statuses.append(status)
    if status == 429 and limited is None:
        limited = {'retry_after': headers.get('Retry-After'), 'type': headers.get('Content-Type'),
                   'body': json.loads(body)}
# Right after: another key is still served; a request without a key is refused by nginx
# (nginx_tls_require_api_key), not rate-limited.
other, _, _ = request(c, 'GET', '/v1/models', key=api_key())
anonymous, anon_headers, anon_body = request(c, 'GET', '/v1/models')
print(json.dumps({'statuses': statuses, 'limited': limited, 'other': other, 'anonymous': anonymous,
                  'anon_auth': anon_headers.get('WWW-Authenticate'), 'anon_body': json.loads(anon_body)}))
""", {"n": BURST + 10})
    statuses = result["statuses"]
    assert 429 not in statuses[: BURST + 1], statuses  # the burst (plus the first) passes
    assert 429 in statuses[BURST + 1:], statuses
    # answered by the backend: 401 (vLLM, or LiteLLM for a missing key) or 400 (LiteLLM
    # without a database for a key it does not know)
    assert set(statuses[: BURST + 1]) <= {400, 401}, statuses
    limited = result["limited"]
    assert limited["retry_after"] == "1"
    assert limited["type"] == "application/json"
    assert limited["body"]["error"]["type"] == "rate_limit_error"
    assert limited["body"]["error"]["code"] == "rate_limit_exceeded"
    assert result["other"] == 200
    assert result["anonymous"] == 401  # nginx_tls_require_api_key: refused before any backend
    assert result["anon_auth"] == "Bearer"
    assert result["anon_body"]["error"]["code"] == "missing_api_key"


DENIED = [
    "/metrics", "/health", "/invocations", "/load", "/version", "/ping",
    "/inference/v1/generate", "/scale_elastic_ep", "/is_scaling_elastic_ep",
    "/docs", "/openapi.json", "/tokenize", "/v1/load_lora_adapter",
    "//metrics", "/v1/../metrics", "/%6Detrics", "/v1/%2e%2e/metrics", "/v1/%2E%2E/invocations",
    "/metrics/", "/v1/models/../../metrics", "/%2Fmetrics", "/v1/chat/completions/../../../invocations",
    # LiteLLM's own routes: admin API, UI, health, and its un-prefixed OpenAI routes
    "/key/generate", "/key/list", "/user/new", "/model/new", "/model/info", "/spend/logs", "/ui",
    "/health/readiness", "/chat/completions", "/completions", "/models",
]


def test_allow_list_blocks_everything_else(host):
    since = host_time(host)
    probe = uuid.uuid4().hex
    control = uuid.uuid4().hex
    result = pyrun(host, r"""
c = connect('nginx')
out = {}
for path in ARGS['paths']:
    for method in ('GET', 'POST'):
        body = {'model': 'tiny', 'prompt': 'x', 'max_tokens': 1} if method == 'POST' else None
        status, headers, text = request(c, method, path + '?probe=' + ARGS['probe'], key=api_key(), body=body)
        out[method + ' ' + path] = [status, text]
allowed, _, _ = request(c, 'GET', '/v1/models', key=api_key())
# The control goes straight to vLLM: it shows that vLLM logs the query strings it receives.
control, _, _ = request(connect('direct'), 'GET', '/v1/models?probe=' + ARGS['control'], key=engine_key())
print(json.dumps({'results': out, 'allowed': allowed, 'control': control}))
""", {"paths": DENIED, "probe": probe, "control": control})
    for name, (status, text) in result["results"].items():
        # nginx's own answer (the backends answer 404 differently, or not at all)
        assert status == 404, (name, status, text)
        assert json.loads(text)["error"]["code"] == "not_found", name
    assert result["allowed"] == 200
    assert result["control"] == 200
    # vLLM logs every request it receives (uvicorn access log, with the query string): the
    # control request is there, none of the denied ones.
    journal = ""
    for _attempt in range(10):
        journal = journal_since(host, ENGINE_UNIT, since)
        if control in journal:
            break
        host.run("sleep 1")
    assert control in journal, journal[-2000:]
    assert probe not in journal


def test_access_log_holds_no_secrets(host):
    keys = pyrun(host, "print(json.dumps([api_key(), engine_key()]))")
    assert all(len(k) >= 16 for k in keys)
    log = host.file("/var/log/nginx/gpuserve-access.log").content_string
    assert "/v1/models" in log  # requests are logged
    for key in keys:
        assert key not in log
    assert "sk-ratelimit-probe" not in log
    assert "Bearer" not in log
    assert "probe=" not in log  # no query strings
    errors = host.file("/var/log/nginx/error.log").content_string
    for key in keys:
        assert key not in errors


def test_firewall_rules_added(host):
    added = host.check_output("ufw show added")
    assert "ufw allow 80/tcp" in added and "ufw allow 443/tcp" in added


def test_tls_scan_sslyze(host):
    sslyze = os.environ.get("GPUSERVE_SSLYZE", "")
    if not os.path.exists(sslyze):
        pytest.fail("sslyze is not installed: run tests/harness/setup.sh (GPUSERVE_SSLYZE)")
    address = host.backend.get_hostname()
    ip = subprocess.run(
        ["podman", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", address],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    out = "/tmp/gpuserve-sslyze-%s.json" % uuid.uuid4().hex
    subprocess.run(
        [sslyze, "--quiet", "--json_out", out, "--sslv2", "--sslv3", "--tlsv1", "--tlsv1_1",
         "--tlsv1_2", "--tlsv1_3", "--heartbleed", "--robot", "--openssl_ccs",
         "--reneg", "--compression", "--fallback", f"{DOMAIN}:443{{{ip}}}"],
        check=True, timeout=300,
    )
    with open(out) as f:
        scan = json.load(f)
    os.unlink(out)
    [target] = scan["server_scan_results"]
    assert target["scan_status"] == "COMPLETED", target
    res = target["scan_result"]

    def accepted(cmd):
        assert res[cmd]["status"] == "COMPLETED", (cmd, res[cmd])
        return [s["cipher_suite"]["name"] for s in res[cmd]["result"]["accepted_cipher_suites"]]

    for old in ("ssl_2_0_cipher_suites", "ssl_3_0_cipher_suites", "tls_1_0_cipher_suites", "tls_1_1_cipher_suites"):
        assert accepted(old) == [], old
    tls12, tls13 = accepted("tls_1_2_cipher_suites"), accepted("tls_1_3_cipher_suites")
    assert tls12 and tls13
    weak = ("CBC", "RC4", "3DES", "DES_", "NULL", "EXPORT", "anon", "MD5", "SHA_")
    for name in tls12:
        assert not any(w in name for w in weak), name
        assert name.startswith(("TLS_ECDHE_", "TLS_DHE_")), name  # forward secrecy only
    assert res["heartbleed"]["result"]["is_vulnerable_to_heartbleed"] is False
    assert res["openssl_ccs_injection"]["result"]["is_vulnerable_to_ccs_injection"] is False
    assert res["tls_compression"]["result"]["supports_compression"] is False
    assert res["tls_fallback_scsv"]["result"]["supports_fallback_scsv"] is True
    assert res["session_renegotiation"]["result"]["is_vulnerable_to_client_renegotiation_dos"] is False
    assert "NOT_VULNERABLE" in res["robot"]["result"]["robot_result"]


def test_forced_renewal_is_served(host, served_serial):
    """certbot's own service (with a runtime drop-in forcing renewal) renews through Pebble,
    and its deploy hook reloads nginx: the new serial is served."""
    dropin = "/run/systemd/system/certbot.service.d"
    host.run_expect([0], f"mkdir -p {dropin} && printf '%s\\n' '[Service]' 'ExecStart=' "
                    f"'ExecStart=/usr/bin/certbot -q renew --force-renewal --no-random-sleep-on-renew' "
                    f"> {dropin}/force.conf && systemctl daemon-reload")
    try:
        out = host.run("systemctl start certbot.service")
        assert out.rc == 0, host.run("journalctl -u certbot.service -n 50 --no-pager").stdout
    finally:
        host.run(f"rm -f {dropin}/force.conf && systemctl daemon-reload")
    renewed = current_serial(host)
    assert "Pebble Intermediate" in renewed
    assert renewed != served_serial
