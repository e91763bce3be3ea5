# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuserve.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Client for the virtual key endpoints (``/key/*``) of the LiteLLM proxy, and the pure logic
of the litellm_key module (which fields differ, what to send).

Follows the key endpoints of LiteLLM 1.108.7
(``litellm/proxy/management_endpoints/key_management_endpoints.py``):

* ``POST /key/generate`` (body ``GenerateKeyRequest``) answers a ``GenerateKeyResponse``:
  ``key`` is the secret, ``token`` / ``token_id`` its sha256 hash.
* ``POST /key/update`` (body ``UpdateKeyRequest``, a merge patch; ``key`` may be the hash)
  answers ``{"key": <hash>, **row}``.
* ``POST /key/delete`` (body ``KeyRequest``: ``keys`` or ``key_aliases``) answers
  ``{"deleted_keys": [...]}``.
* ``POST /key/{key}/regenerate`` (body ``RegenerateKeyRequest``, an Enterprise feature)
  answers a ``GenerateKeyResponse`` with the new ``key`` and ``token_id``.
* ``GET /key/list?key_alias=...&return_full_object=true`` answers
  ``{"keys": [row...], "total_count", "current_page", "total_pages"}`` (exact alias match).
* ``GET /key/info?key=<hash>`` answers ``{"key": <hash>, "info": row without token}``.

Errors come back as ``{"error": {"message", "type", "param", "code"}}`` (LiteLLM's
ProxyException) or ``{"detail": ...}`` (FastAPI, 422 validation errors).

Only the stdlib and ``ansible.module_utils.urls.open_url`` are used so that the code
runs on any managed node. The master key is sent in the ``Authorization`` header only:
it never appears in an exception message or in a returned value (server messages are
scrubbed of it too). Generated keys are returned to the caller only by ``generate`` and
``regenerate`` and are scrubbed from error messages.
"""

from __future__ import annotations

import json
import re
import typing as t

from http.client import HTTPException
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode, urlsplit

from ansible.module_utils.urls import open_url

_LOOPBACK_HOSTS = frozenset(('localhost', '127.0.0.1', '::1', 'ip6-localhost'))
_MAX_MESSAGE = 600
_REDACTED = '<redacted>'
_ENV_KEY_LINE = re.compile(r'^\s*(?:export\s+)?LITELLM_MASTER_KEY\s*=\s*(.*?)\s*$')

#: Key options the module manages, with their kind (how values are compared).
MANAGED_FIELDS: dict[str, str] = {
    'models': 'list',
    'max_budget': 'float',
    'budget_duration': 'str',
    'soft_budget': 'float',
    'rpm_limit': 'int',
    'tpm_limit': 'int',
    'max_parallel_requests': 'int',
    'metadata': 'dict',
    'team_id': 'str',
    'user_id': 'str',
}

#: Keys that LiteLLM itself keeps in a key's ``metadata`` (LiteLLM_ManagementEndpoint_MetadataFields,
#: ..._Premium and LiteLLM_Reserved_Metadata_Fields of litellm.proxy._types, 1.108.7). They are not
#: compared unless the user sets them, and are sent back on update because ``metadata`` replaces the
#: stored metadata wholesale.
LITELLM_METADATA_KEYS = frozenset((
    'model_rpm_limit', 'model_tpm_limit', 'model_itpm_limit', 'model_otpm_limit',
    'default_estimated_output_tokens', 'default_estimated_output_tokens_per_model',
    'mcp_rpm_limit', 'tag_rpm_limit', 'rpm_limit_type', 'tpm_limit_type', 'enforced_params',
    'temp_budget_increase', 'temp_budget_expiry', 'allowed_vector_store_indexes',
    'enforced_batch_output_expires_after', 'enforced_file_expires_after',
    'throttle_on_budget_exceeded', 'enable_prompt_caching', 'end_user_budget_id', 'require_trace_id',
    'disable_global_guardrails', 'guardrails', 'policies', 'tags', 'team_member_key_duration',
    'prompts', 'logging', 'secret_manager_settings', 'allowed_passthrough_routes',
    'denied_passthrough_routes', 'service_account_id',
))
#: Metadata keys that may hold credentials: never returned in key_info.
_SECRET_METADATA_KEYS = frozenset(('logging', 'secret_manager_settings'))

#: Non-secret fields of a key row returned as key_info.
KEY_INFO_FIELDS = (
    'token', 'key_alias', 'key_name', 'models', 'max_budget', 'budget_duration', 'budget_reset_at',
    'soft_budget', 'rpm_limit', 'tpm_limit', 'max_parallel_requests', 'metadata', 'team_id', 'user_id',
    'organization_id', 'spend', 'expires', 'blocked', 'status', 'created_at', 'updated_at',
)


class LitellmApiError(Exception):
    """An HTTP request to LiteLLM failed.

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


