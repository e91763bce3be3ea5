# Copyright: (c) 2026, gpuserve.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""gpuserve-keyd, the key service of the gateway's edge data path (roles/litellm_gateway/files).

The real service, started in-process on a free loopback port, with its real SQLite store and a
real usage log file written the way nginx writes it. The litellm_key module's idempotence
scenario runs against it, and its answers are checked with LiteLLM's own pydantic models (the
shapes litellm_key is written for). The nginx side (auth_request, njs usage filter) is tested
live in molecule/default/tests/test_edge_path.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import socket
import time
import urllib.error
import urllib.request

import pytest

KEYD_PATH = pathlib.Path(__file__).resolve().parents[2] / "roles" / "litellm_gateway" / "files" / "gpuserve_keyd.py"
MASTER = "sk-keyd-test-master-0123456789"
PRICES = {"tiny": {"input_cost_per_token": 0.001, "output_cost_per_token": 0.002}}


def _load():
    spec = importlib.util.spec_from_file_location("gpuserve_keyd", KEYD_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


keyd = _load()


def _config(tmp_path, **extra):
    config = dict(host="127.0.0.1", port=0, database=str(tmp_path / "keys.sqlite3"),
                  usage_log=str(tmp_path / "usage.log"), usage_poll_interval=0.05, prices=PRICES)
    config.update(extra)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return keyd.load_config(str(path))


@pytest.fixture
def server(tmp_path):
    srv = keyd.KeyServer(_config(tmp_path), MASTER, follow=False)
    srv.start()
    yield srv
    srv.stop()


def call(srv, method, path, body=None, key=MASTER):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(srv.url + path, data=data, method=method)
    if key:
        req.add_header("Authorization", "Bearer " + key)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, dict(resp.headers), json.loads(raw) if raw and path != "/metrics/" else raw
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, dict(exc.headers), json.loads(raw) if raw else None


def usage_line(token, prompt, completion, status=200, model="tiny"):
    # the shape of nginx_tls' gpuserve_usage log format (escape=json: every value a string)
    return json.dumps({"time": "%.3f" % time.time(), "rid": os.urandom(8).hex(), "key": token,
                       "status": str(status), "model": model, "prompt": str(prompt),
                       "completion": str(completion)}) + "\n"


def test_litellm_key_idempotence_scenario(server, idempotence_scenario):
    steps = idempotence_scenario(server.url, MASTER, "keyd-scenario")
    assert steps["create"][0]["key_info"]["models"] == ["tiny"]
    assert steps["create"][0]["key_info"]["max_budget"] == 10.0


def test_answers_have_litellm_shapes(server):
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from litellm.proxy._types import GenerateKeyRequest, GenerateKeyResponse, LiteLLM_VerificationToken

    body = {"key_alias": "shape", "models": ["tiny"], "max_budget": 1.5, "budget_duration": "30d",
            "rpm_limit": 10, "metadata": {"team": "a"}, "duration": "1d"}
    GenerateKeyRequest.model_validate(body)  # what litellm_key sends is a LiteLLM request
    status, dummy, created = call(server, "POST", "/key/generate", body)
    assert status == 200, created
    # LiteLLM's model copies ``token`` over ``key`` when both are given (a validator), so check the
    # body without it, then the token separately: LiteLLM answers token == token_id == sha256(key)
    response = GenerateKeyResponse.model_validate(dict(created, token=None))
    assert created["token"] == created["token_id"]
    assert response.key.startswith("sk-") and response.token_id == keyd.hash_token(response.key)
    status, dummy, info = call(server, "GET", "/key/info?key=" + response.token_id)
    assert status == 200
    row = LiteLLM_VerificationToken.model_validate(dict(info["info"], token=response.token_id))
    assert row.max_budget == 1.5 and row.models == ["tiny"] and row.key_alias == "shape"
    assert row.expires is not None and row.budget_reset_at is not None
    status, dummy, listed = call(server, "GET", "/key/list?key_alias=shape&return_full_object=true")
    assert listed["total_count"] == 1 and listed["keys"][0]["token"] == response.token_id
    # the secret is never stored or shown again
    assert response.key not in json.dumps(info) + json.dumps(listed)
    db = pathlib.Path(server.config["database"]).read_bytes()
    assert response.key.encode() not in db


def test_a_burst_of_connections_queues_instead_of_being_dropped(tmp_path):
    # nginx opens one connection per concurrent request until its keepalive pool is warm. While the
    # service has not accepted yet, 256 connections must still complete their handshake at once
    # (a listen backlog of 5 drops SYNs: the client waits >= 1 s for a retransmit, nginx gives up
    # after its 2 s connect timeout), and each must get its verdict once the service serves.
    srv = keyd.KeyServer(_config(tmp_path), MASTER, follow=False)
    socks: list[socket.socket] = []
    started = False
    try:
        host, port = srv.server_address[:2]
        start = time.monotonic()
        for dummy in range(256):
            socks.append(socket.create_connection((host, port), timeout=0.5))
        assert time.monotonic() - start < 5
        for sock in socks:
            sock.sendall(b"GET /auth HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-none\r\n"
                         b"Connection: close\r\n\r\n")
        srv.start()
        started = True
        for sock in socks:
            sock.settimeout(10)
            assert sock.recv(64).startswith(b"HTTP/1.1 401")
    finally:
        for sock in socks:
            sock.close()
        if started:
            srv.stop()  # shutdown() waits for serve_forever: only once it runs
        else:
            srv.server_close()


def test_management_needs_the_master_key(server):
    for key in (None, "sk-wrong"):
        status, dummy, body = call(server, "POST", "/key/generate", {"key_alias": "x"}, key=key)
        assert status == 401 and body["error"]["type"] == "auth_error"
    status, dummy, body = call(server, "GET", "/metrics/", key="sk-wrong")
    assert status == 401


def test_unknown_fields_are_refused_with_the_way_out(server):
    status, dummy, body = call(server, "POST", "/key/generate", {"key_alias": "x", "guardrails": ["pii"]})
    assert status == 422
    assert "guardrails" in body["error"]["message"] and "litellm_gateway_data_path" in body["error"]["message"]


def test_auth_verdicts(server):
    status, dummy, created = call(server, "POST", "/key/generate", {"key_alias": "v"})
    secret = created["key"]
    status, headers, dummy = call(server, "GET", "/auth", key=secret)
    assert status == 204 and headers["X-Gpuserve-Key"] == created["token"]
    status, headers, dummy = call(server, "GET", "/auth", key=MASTER)
    assert status == 204 and headers["X-Gpuserve-Key"] == "master"
    for key, code, reason in ((None, 401, "invalid"), ("sk-unknown", 401, "invalid")):
        status, headers, dummy = call(server, "GET", "/auth", key=key)
        assert (status, headers.get("X-Gpuserve-Reason")) == (code, reason)
    # blocked: refused from the next request on; unblocked: served again
    assert call(server, "POST", "/key/block", {"key": created["token"]})[0] == 200
    status, headers, dummy = call(server, "GET", "/auth", key=secret)
    assert (status, headers.get("X-Gpuserve-Reason")) == (403, "blocked")
    assert call(server, "POST", "/key/unblock", {"key": created["token"]})[0] == 200
    assert call(server, "GET", "/auth", key=secret)[0] == 204
    # deleted: refused at once
    assert call(server, "POST", "/key/delete", {"key_aliases": ["v"]})[0] == 200
    status, headers, dummy = call(server, "GET", "/auth", key=secret)
    assert (status, headers.get("X-Gpuserve-Reason")) == (401, "invalid")


def test_expiry_and_rpm_limit(server):
    store = server.store
    created = store.generate({"key_alias": "e", "duration": "300s", "rpm_limit": 3})
    now = time.time()
    minute = now - now % 60
    assert [store.verdict(created["key"], minute + 1)[0] for dummy in range(4)] == ["allow"] * 3 + ["rate_limit"]
    assert store.verdict(created["key"], minute + 61)[0] == "allow"  # the next minute
    assert store.verdict(created["key"], now + 301)[0] == "expired"


def test_budget_from_usage_log(tmp_path):
    srv = keyd.KeyServer(_config(tmp_path), MASTER, follow=False)
    store, log = srv.store, tmp_path / "usage.log"
    follower = keyd.UsageFollower(store, str(log), 0.05)
    created = store.generate({"key_alias": "b", "max_budget": 1.0})
    other = store.generate({"key_alias": "other"})
    log.write_text(usage_line(created["token"], 100, 200) + usage_line(other["token"], 7, 9))
    assert follower.poll() == 2
    row = store.rows[created["token"]]
    assert row["spend"] == pytest.approx(100 * 0.001 + 200 * 0.002)  # 0.5: still under 1.0
    assert store.verdict(created["key"])[0] == "allow"
    with log.open("a") as handle:
        handle.write(usage_line(created["token"], 100, 200))
    follower.poll()
    assert store.verdict(created["key"])[0] == "budget"
    assert store.verdict(other["key"])[0] == "allow"
    assert row["gpuserve_usage"] == {"requests": 2, "prompt_tokens": 200, "completion_tokens": 400}
    # raising the budget lets the key in again
    store.update({"key": created["token"], "max_budget": 5.0})
    assert store.verdict(created["key"])[0] == "allow"
    srv.server_close()


def test_follower_survives_partial_lines_rotation_truncation_and_restart(tmp_path):
    config = _config(tmp_path)
    log = pathlib.Path(config["usage_log"])
    srv = keyd.KeyServer(config, MASTER, follow=False)
    token = srv.store.generate({"key_alias": "f"})["token"]
    follower = keyd.UsageFollower(srv.store, str(log), 0.05)
    line = usage_line(token, 10, 1)
    log.write_text(line + line[:20])  # the second line is still being written
    assert follower.poll() == 1
    with log.open("a") as handle:
        handle.write(line[20:])
    assert follower.poll() == 1
    # logrotate: rename, nginx reopens a new file; lines written to the old one before it are kept
    with log.open("a") as handle:
        handle.write(line)
    log.rename(str(log) + ".1")
    log.write_text(line)
    assert follower.poll() == 2
    # restart: a new process resumes at the stored position, nothing counted twice
    srv.store.db.close()
    srv.server_close()
    srv2 = keyd.KeyServer(config, MASTER, follow=False)
    follower2 = keyd.UsageFollower(srv2.store, str(log), 0.05)
    with log.open("a") as handle:
        handle.write(line)
    assert follower2.poll() == 1
    assert srv2.store.rows[token]["gpuserve_usage"]["requests"] == 5
    # a restart while the log was rotated finishes the rotated file first
    with log.open("a") as handle:
        handle.write(line)
    log.rename(str(log) + ".1")
    log.write_text(line + line)
    srv2.store.db.close()
    srv2.server_close()
    srv3 = keyd.KeyServer(config, MASTER, follow=False)
    follower3 = keyd.UsageFollower(srv3.store, str(log), 0.05)
    follower3.poll()
    assert srv3.store.rows[token]["gpuserve_usage"]["requests"] == 8
    # copytruncate
    log.write_text("")
    follower3.poll()
    log.write_text(line)
    follower3.poll()
    assert srv3.store.rows[token]["gpuserve_usage"]["requests"] == 9
    srv3.server_close()


def test_bad_lines_are_counted_not_fatal(tmp_path):
    srv = keyd.KeyServer(_config(tmp_path), MASTER, follow=False)
    token = srv.store.generate({"key_alias": "x"})["token"]
    log = tmp_path / "usage.log"
    log.write_text("not json\n" + usage_line(token, 1, 2) + usage_line(token, "", "", status=499))
    follower = keyd.UsageFollower(srv.store, str(log), 0.05)
    assert follower.poll() == 3
    assert srv.store.usage_bad_lines == 1
    assert srv.store.rows[token]["gpuserve_usage"]["prompt_tokens"] == 1
    metrics = srv.store.metrics(follower)
    assert 'gpuserve_keyd_requests_total{key_alias="x",status_code="499"} 1' in metrics
    assert 'gpuserve_keyd_prompt_tokens_total{key_alias="x"} 1.0' in metrics
    srv.server_close()


def test_metrics_over_http_with_master_key(server):
    call(server, "POST", "/key/generate", {"key_alias": "m"})
    status, dummy, raw = call(server, "GET", "/metrics/")
    assert status == 200 and b"gpuserve_keyd_keys 1" in raw


@pytest.mark.parametrize("bad, message", [
    ({"port": "x"}, "port"),
    ({"usage_poll_interval": 0}, "usage_poll_interval"),
    ({"prices": {"tiny": {"input_cost_per_token": -1, "output_cost_per_token": 0}}}, "input_cost_per_token"),
    ({"prices": {"tiny": {"cost": 1}}}, "tiny"),
    ({"database": "relative.db"}, "database"),
    ({"workers": 4}, "unknown settings workers"),
])
def test_check_config_says_what_to_fix(tmp_path, capsys, bad, message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(dict({"database": str(tmp_path / "k.db"), "usage_log": str(tmp_path / "u.log")},
                                    **bad)))
    assert keyd.main(["--config", str(path), "--check-config"]) == 2
    assert message in capsys.readouterr().err


def test_check_config_accepts_a_valid_file(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"database": str(tmp_path / "k.db"), "usage_log": str(tmp_path / "u.log"),
                                "prices": PRICES}))
    assert keyd.main(["--config", str(path), "--check-config"]) == 0
