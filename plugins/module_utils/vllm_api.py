# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuserve.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small client for vLLM's OpenAI-compatible HTTP server.

Only the stdlib and ``ansible.module_utils.urls.open_url`` are used so that the code
runs on any managed node. The API key is sent in the ``Authorization`` header only:
it never appears in an exception message or in a returned value (server messages are
scrubbed of it too, in case a proxy echoes the request back).
"""

from __future__ import annotations

import json
import ssl
import time
import typing as t

from http.client import HTTPException
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit

from ansible.module_utils.urls import open_url

_LOOPBACK_HOSTS = frozenset(('localhost', '127.0.0.1', '::1', 'ip6-localhost'))
_MAX_MESSAGE = 500
_REDACTED = '<redacted>'


class VllmApiError(Exception):
    """An HTTP request to vLLM failed.

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


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    return host.lower() in _LOOPBACK_HOSTS or host.startswith('127.')


def _error_message(body: bytes) -> str:
    """Pull the human-readable error out of a vLLM / OpenAI error body."""
    text = body.decode('utf-8', errors='replace').strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:_MAX_MESSAGE] or '(empty response body)'
    if isinstance(data, dict):
        err = data.get('error')
        if isinstance(err, dict) and err.get('message'):
            # {"error": {"message": ..., "type": ..., "code": ...}} (recent vLLM)
            return str(err['message'])[:_MAX_MESSAGE]
        if isinstance(err, str) and err:
            # {"error": "Unauthorized"} (vLLM's API key middleware)
            return err[:_MAX_MESSAGE]
        for key in ('message', 'detail'):
            # {"object": "error", "message": ...} (older vLLM), {"detail": ...} (FastAPI)
            if data.get(key):
                return str(data[key])[:_MAX_MESSAGE]
    return text[:_MAX_MESSAGE]