def _validation_detail(items: list[t.Any]) -> str:
    parts = []
    for item in items:
        if isinstance(item, dict):
            loc = '.'.join(str(p) for p in item.get('loc') or [] if p != 'body')
            parts.append('%s: %s' % (loc, item.get('msg')) if loc else str(item.get('msg')))
        else:
            parts.append(str(item))
    return '; '.join(parts)


def error_message(body: bytes) -> str:
    """Pull the human-readable error out of a LiteLLM error body."""
    text = body.decode('utf-8', errors='replace').strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:_MAX_MESSAGE] or '(empty response body)'
    if isinstance(data, dict):
        err = data.get('error')
        if isinstance(err, dict) and err.get('message'):
            # {"error": {"message": ..., "type": ..., "param": ..., "code": ...}} (ProxyException)
            message = str(err['message'])
            if err.get('type'):
                message += ' (type %s)' % err['type']
            return message[:_MAX_MESSAGE]
        if isinstance(err, str) and err:
            return err[:_MAX_MESSAGE]
        detail = data.get('detail')
        if isinstance(detail, list):
            # FastAPI request validation: {"detail": [{"type", "loc", "msg"}, ...]}
            return _validation_detail(detail)[:_MAX_MESSAGE]
        if isinstance(detail, dict):
            inner = detail.get('error') or detail.get('message')
            return str(inner or detail)[:_MAX_MESSAGE]
        if detail:
            return str(detail)[:_MAX_MESSAGE]
        if data.get('message'):
            return str(data['message'])[:_MAX_MESSAGE]
    return text[:_MAX_MESSAGE]


def read_master_key_file(path: str) -> str:
    """The key in ``path``: the LITELLM_MASTER_KEY= line of an env file, else the file's only line."""
    with open(path, 'r', encoding='utf-8') as handle:
        content = handle.read()
    lines = [line.strip() for line in content.splitlines()]
    lines = [line for line in lines if line and not line.startswith('#')]
    for line in lines:
        match = _ENV_KEY_LINE.match(line)
        if match:
            value = match.group(1)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in ('"', "'"):
                value = value[1:-1]
            if value:
                return value
    if len(lines) == 1 and '=' not in lines[0]:
        return lines[0]
    raise ValueError('it holds neither a LITELLM_MASTER_KEY= line nor a single line with the bare key')


# -- pure logic of the module ----------------------------------------------------------


