# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuserve.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTP plumbing shared by the collection's API clients (vllm_api, litellm_api).

* ``ApiError``: a failed request, with the HTTP status (None when no response came back)
  and a message; each API subclasses it.
* ``ApiClient``: a JSON-over-HTTP client with a bearer token. The token is sent in the
  ``Authorization`` header only and never handed to a redirect target; it and every other
  secret the client is told of are scrubbed from error messages. Requests to loopback
  addresses bypass any ``http_proxy`` set in the environment.
* ``body_message``: the human-readable error of a response body, given a function that
  knows the API's error shape (``openai_message`` reads the OpenAI-compatible one).
* ``read_key_file``: a key from its own file or from a ``NAME=`` line of an environment file.

Only the stdlib and ``ansible.module_utils.urls.open_url`` are used so that the code
runs on any managed node.
"""

from __future__ import annotations

import json
import re
import typing as t

from http.client import HTTPException
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit

from ansible.module_utils.urls import open_url

LOOPBACK_HOSTS = frozenset(('localhost', '127.0.0.1', '::1', 'ip6-localhost'))
REDACTED = '<redacted>'
#: What a request raises when no HTTP response came back (connection refused, TLS failure,
#: timeout, malformed response). HTTPError, a URLError, is caught before these.
TRANSPORT_ERRORS = (URLError, OSError, HTTPException, ValueError)

#: Finds the message in a JSON object error body; None when it is not there.
ErrorPicker = t.Callable[[t.Dict[str, t.Any]], t.Optional[str]]


class ApiError(Exception):
    """An HTTP request failed.

    ``status`` is the HTTP status code, or ``None`` when no HTTP response came back
    (connection refused, TLS failure, timeout, malformed response).
    """

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        if self.status is None:
            return self.message
        return 'HTTP %d: %s' % (self.status, self.message)


def is_loopback(host: str | None) -> bool:
    """True when ``host`` (a URL's hostname) names this machine."""
    if not host:
        return False
    return host.lower() in LOOPBACK_HOSTS or host.startswith('127.')


def root_url(url: str) -> str:
    """``url`` without surrounding blanks, trailing slashes and a trailing ``/v1``."""
    url = url.strip().rstrip('/')
    if url.endswith('/v1'):
        url = url[:-3]
    return url


def scrub(text: str, secrets: t.Iterable[str]) -> str:
    """``text`` with every non-empty secret in ``secrets`` replaced by ``<redacted>``."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def error_member(data: dict[str, t.Any], with_type: bool = False) -> str | None:
    """The message of an OpenAI-style error body, None when ``data`` is not one.

    ``{"error": {"message": ..., "type": ..., "code": ...}}`` (OpenAI, recent vLLM, LiteLLM)
    gives the message, followed by `` (type ...)`` when ``with_type``; ``{"error": "..."}``
    (vLLM's API key middleware) the string.
    """
    err = data.get('error')
    if isinstance(err, dict) and err.get('message'):
        message = str(err['message'])
        if with_type and err.get('type'):
            message += ' (type %s)' % err['type']
        return message
    if isinstance(err, str) and err:
        return err
    return None


def openai_message(data: dict[str, t.Any]) -> str | None:
    """The message of an OpenAI-compatible server's error body, None when there is none.

    The ``error`` member (``error_member``), else a top-level ``message``
    (``{"object": "error", "message": ...}``, older vLLM) or ``detail`` (FastAPI).
    """
    message = error_member(data)
    if message is not None:
        return message
    for key in ('message', 'detail'):
        if data.get(key):
            return str(data[key])
    return None


def body_message(body: bytes, limit: int, pick: ErrorPicker) -> str:
    """The human-readable error in a response body, at most ``limit`` characters.

    A JSON object goes through ``pick``; anything else, and an object ``pick`` finds
    nothing in, gives the body's text.
    """
    text = body.decode('utf-8', errors='replace').strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:limit] or '(empty response body)'
    if isinstance(data, dict):
        message = pick(data)
        if message is not None:
            return message[:limit]
    return text[:limit]


def read_key_file(path: str, variable: str, *, allow_empty: bool, bare_with_equals: bool) -> str:
    """The key in ``path``: the ``variable=`` line of an environment file, else the file's only line.

    Read as systemd's ``EnvironmentFile=`` reads it: blank lines and ``#`` comments are passed
    over, ``export`` is accepted, the last ``variable=`` line wins, inside double quotes a
    backslash before a backslash, double quote, dollar sign or backtick is dropped (the roles'
    templates escape backslashes and double quotes that way), single quotes are literal. With
    ``allow_empty`` an empty value gives ``''`` (for the caller to report), without it empty
    lines are passed over. With ``bare_with_equals`` the only line is taken as the key even
    when it holds ``=``.

    Raises OSError or UnicodeDecodeError when the file cannot be read, ValueError when it
    holds no key.
    """
    assignment = re.compile(r'^\s*(?:export\s+)?%s\s*=\s*(.*?)\s*$' % re.escape(variable))
    with open(path, 'r', encoding='utf-8') as handle:
        content = handle.read()
    lines = [line.strip() for line in content.splitlines()]
    lines = [line for line in lines if line and not line.startswith('#')]
    found = None
    for line in lines:
        match = assignment.match(line)
        if match:
            value = match.group(1)
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = re.sub(r'\\([\\"$`])', r'\1', value[1:-1])
            elif len(value) >= 2 and value[0] == value[-1] == "'":
                value = value[1:-1]
            if value or allow_empty:
                found = value
    if found is not None:
        return found
    if len(lines) == 1 and (bare_with_equals or '=' not in lines[0]):
        return lines[0]
    raise ValueError('it holds neither a %s= line nor a single line with the bare key' % variable)


class ApiClient:
    """JSON client for one HTTP API root, with an optional bearer ``token``.

    ``base_url`` is the API root (``http://127.0.0.1:8000``); a trailing ``/v1`` (OpenAI
    ``base_url`` style) is accepted and stripped. ``timeout`` is the per-request timeout
    in seconds. Subclasses set ``error_class`` (raised for every failure) and may override
    ``error_text`` (the API's error shape) and ``explain_status``.
    """

    error_class: type[ApiError] = ApiError
    #: Longest server message kept in an error.
    max_message = 500

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 30,
        validate_certs: bool = True,
        ca_path: str | None = None,
    ) -> None:
        self.base_url = root_url(base_url)
        self._token = token or None
        self._secrets: list[str] = [token] if token else []
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self._use_proxy = not is_loopback(urlsplit(self.base_url).hostname)
        #: (method, path) of every request sent, in order
        self.calls: list[tuple[str, str]] = []

    # -- messages -----------------------------------------------------------------

    def add_secret(self, secret: str) -> None:
        """Scrub ``secret`` from every message from now on."""
        if secret:
            self._secrets.append(secret)

    def scrub(self, text: str) -> str:
        """``text`` without the token or any secret added."""
        return scrub(text, self._secrets)

    def error_text(self, body: bytes) -> str:
        """The human-readable error in a response body (OpenAI error shape by default)."""
        return body_message(body, self.max_message, openai_message)

    def explain_status(self, status: int, message: str) -> str:
        """The (scrubbed) message of an HTTP error, as it goes into the exception."""
        return message

    # -- requests -----------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        payload: dict[str, t.Any] | None = None,
        auth: bool = True,
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        """Send one request; return (status, body) for 2xx.

        Raises HTTPError for 4xx/5xx, and one of TRANSPORT_ERRORS for transport failures:
        callers translate them (``http_error``, ``transport_error``).
        """
        headers = {'Accept': 'application/json'}
        data = None
        if payload is not None:
            data = json.dumps(payload).encode('utf-8')
            headers['Content-Type'] = 'application/json'
        if auth and self._token:
            headers['Authorization'] = 'Bearer %s' % self._token
        self.calls.append((method, path.split('?', 1)[0]))
        resp = open_url(
            self.base_url + path,
            data=data,
            headers=headers,
            method=method,
            use_proxy=self._use_proxy,
            timeout=self.timeout if timeout is None else timeout,
            validate_certs=self.validate_certs,
            ca_path=self.ca_path,
            use_netrc=False,
            http_agent='gpuserve.vllm',
            # never hand the token to wherever a redirect points
            unredirected_headers=['Authorization'],
        )
        try:
            return resp.getcode(), resp.read()
        finally:
            resp.close()

    def http_error(self, exc: HTTPError, method: str, shown: str) -> ApiError:
        """The error for an HTTP error answer to ``method shown``."""
        try:
            body = exc.read() or b''
        except Exception:  # pylint: disable=broad-except
            body = b''
        message = self.error_text(body) if body else str(exc.reason or 'no response body')
        message = self.explain_status(exc.code, self.scrub(message))
        return self.error_class(exc.code, '%s %s: %s' % (method, shown, message))

    def transport_error(self, exc: BaseException, shown: str) -> ApiError:
        """The error for a request to ``shown`` that got no HTTP answer."""
        reason = getattr(exc, 'reason', None) or exc
        return self.error_class(None, 'request to %s%s failed: %s' % (
            self.base_url, shown, self.scrub(str(reason) or type(exc).__name__)))

    def call_json(self, method: str, path: str, payload: dict[str, t.Any] | None = None,
                  what: str | None = None) -> t.Any:
        """Send one request and return its decoded JSON answer.

        ``what`` is how the path is shown in errors (default: ``path``; set it when the
        path holds a query or a secret). Raises ``error_class`` for any failure.
        """
        shown = what or path
        try:
            status, body = self._request(method, path, payload)
        except HTTPError as exc:
            raise self.http_error(exc, method, shown) from None
        except TRANSPORT_ERRORS as exc:
            raise self.transport_error(exc, shown) from None
        try:
            return json.loads(body.decode('utf-8'))
        except ValueError:
            raise self.error_class(status, '%s %s: response is not JSON: %s' % (
                method, shown, self.scrub(body[:200].decode('utf-8', errors='replace')))) from None
