# Copyright: (c) 2026, gpuserve.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for plugins/module_utils/vllm_api.py.

open_url is replaced by a fake here to reach every error branch; the module tests
(tests/unit/plugins/modules/test_vllm_health.py) run the client against a local HTTP server.
"""

from __future__ import annotations

import io
import json
import socket
import ssl
from urllib.error import HTTPError, URLError

import pytest

from ansible_collections.gpuserve.vllm.plugins.module_utils import api_client
from ansible_collections.gpuserve.vllm.plugins.module_utils.vllm_api import VllmApiError, VllmClient

KEY = "sk-test-5f0d9c1e2b7a"


class FakeResponse:
    def __init__(self, status=200, body=b""):
        self.status, self.body = status, body

    def getcode(self):
        return self.status

    def read(self):
        return self.body

    def close(self):
        pass


class FakeOpenUrl:
    """Records calls; answers with the next item of ``answers`` (raised when an exception)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []

    def __call__(self, url, **kwargs):
        self.calls.append(dict(kwargs, url=url))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer


def http_error(code, body):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return HTTPError("http://x", code, "status %d" % code, {}, io.BytesIO(body))


@pytest.fixture
def fake(monkeypatch):
    def install(*answers):
        opener = FakeOpenUrl(*answers)
        monkeypatch.setattr(api_client, "open_url", opener)
        return opener
    return install


def test_base_url_and_proxy_choice():
    assert VllmClient("http://127.0.0.1:8000/v1/").base_url == "http://127.0.0.1:8000"
    assert VllmClient("http://127.0.0.1:8000")._use_proxy is False
    assert VllmClient("http://localhost:8000")._use_proxy is False
    assert VllmClient("https://llm.example.com")._use_proxy is True


def test_health_true_without_auth_header(fake):
    opener = fake(FakeResponse(200, b""))
    client = VllmClient("http://127.0.0.1:8000", api_key=KEY, validate_certs=False, ca_path="/ca.pem")
    assert client.health(timeout=3) is True
    call = opener.calls[0]
    assert call["url"] == "http://127.0.0.1:8000/health"
    assert "Authorization" not in call["headers"]
    assert call["timeout"] == 3
    assert call["validate_certs"] is False
    assert call["ca_path"] == "/ca.pem"
    assert call["use_netrc"] is False
    assert client.last_health_error is None


@pytest.mark.parametrize("error", [
    URLError(ConnectionRefusedError(111, "Connection refused")),
    ConnectionResetError(104, "Connection reset by peer"),
    socket.timeout("timed out"),
    http_error(503, b""),
])
def test_health_false_while_starting(fake, error):
    fake(error)
    client = VllmClient("http://127.0.0.1:8000")
    assert client.health() is False
    assert client.last_health_error


def test_health_raises_on_4xx_and_tls(fake):
    fake(http_error(404, {"detail": "Not Found"}))
    with pytest.raises(VllmApiError) as info:
        VllmClient("http://127.0.0.1:8000").health()
    assert info.value.status == 404
    fake(URLError(ssl.SSLCertVerificationError(1, "certificate verify failed")))
    with pytest.raises(VllmApiError, match="certificate verify failed"):
        VllmClient("https://llm.example.com").health()


def test_models_sends_key_and_parses(fake):
    body = {"object": "list", "data": [{"id": "tiny", "object": "model", "max_model_len": 4096}]}
    opener = fake(FakeResponse(200, json.dumps(body).encode()))
    models = VllmClient("http://127.0.0.1:8000", api_key=KEY).models()
    assert models == body["data"]
    assert opener.calls[0]["headers"]["Authorization"] == "Bearer " + KEY
    assert opener.calls[0]["unredirected_headers"] == ["Authorization"]


def test_models_401_says_key_rejected_without_the_key(fake):
    # even when the server (or a proxy) echoes the key back, it must not surface
    fake(http_error(401, {"error": "Unauthorized: bad key %s" % KEY}))
    client = VllmClient("http://127.0.0.1:8000", api_key=KEY)
    with pytest.raises(VllmApiError) as info:
        client.models()
    err = info.value
    assert err.status == 401
    assert "API key was rejected" in str(err)
    for text in (str(err), repr(err), err.message, repr(client)):
        assert KEY not in text


def test_models_401_without_key(fake):
    fake(http_error(401, {"error": "Unauthorized"}))
    with pytest.raises(VllmApiError, match="requires an API key"):
        VllmClient("http://127.0.0.1:8000").models()


@pytest.mark.parametrize("body, expected", [
    ({"error": {"message": "The model `x` does not exist.", "type": "NotFoundError", "code": 404}},
     "The model `x` does not exist."),
    ({"object": "error", "message": "old style message", "type": "BadRequestError", "code": 400},
     "old style message"),
    ({"detail": "Not Found"}, "Not Found"),
    (b"<html>bad gateway</html>", "<html>bad gateway</html>"),
])
def test_server_error_messages(fake, body, expected):
    fake(http_error(400, body))
    with pytest.raises(VllmApiError) as info:
        VllmClient("http://127.0.0.1:8000").warmup("x")
    assert info.value.status == 400
    assert expected in str(info.value)


def test_models_unexpected_and_transport_errors(fake):
    fake(FakeResponse(200, b'{"object": "list"}'))
    with pytest.raises(VllmApiError, match="unexpected response"):
        VllmClient("http://127.0.0.1:8000").models()
    fake(FakeResponse(200, b"not json"))
    with pytest.raises(VllmApiError, match="not JSON"):
        VllmClient("http://127.0.0.1:8000").models()
    fake(URLError(ConnectionRefusedError(111, "Connection refused")))
    with pytest.raises(VllmApiError) as info:
        VllmClient("http://127.0.0.1:8000").models()
    assert info.value.status is None
    assert "Connection refused" in str(info.value)


def test_version(fake):
    fake(FakeResponse(200, b'{"version": "0.22.0"}'))
    assert VllmClient("http://127.0.0.1:8000").version() == "0.22.0"
    fake(http_error(404, {"detail": "Not Found"}))
    assert VllmClient("http://127.0.0.1:8000").version() is None


@pytest.mark.parametrize("kind, path, field", [
    ("completion", "/v1/completions", "prompt"),
    ("chat", "/v1/chat/completions", "messages"),
])
def test_warmup(fake, kind, path, field):
    opener = fake(FakeResponse(200, b'{"choices": [{"index": 0, "text": " world"}]}'))
    latency = VllmClient("http://127.0.0.1:8000", api_key=KEY).warmup("tiny", kind, "Hi", 4)
    assert isinstance(latency, float) and latency >= 0
    call = opener.calls[0]
    assert call["url"].endswith(path)
    assert call["method"] == "POST"
    payload = json.loads(call["data"])
    assert payload["model"] == "tiny" and payload["max_tokens"] == 4 and field in payload


def test_warmup_errors(fake):
    fake(FakeResponse(200, b'{"choices": []}'))
    with pytest.raises(VllmApiError, match="no choices"):
        VllmClient("http://127.0.0.1:8000").warmup("tiny")
    with pytest.raises(ValueError):
        VllmClient("http://127.0.0.1:8000").warmup("tiny", kind="embedding")