def _as_dict(value: t.Any) -> dict[str, t.Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return dict(value) if isinstance(value, dict) else {}


def current_value(row: dict[str, t.Any], field: str) -> t.Any:
    """The value of a managed field in a key row from /key/list or /key/info."""
    if field == 'soft_budget':
        # stored in the key's budget row (litellm_budget_table), not on the key itself
        if row.get('soft_budget') is not None:
            return row['soft_budget']
        budget = row.get('litellm_budget_table')
        return budget.get('soft_budget') if isinstance(budget, dict) else None
    if field == 'metadata':
        return _as_dict(row.get('metadata'))
    if field == 'models':
        return list(row.get('models') or [])
    return row.get(field)


def _comparable(kind: str, value: t.Any) -> t.Any:
    if value is None:
        return None
    if kind == 'float':
        try:
            return float(value)
        except (TypeError, ValueError):
            return value
    if kind == 'int':
        try:
            return int(value)
        except (TypeError, ValueError):
            return value
    if kind == 'list':
        return sorted(str(v) for v in value)
    return value


def _user_metadata(current: dict[str, t.Any], desired: dict[str, t.Any]) -> dict[str, t.Any]:
    """``current`` without the keys LiteLLM keeps in metadata that the user does not set."""
    return {k: v for k, v in current.items() if k not in LITELLM_METADATA_KEYS or k in desired}


def compute_changes(
    row: dict[str, t.Any] | None, desired: dict[str, t.Any],
) -> tuple[dict[str, t.Any], dict[str, t.Any], dict[str, t.Any]]:
    """Compare the fields the user set (``desired``, None = unmanaged) with a key row.

    Returns ``(changes, before, after)``: ``changes`` holds the values to send for the
    fields that differ (all set fields when ``row`` is None), ``before`` / ``after`` the
    managed fields before and after (for the diff).
    """
    changes: dict[str, t.Any] = {}
    before: dict[str, t.Any] = {}
    after: dict[str, t.Any] = {}
    for field, kind in MANAGED_FIELDS.items():
        want = desired.get(field)
        if want is None:
            continue
        after[field] = want
        if row is None:
            changes[field] = want
            continue
        have = current_value(row, field)
        if field == 'metadata':
            have = _user_metadata(have, want)
        before[field] = have
        if _comparable(kind, have) != _comparable(kind, want):
            changes[field] = want
    return changes, before, after


def update_body(row: dict[str, t.Any], changes: dict[str, t.Any]) -> dict[str, t.Any]:
    """The fields to send for ``changes``: metadata keeps the keys LiteLLM stores in it."""
    body = dict(changes)
    if 'metadata' in body:
        kept = {k: v for k, v in current_value(row, 'metadata').items()
                if k in LITELLM_METADATA_KEYS and k not in body['metadata']}
        body['metadata'] = dict(kept, **body['metadata'])
    return body


def key_info(row: dict[str, t.Any]) -> dict[str, t.Any]:
    """The non-secret fields of a key row."""
    info: dict[str, t.Any] = {}
    for field in KEY_INFO_FIELDS:
        if field == 'soft_budget':
            info[field] = current_value(row, field)
        elif field == 'metadata':
            info[field] = {k: v for k, v in current_value(row, field).items() if k not in _SECRET_METADATA_KEYS}
        elif field in row:
            info[field] = row[field]
    return info


class LitellmClient:
    """Client for the key management endpoints of one LiteLLM proxy.

    ``base_url`` is the proxy root (``http://127.0.0.1:4000``); a trailing ``/v1`` is
    accepted and stripped. Requests to loopback addresses bypass any ``http_proxy`` set
    in the environment.
    """

    def __init__(
        self,
        base_url: str,
        master_key: str,
        timeout: float = 30,
        validate_certs: bool = True,
        ca_path: str | None = None,
    ) -> None:
        url = base_url.strip().rstrip('/')
        if url.endswith('/v1'):
            url = url[:-3]
        self.base_url = url
        self._master_key = master_key
        self._secrets: list[str] = [master_key] if master_key else []
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self._use_proxy = not _is_loopback(urlsplit(url).hostname)
        #: (method, path) of every request sent, in order
        self.calls: list[tuple[str, str]] = []

    def __repr__(self) -> str:
        return 'LitellmClient(%r, master_key=%s)' % (self.base_url, _REDACTED)

    # -- plumbing ---------------------------------------------------------------

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret and secret in text:
                text = text.replace(secret, _REDACTED)
        return text

    def _request(self, method: str, path: str, payload: dict[str, t.Any] | None) -> tuple[int, bytes]:
        headers = {'Accept': 'application/json', 'Authorization': 'Bearer %s' % self._master_key}
        data = None
        if payload is not None:
            data = json.dumps(payload).encode('utf-8')
            headers['Content-Type'] = 'application/json'
        self.calls.append((method, path.split('?', 1)[0]))
        resp = open_url(
            self.base_url + path,
            data=data,
            headers=headers,
            method=method,
            use_proxy=self._use_proxy,
            timeout=self.timeout,
            validate_certs=self.validate_certs,
            ca_path=self.ca_path,
            use_netrc=False,
            http_agent='gpuserve.vllm',
            # never hand the master key to wherever a redirect points
            unredirected_headers=['Authorization'],
        )
        try:
            return resp.getcode(), resp.read()
        finally:
            resp.close()

    def _call(self, method: str, path: str, payload: dict[str, t.Any] | None = None, what: str | None = None) -> t.Any:
        shown = what or path
        try:
            status, body = self._request(method, path, payload)
        except HTTPError as exc:
            try:
                raw = exc.read() or b''
            except Exception:  # pylint: disable=broad-except
                raw = b''
            message = error_message(raw) if raw else str(exc.reason or 'no response body')
            raise LitellmApiError(exc.code, '%s %s: %s' % (method, shown, self.scrub(message))) from None
        except (URLError, OSError, HTTPException, ValueError) as exc:
            reason = getattr(exc, 'reason', None) or exc
            raise LitellmApiError(None, 'request to %s%s failed: %s' % (
                self.base_url, shown, self.scrub(str(reason) or type(exc).__name__))) from None
        try:
            return json.loads(body.decode('utf-8'))
        except ValueError:
            raise LitellmApiError(status, '%s %s: response is not JSON: %s' % (
                method, shown, self.scrub(body[:200].decode('utf-8', errors='replace')))) from None

    def _remember_secret(self, data: t.Any) -> None:
        if isinstance(data, dict) and isinstance(data.get('key'), str) and data['key'].startswith('sk-'):
            self._secrets.append(data['key'])

    # -- API --------------------------------------------------------------------

    def find_by_alias(self, alias: str) -> dict[str, t.Any] | None:
        """The key row whose key_alias is ``alias`` (``GET /key/list``), None when there is none.

        Raises LitellmApiError when several keys share the alias.
        """
        query = urlencode({'key_alias': alias, 'return_full_object': 'true', 'size': 100, 'page': 1})
        data = self._call('GET', '/key/list?' + query, what='/key/list')
        if not isinstance(data, dict) or not isinstance(data.get('keys'), list):
            raise LitellmApiError(200, 'GET /key/list: unexpected response (no "keys" list)')
        # exact match by default; filter again in case an older proxy matched substrings
        rows = [row for row in data['keys'] if isinstance(row, dict) and row.get('key_alias') == alias]
        if not rows and any(isinstance(row, str) for row in data['keys']):
            raise LitellmApiError(200, 'GET /key/list: the proxy ignored return_full_object=true '
                                       '(LiteLLM too old for this module)')
        if len(rows) > 1:
            raise LitellmApiError(200, '%d keys share key_alias=%r: delete the extra ones (they cannot be '
                                       'told apart by alias)' % (len(rows), alias))
        return rows[0] if rows else None

    def info(self, token: str) -> dict[str, t.Any]:
        """The row of the key with hash ``token`` (``GET /key/info``), without the token."""
        data = self._call('GET', '/key/info?' + urlencode({'key': token}), what='/key/info')
        if not isinstance(data, dict) or not isinstance(data.get('info'), dict):
            raise LitellmApiError(200, 'GET /key/info: unexpected response (no "info" object)')
        return data['info']

    def generate(self, body: dict[str, t.Any]) -> dict[str, t.Any]:
        """Create a key (``POST /key/generate``); the answer holds the secret ``key``."""
        data = self._call('POST', '/key/generate', body)
        if not isinstance(data, dict) or not isinstance(data.get('key'), str):
            raise LitellmApiError(200, 'POST /key/generate: unexpected response (no "key")')
        self._remember_secret(data)
        return data

    def update(self, token: str, body: dict[str, t.Any]) -> dict[str, t.Any]:
        """Change the given fields of the key with hash ``token`` (``POST /key/update``)."""
        payload = dict(body, key=token)
        data = self._call('POST', '/key/update', payload)
        return data if isinstance(data, dict) else {}

    def delete(self, token: str) -> dict[str, t.Any]:
        """Delete the key with hash ``token`` (``POST /key/delete``)."""
        data = self._call('POST', '/key/delete', {'keys': [token]})
        return data if isinstance(data, dict) else {}

    def regenerate(self, token: str, body: dict[str, t.Any]) -> dict[str, t.Any]:
        """Rotate the key with hash ``token`` (``POST /key/{key}/regenerate``).

        The answer holds the new secret ``key`` and its hash ``token_id``.
        """
        data = self._call('POST', '/key/%s/regenerate' % quote(token, safe=''), body,
                          what='/key/{token}/regenerate')
        if not isinstance(data, dict) or not isinstance(data.get('key'), str):
            raise LitellmApiError(200, 'POST /key/{token}/regenerate: unexpected response (no "key")')
        self._remember_secret(data)
        return data
