# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuserve.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small client for vLLM's OpenAI-compatible HTTP server.

The HTTP plumbing (module_utils/api_client.py) uses only the stdlib and
``ansible.module_utils.urls.open_url``, so that the code runs on any managed node. The API
key is sent in the ``Authorization`` header only: it never appears in an exception message
or in a returned value (server messages are scrubbed of it too, in case a proxy echoes the
request back).
"""

from __future__ import annotations

import ssl
import time
import typing as t

from http.client import HTTPException
from urllib.error import HTTPError, URLError

from ansible_collections.gpuserve.vllm.plugins.module_utils.api_client import (
    REDACTED,
    ApiClient,
    ApiError,
    read_key_file,
)


class VllmApiError(ApiError):
    """An HTTP request to vLLM failed.

    ``status`` is the HTTP status code, or ``None`` when no HTTP response came back
    (connection refused, TLS failure, timeout, malformed response).
    """


def read_api_key_file(path: str) -> str:
    """The key in ``path``: the VLLM_API_KEY= line of an env file, else the file's only line.

    An empty VLLM_API_KEY= line gives ``''`` (for the caller to report as an empty key).
    """
    return read_key_file(path, 'VLLM_API_KEY', allow_empty=True, bare_with_equals=True)


class VllmClient(ApiClient):
    """Client for one vLLM server.

    ``base_url`` is the server root (``http://127.0.0.1:8000``); a trailing ``/v1``
    (OpenAI ``base_url`` style) is accepted and stripped. ``timeout`` is the
    per-request timeout in seconds. Requests to loopback addresses bypass any
    ``http_proxy`` set in the environment.
    """

    error_class = VllmApiError

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30,
        validate_certs: bool = True,
        ca_path: str | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout=timeout, validate_certs=validate_certs, ca_path=ca_path)
        #: Why the last health() call returned False (None after a 200).
        self.last_health_error: str | None = None

    def __repr__(self) -> str:
        return 'VllmClient(%r, api_key=%s)' % (self.base_url, REDACTED if self._token else None)

    # -- plumbing ---------------------------------------------------------------

    def explain_status(self, status: int, message: str) -> str:
        if status != 401:
            return message
        if self._token:
            return 'the API key was rejected (%s)' % message
        return 'the server requires an API key and none was given (%s)' % message

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
                self.scrub(str(exc.reason)), self.base_url)) from None
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raise self.transport_error(exc, '/health') from None
        except URLError as exc:
            if isinstance(exc.reason, (ssl.SSLError, ssl.CertificateError)):
                raise self.transport_error(exc, '/health') from None
            self.last_health_error = self.scrub(str(exc.reason))
            return False
        except (OSError, HTTPException) as exc:
            # ConnectionRefusedError, ConnectionResetError and socket.timeout are
            # OSErrors; http.client.RemoteDisconnected is both.
            self.last_health_error = self.scrub(str(exc) or type(exc).__name__)
            return False
        if status == 200:
            self.last_health_error = None
            return True
        self.last_health_error = 'HTTP %d' % status
        return False

    def version(self) -> str | None:
        """The server's vLLM version (``GET /version``), None when unavailable."""
        try:
            data = self.call_json('GET', '/version')
        except VllmApiError:
            return None
        if isinstance(data, dict) and isinstance(data.get('version'), str):
            return data['version']
        return None

    def models(self) -> list[dict[str, t.Any]]:
        """The entries of ``GET /v1/models`` (dicts with ``id``, ``max_model_len``...)."""
        data = self.call_json('GET', '/v1/models')
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
        data = self.call_json('POST', path, payload)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        if not isinstance(data, dict) or not data.get('choices'):
            raise VllmApiError(200, 'POST %s: response holds no choices' % path)
        return elapsed_ms
