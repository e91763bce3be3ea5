# Copyright: (c) 2026, gpuserve.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for plugins/module_utils/api_client.py, the HTTP plumbing of vllm_api and litellm_api.

open_url is replaced by a fake to reach every branch of ApiClient.
"""

from __future__ import annotations

import io
import json
import socket
from urllib.error import HTTPError, URLError

import pytest

from ansible_collections.gpuserve.vllm.plugins.module_utils import api_client
from ansible_collections.gpuserve.vllm.plugins.module_utils.api_client import (
    ApiClient,
    ApiError,
    body_message,
    error_member,
    is_loopback,
    openai_message,
    read_key_file,
    root_url,
    scrub,
)

TOKEN = "sk-token-3c9e1f7a"


class FakeResponse:
    def __init__(self, status=200, body=b""):
        self.status, self.body = status, body
        self.closed = False

    def getcode(self):
        return self.status

    def read(self):
        return self.body

    def close(self):
        self.closed = True


class FakeOpenUrl:
    """Records calls; answers with ``answer`` (raised when an exception)."""

    def __init__(self, answer):
        self.answer = answer
        self.calls = []

    def __call__(self, url, **kwargs):
        self.calls.append(dict(kwargs, url=url))
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


class UnreadableHTTPError(HTTPError):
    def read(self, *args):
        raise OSError("connection reset while reading the body")


def http_error(code, body, reason=None):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return HTTPError("http://x", code, reason if reason is not None else "status %d" % code, {}, io.BytesIO(body))


@pytest.fixture
def fake(monkeypatch):
    def install(answer):
        opener = FakeOpenUrl(answer)
        monkeypatch.setattr(api_client, "open_url", opener)
        return opener
    return install


class ThingError(ApiError):
    """Error of the test API."""


class ThingClient(ApiClient):
    """A subclass as vllm_api and litellm_api write them."""

    error_class = ThingError
    max_message = 20

    def explain_status(self, status, message):
        return "denied (%s)" % message if status == 403 else message


# -- helpers ----------------------------------------------------------------------


def test_api_error_text():
    assert str(ApiError(404, "GET /x: Not Found")) == "HTTP 404: GET /x: Not Found"
    assert str(ApiError(None, "request to http://h/x failed: refused")) == "request to http://h/x failed: refused"
    err = ThingError(500, "boom")
    assert isinstance(err, ApiError) and err.status == 500 and err.message == "boom"


@pytest.mark.parametrize("host, expected", [
    ("localhost", True), ("LOCALHOST", True), ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True),
    ("ip6-localhost", True), ("llm.example.com", False), ("10.0.0.1", False), ("", False), (None, False),
])
def test_is_loopback(host, expected):
    assert is_loopback(host) is expected


@pytest.mark.parametrize("url, expected", [
    (" http://127.0.0.1:8000/v1/ ", "http://127.0.0.1:8000"),
    ("http://127.0.0.1:4000//", "http://127.0.0.1:4000"),
    ("https://llm.example.com/gateway", "https://llm.example.com/gateway"),
    ("https://llm.example.com/v1x", "https://llm.example.com/v1x"),
])
def test_root_url(url, expected):
    assert root_url(url) == expected


def test_scrub():
    assert scrub("a sk-1 b sk-2 sk-1", ["sk-1", "", "sk-2"]) == "a <redacted> b <redacted> <redacted>"
    assert scrub("nothing here", []) == "nothing here"


@pytest.mark.parametrize("data, with_type, expected", [
    ({"error": {"message": "Bad key", "type": "auth_error"}}, False, "Bad key"),
    ({"error": {"message": "Bad key", "type": "auth_error"}}, True, "Bad key (type auth_error)"),
    ({"error": {"message": "Bad key"}}, True, "Bad key"),
    ({"error": "Unauthorized"}, False, "Unauthorized"),
    ({"error": {"type": "x"}}, True, None),
    ({"error": ""}, False, None),
    ({"detail": "Not Found"}, False, None),
])
def test_error_member(data, with_type, expected):
    assert error_member(data, with_type=with_type) == expected


@pytest.mark.parametrize("data, expected", [
    ({"error": {"message": "The model `x` does not exist.", "type": "NotFoundError"}}, "The model `x` does not exist."),
    ({"object": "error", "message": "old style", "detail": "later"}, "old style"),
    ({"detail": "Not Found"}, "Not Found"),
    ({"detail": [1]}, "[1]"),
    ({"status": "down"}, None),
])
def test_openai_message(data, expected):
    assert openai_message(data) == expected


def test_body_message():
    def pick(data):
        return data.get("why")

    assert body_message(b'{"why": "because"}', 100, pick) == "because"
    assert body_message(b'{"why": "%s"}' % (b"w" * 50), 10, pick) == "w" * 10
    assert body_message(b'{"why": ""}', 100, pick) == ""  # what pick finds is kept, even empty
    assert body_message(b'{"other": 1}', 100, pick) == '{"other": 1}'
    assert body_message(b"[1, 2]", 100, pick) == "[1, 2]"
    assert body_message(b"  <html>Bad Gateway</html>\n", 8, pick) == "<html>Ba"
    assert body_message(b"", 100, pick) == "(empty response body)"
    assert body_message(b"\xff", 100, pick) == "\ufffd"


# -- key files --------------------------------------------------------------------


def read_from(tmp_path, content, variable="THING_KEY", allow_empty=True, bare_with_equals=True):
    path = tmp_path / "env"
    path.write_text(content)
    return read_key_file(str(path), variable, allow_empty=allow_empty, bare_with_equals=bare_with_equals)


@pytest.mark.parametrize("content, expected", [
    ("sk-bare\n", "sk-bare"),
    ("\n# comment\n  sk-bare  \n\n", "sk-bare"),
    ("# svc\nHF_HOME=/var/cache\nTHING_KEY=\"sk-env\"\n", "sk-env"),
    ("export THING_KEY='sk-env'\n", "sk-env"),
    ("  THING_KEY = sk-env  \n", "sk-env"),
    ("THING_KEY=sk-first\nTHING_KEY=sk-second\n", "sk-second"),  # the last wins, as in systemd
    # the roles' templates escape \ and " inside double quotes; systemd undoes it
    ('THING_KEY="sk-a\\\\b\\"c\\$d"\n', 'sk-a\\b"c$d'),
    ("THING_KEY='sk-a\\\\b'\n", "sk-a\\\\b"),  # single quotes: literal
    ("THING_KEY=\"\n", '"'),
])
@pytest.mark.parametrize("strict", [False, True])
def test_read_key_file(tmp_path, content, expected, strict):
    assert read_from(tmp_path, content, allow_empty=not strict, bare_with_equals=not strict) == expected


@pytest.mark.parametrize("content, allow_empty, bare_with_equals, expected", [
    ("THING_KEY=sk-earlier\nTHING_KEY=\"\"\n", True, False, ""),  # empty: for the caller to report
    ("THING_KEY=\"\"\nTHING_KEY=sk-later\n", True, False, "sk-later"),
    ("THING_KEY=\"\"\nTHING_KEY=sk-later\n", False, False, "sk-later"),  # empty lines passed over
    ("c2stYmFzZTY0==\n", False, True, "c2stYmFzZTY0=="),
])
def test_read_key_file_policies(tmp_path, content, allow_empty, bare_with_equals, expected):
    assert read_from(tmp_path, content, allow_empty=allow_empty, bare_with_equals=bare_with_equals) == expected


@pytest.mark.parametrize("content, allow_empty, bare_with_equals", [
    ("", True, True),
    ("# only a comment\n", True, True),
    ("A=1\nB=2\n", True, True),
    ("sk-one\nsk-two\n", True, True),
    ("OTHER_THING_KEY=x\ny\n", True, True),
    ("THING_KEY=\n", False, False),
    ("c2stYmFzZTY0==\n", False, False),
])
def test_read_key_file_without_key(tmp_path, content, allow_empty, bare_with_equals):
    with pytest.raises(ValueError) as info:
        read_from(tmp_path, content, allow_empty=allow_empty, bare_with_equals=bare_with_equals)
    assert str(info.value) == "it holds neither a THING_KEY= line nor a single line with the bare key"


def test_read_key_file_name_is_literal(tmp_path):
    assert read_from(tmp_path, "AXB=wrong\nA.B=right\n", variable="A.B") == "right"


def test_read_key_file_errors(tmp_path):
    with pytest.raises(OSError):
        read_key_file(str(tmp_path / "missing"), "THING_KEY", allow_empty=True, bare_with_equals=True)
    path = tmp_path / "binary"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UnicodeDecodeError):
        read_key_file(str(path), "THING_KEY", allow_empty=True, bare_with_equals=True)


# -- ApiClient --------------------------------------------------------------------


def test_client_settings():
    client = ApiClient(" http://127.0.0.1:8000/v1/ ", TOKEN)
    assert client.base_url == "http://127.0.0.1:8000"
    assert client._use_proxy is False
    assert ApiClient("https://llm.example.com")._use_proxy is True
    assert client.calls == []


def test_request_sends_token_and_json(fake):
    response = FakeResponse(200, b'{"ok": true}')
    opener = fake(response)
    client = ApiClient("http://127.0.0.1:8000", TOKEN, timeout=7, validate_certs=False, ca_path="/ca.pem")
    assert client.call_json("POST", "/v1/things?limit=1", {"a": 1}) == {"ok": True}
    call = opener.calls[0]
    assert call["url"] == "http://127.0.0.1:8000/v1/things?limit=1"
    assert call["method"] == "POST"
    assert json.loads(call["data"]) == {"a": 1}
    assert call["headers"] == {"Accept": "application/json", "Content-Type": "application/json",
                               "Authorization": "Bearer " + TOKEN}
    assert call["unredirected_headers"] == ["Authorization"]
    assert call["use_proxy"] is False and call["use_netrc"] is False
    assert call["timeout"] == 7 and call["validate_certs"] is False and call["ca_path"] == "/ca.pem"
    assert call["http_agent"] == "gpuserve.vllm"
    assert client.calls == [("POST", "/v1/things")]
    assert response.closed


def test_request_without_token_or_auth(fake):
    opener = fake(FakeResponse(200, b"{}"))
    ApiClient("http://127.0.0.1:8000", "").call_json("GET", "/x")
    assert opener.calls[0]["headers"] == {"Accept": "application/json"}
    assert opener.calls[0]["data"] is None
    client = ApiClient("http://127.0.0.1:8000", TOKEN)
    assert client._request("GET", "/health", auth=False, timeout=2) == (200, b"{}")
    assert "Authorization" not in opener.calls[1]["headers"]
    assert opener.calls[1]["timeout"] == 2


def test_http_error_is_scrubbed_and_explained(fake):
    fake(http_error(403, {"error": {"message": "no %s" % TOKEN}}))
    client = ThingClient("http://127.0.0.1:8000", TOKEN)
    with pytest.raises(ThingError) as info:
        client.call_json("GET", "/things/secret-id", what="/things/{id}")
    err = info.value
    assert err.status == 403
    assert err.message == "GET /things/{id}: denied (no <redacted>)"
    assert TOKEN not in str(err) and "secret-id" not in str(err)


def test_http_error_message_is_cut_to_max_message(fake):
    fake(http_error(400, {"detail": "d" * 100}))
    with pytest.raises(ThingError) as info:
        ThingClient("http://127.0.0.1:8000").call_json("GET", "/x")
    assert info.value.message == "GET /x: " + "d" * 20


@pytest.mark.parametrize("error, expected", [
    (http_error(502, b""), "GET /x: status 502"),
    (http_error(502, b"", reason=""), "GET /x: no response body"),
    (UnreadableHTTPError("http://x", 500, "Server Error", {}, None), "GET /x: Server Error"),
])
def test_http_error_without_body(fake, error, expected):
    fake(error)
    with pytest.raises(ApiError) as info:
        ApiClient("http://127.0.0.1:8000").call_json("GET", "/x")
    assert info.value.message == expected


def test_added_secrets_are_scrubbed(fake):
    client = ApiClient("http://127.0.0.1:8000", TOKEN)
    client.add_secret("sk-generated")
    client.add_secret("")
    fake(http_error(400, {"error": "echo %s and sk-generated" % TOKEN}))
    with pytest.raises(ApiError) as info:
        client.call_json("POST", "/x", {})
    assert info.value.message == "POST /x: echo <redacted> and <redacted>"


@pytest.mark.parametrize("error, expected", [
    (URLError(ConnectionRefusedError(111, "Connection refused")), "[Errno 111] Connection refused"),
    (socket.timeout("timed out"), "timed out"),
    (ConnectionResetError(), "ConnectionResetError"),
])
def test_transport_errors(fake, error, expected):
    fake(error)
    with pytest.raises(ThingError) as info:
        ThingClient("http://127.0.0.1:8000/").call_json("GET", "/x?q=1", what="/x")
    assert info.value.status is None
    assert info.value.message == "request to http://127.0.0.1:8000/x failed: %s" % expected


def test_answer_that_is_not_json(fake):
    fake(FakeResponse(200, b"<html>%s</html>" % TOKEN.encode()))
    with pytest.raises(ApiError) as info:
        ApiClient("http://127.0.0.1:8000", TOKEN).call_json("GET", "/x")
    assert info.value.status == 200
    assert info.value.message == "GET /x: response is not JSON: <html><redacted></html>"
