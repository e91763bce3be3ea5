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

The HTTP plumbing (module_utils/api_client.py) uses only the stdlib and
``ansible.module_utils.urls.open_url``, so that the code runs on any managed node. The
master key is sent in the ``Authorization`` header only: it never appears in an exception
message or in a returned value (server messages are scrubbed of it too). Generated keys
are returned to the caller only by ``generate`` and ``regenerate`` and are scrubbed from
error messages.
"""

from __future__ import annotations

import json
import typing as t

from urllib.parse import quote, urlencode

from ansible_collections.gpuserve.vllm.plugins.module_utils.api_client import (
    REDACTED,
    ApiClient,
    ApiError,
    body_message,
    error_member,
    read_key_file,
)

_MAX_MESSAGE = 600

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


class LitellmApiError(ApiError):
    """An HTTP request to LiteLLM failed.

    ``status`` is the HTTP status code, or ``None`` when no HTTP response came back
    (connection refused, TLS failure, timeout, malformed response).
    """


def _validation_detail(items: list[t.Any]) -> str:
    parts = []
    for item in items:
        if isinstance(item, dict):
            loc = '.'.join(str(p) for p in item.get('loc') or [] if p != 'body')
            parts.append('%s: %s' % (loc, item.get('msg')) if loc else str(item.get('msg')))
        else:
            parts.append(str(item))
    return '; '.join(parts)


def _pick_message(data: dict[str, t.Any]) -> str | None:
    # {"error": {"message": ..., "type": ..., "param": ..., "code": ...}} (ProxyException)
    message = error_member(data, with_type=True)
    if message is not None:
        return message
    detail = data.get('detail')
    if isinstance(detail, list):
        # FastAPI request validation: {"detail": [{"type", "loc", "msg"}, ...]}
        return _validation_detail(detail)
    if isinstance(detail, dict):
        inner = detail.get('error') or detail.get('message')
        return str(inner or detail)
    if detail:
        return str(detail)
    if data.get('message'):
        return str(data['message'])
    return None


def error_message(body: bytes) -> str:
    """Pull the human-readable error out of a LiteLLM error body."""
    return body_message(body, _MAX_MESSAGE, _pick_message)


def read_master_key_file(path: str) -> str:
    """The key in ``path``: the LITELLM_MASTER_KEY= line of an env file, else the file's only line.

    An empty LITELLM_MASTER_KEY= line is passed over, and a single line holding ``=`` is not a key.
    """
    return read_key_file(path, 'LITELLM_MASTER_KEY', allow_empty=False, bare_with_equals=False)


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


class LitellmClient(ApiClient):
    """Client for the key management endpoints of one LiteLLM proxy.

    ``base_url`` is the proxy root (``http://127.0.0.1:4000``); a trailing ``/v1`` is
    accepted and stripped. Requests to loopback addresses bypass any ``http_proxy`` set
    in the environment. ``calls`` lists the (method, path) of every request sent.
    """

    error_class = LitellmApiError

    def __init__(
        self,
        base_url: str,
        master_key: str,
        timeout: float = 30,
        validate_certs: bool = True,
        ca_path: str | None = None,
    ) -> None:
        super().__init__(base_url, master_key, timeout=timeout, validate_certs=validate_certs, ca_path=ca_path)

    def __repr__(self) -> str:
        return 'LitellmClient(%r, master_key=%s)' % (self.base_url, REDACTED)

    # -- plumbing ---------------------------------------------------------------

    def error_text(self, body: bytes) -> str:
        return error_message(body)

    def _remember_secret(self, data: t.Any) -> None:
        if isinstance(data, dict) and isinstance(data.get('key'), str) and data['key'].startswith('sk-'):
            self.add_secret(data['key'])

    # -- API --------------------------------------------------------------------

    def find_by_alias(self, alias: str) -> dict[str, t.Any] | None:
        """The key row whose key_alias is ``alias`` (``GET /key/list``), None when there is none.

        Raises LitellmApiError when several keys share the alias.
        """
        query = urlencode({'key_alias': alias, 'return_full_object': 'true', 'size': 100, 'page': 1})
        data = self.call_json('GET', '/key/list?' + query, what='/key/list')
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
        data = self.call_json('GET', '/key/info?' + urlencode({'key': token}), what='/key/info')
        if not isinstance(data, dict) or not isinstance(data.get('info'), dict):
            raise LitellmApiError(200, 'GET /key/info: unexpected response (no "info" object)')
        return data['info']

    def generate(self, body: dict[str, t.Any]) -> dict[str, t.Any]:
        """Create a key (``POST /key/generate``); the answer holds the secret ``key``."""
        data = self.call_json('POST', '/key/generate', body)
        if not isinstance(data, dict) or not isinstance(data.get('key'), str):
            raise LitellmApiError(200, 'POST /key/generate: unexpected response (no "key")')
        self._remember_secret(data)
        return data

    def update(self, token: str, body: dict[str, t.Any]) -> dict[str, t.Any]:
        """Change the given fields of the key with hash ``token`` (``POST /key/update``)."""
        payload = dict(body, key=token)
        data = self.call_json('POST', '/key/update', payload)
        return data if isinstance(data, dict) else {}

    def delete(self, token: str) -> dict[str, t.Any]:
        """Delete the key with hash ``token`` (``POST /key/delete``)."""
        data = self.call_json('POST', '/key/delete', {'keys': [token]})
        return data if isinstance(data, dict) else {}

    def regenerate(self, token: str, body: dict[str, t.Any]) -> dict[str, t.Any]:
        """Rotate the key with hash ``token`` (``POST /key/{key}/regenerate``).

        The answer holds the new secret ``key`` and its hash ``token_id``.
        """
        data = self.call_json('POST', '/key/%s/regenerate' % quote(token, safe=''), body,
                              what='/key/{token}/regenerate')
        if not isinstance(data, dict) or not isinstance(data.get('key'), str):
            raise LitellmApiError(200, 'POST /key/{token}/regenerate: unexpected response (no "key")')
        self._remember_secret(data)
        return data