class VllmClient:
    """Client for one vLLM server.

    ``base_url`` is the server root (``http://127.0.0.1:8000``); a trailing ``/v1``
    (OpenAI ``base_url`` style) is accepted and stripped. ``timeout`` is the
    per-request timeout in seconds. Requests to loopback addresses bypass any
    ``http_proxy`` set in the environment.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30,
        validate_certs: bool = True,
        ca_path: str | None = None,
    ) -> None:
        url = base_url.strip().rstrip('/')
        if url.endswith('/v1'):
            url = url[:-3]
        self.base_url = url
        self._api_key = api_key or None
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self._use_proxy = not _is_loopback(urlsplit(url).hostname)
        #: Why the last health() call returned False (None after a 200).
        self.last_health_error: str | None = None

    def __repr__(self) -> str:
        return 'VllmClient(%r, api_key=%s)' % (self.base_url, _REDACTED if self._api_key else None)

    # -- plumbing ---------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        if self._api_key and self._api_key in text:
            text = text.replace(self._api_key, _REDACTED)
        return text

    def _request(
        self,
        method: str,
        path: str,
        payload: dict[str, t.Any] | None = None,
        auth: bool = True,
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        """Send one request; return (status, body) for 2xx.

        Raises HTTPError for 4xx/5xx, and URLError / OSError / HTTPException for
        transport failures: callers translate them.
        """
        headers = {'Accept': 'application/json'}
        data = None
        if payload is not None:
            data = json.dumps(payload).encode('utf-8')
            headers['Content-Type'] = 'application/json'
        if auth and self._api_key:
            headers['Authorization'] = 'Bearer %s' % self._api_key
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
            # never hand the key to wherever a redirect points
            unredirected_headers=['Authorization'],
        )
        try:
            return resp.getcode(), resp.read()
        finally:
            resp.close()

    def _http_error(self, exc: HTTPError, method: str, path: str) -> VllmApiError:
        try:
            body = exc.read() or b''
        except Exception:  # pylint: disable=broad-except
            body = b''
        message = _error_message(body) if body else (exc.reason or 'no response body')
        message = self._scrub(str(message))
        if exc.code == 401:
            if self._api_key:
                message = 'the API key was rejected (%s)' % message
            else:
                message = 'the server requires an API key and none was given (%s)' % message
        return VllmApiError(exc.code, '%s %s: %s' % (method, path, message))

    def _transport_error(self, exc: BaseException, path: str) -> VllmApiError:
        reason = getattr(exc, 'reason', None) or exc
        return VllmApiError(None, 'request to %s%s failed: %s' % (self.base_url, path, self._scrub(str(reason))))

    def _call_json(self, method: str, path: str, payload: dict[str, t.Any] | None = None) -> t.Any:
        try:
            status, body = self._request(method, path, payload)
        except HTTPError as exc:
            raise self._http_error(exc, method, path) from None
        except (URLError, OSError, HTTPException, ValueError) as exc:
            raise self._transport_error(exc, path) from None
        try:
            return json.loads(body.decode('utf-8'))
        except ValueError:
            raise VllmApiError(status, '%s %s: response is not JSON: %s' % (
                method, path, self._scrub(body[:200].decode('utf-8', errors='replace')))) from None

    # -- API --------------------------------------------------------------------

    def health(self, timeout: float | None = None) -> bool:
        """True when ``GET /health`` answers 200.

        False while the engine is not up: connection refused or reset, timeout, 5xx
        (the reason is kept in ``last_health_error``). Any other HTTP status, and TLS
        failures, raise VllmApiError: waiting longer would not fix them.
        """
        try:
            status, dummy = self._request('GET', '/health', auth=False, timeout=timeout)
        except HTTPError as exc:
            if exc.code >= 500:
                self.last_health_error = 'HTTP %d' % exc.code
                return False
            raise VllmApiError(exc.code, 'GET /health: %s (is %s a vLLM server?)' % (
                self._scrub(str(exc.reason)), self.base_url)) from None
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raise self._transport_error(exc, '/health') from None
        except URLError as exc:
            if isinstance(exc.reason, (ssl.SSLError, ssl.CertificateError)):
                raise self._transport_error(exc, '/health') from None
            self.last_health_error = self._scrub(str(exc.reason))
            return False
        except (OSError, HTTPException) as exc:
            # ConnectionRefusedError, ConnectionResetError and socket.timeout are
            # OSErrors; http.client.RemoteDisconnected is both.
            self.last_health_error = self._scrub(str(exc) or type(exc).__name__)
            return False
        if status == 200:
            self.last_health_error = None
            return True
        self.last_health_error = 'HTTP %d' % status
        return False

    def version(self) -> str | None:
        """The server's vLLM version (``GET /version``), None when unavailable."""
        try:
            data = self._call_json('GET', '/version')
        except VllmApiError:
            return None
        if isinstance(data, dict) and isinstance(data.get('version'), str):
            return data['version']
        return None

    def models(self) -> list[dict[str, t.Any]]:
        """The entries of ``GET /v1/models`` (dicts with ``id``, ``max_model_len``...)."""
        data = self._call_json('GET', '/v1/models')
        if not isinstance(data, dict) or not isinstance(data.get('data'), list):
            raise VllmApiError(200, 'GET /v1/models: unexpected response (no "data" list)')
        return [m for m in data['data'] if isinstance(m, dict)]

    def warmup(self, model: str, kind: str = 'completion', prompt: str = 'Hello', max_tokens: int = 8) -> float:
        """Send one generation request; return its latency in milliseconds.

        ``kind`` is ``chat`` (``/v1/chat/completions``) or ``completion``
        (``/v1/completions``). Raises VllmApiError when the request fails or the
        answer holds no choices.
        """
        payload: dict[str, t.Any]
        if kind == 'chat':
            path = '/v1/chat/completions'
            payload = {'model': model, 'messages': [{'role': 'user', 'content': prompt}], 'max_tokens': max_tokens}
        elif kind == 'completion':
            path = '/v1/completions'
            payload = {'model': model, 'prompt': prompt, 'max_tokens': max_tokens}
        else:
            raise ValueError('kind must be "chat" or "completion", not %r' % (kind,))
        payload['temperature'] = 0
        started = time.perf_counter()
        data = self._call_json('POST', path, payload)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        if not isinstance(data, dict) or not data.get('choices'):
            raise VllmApiError(200, 'POST %s: response holds no choices' % path)
        return elapsed_ms
