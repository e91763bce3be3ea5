# Copyright: (c) 2026, gpuserve.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""STAND-IN for LiteLLM's key management endpoints: a contract server, not LiteLLM.

Why a stand-in: LiteLLM's ``/key/*`` endpoints need PostgreSQL plus Prisma engine binaries
that Prisma downloads at run time from a host this test machine cannot reach, so the real
proxy cannot serve them here. ``tests/integration/test_litellm_key_live.py`` runs the same
scenario against a real LiteLLM when one is reachable.

What makes it a contract: every request body is validated with LiteLLM's OWN pydantic request
models, imported from the installed ``litellm`` package (pinned in tests/requirements.txt), the
same classes the real endpoints of ``litellm/proxy/management_endpoints/key_management_endpoints.py``
take:

* ``POST /key/generate``            -> ``GenerateKeyRequest``
* ``POST /key/update``              -> ``UpdateKeyRequest``
* ``POST /key/delete``              -> ``KeyRequest``
* ``POST /key/{key}/regenerate``    -> ``RegenerateKeyRequest`` (body optional)

A body that fails validation gets 422 ``{"detail": [{"type", "loc", "msg"}]}`` as FastAPI
answers it. The stand-in is stricter than LiteLLM in one way: a field unknown to the model
is rejected (type ``extra_forbidden``), where LiteLLM would silently ignore it, so that a
misspelt field in the module cannot pass unnoticed.

Answers are built with LiteLLM's own response models too and follow the shapes of LiteLLM
1.108.7: ``GenerateKeyResponse`` (``key`` = the secret, ``token`` = ``token_id`` = its sha256),
``{"key": <hash>, **row}`` for /key/update, ``{"deleted_keys": [...]}`` for /key/delete,
``{"keys": [UserAPIKeyAuth...], "total_count", "current_page", "total_pages"}`` for
``/key/list?return_full_object=true`` (exact ``key_alias`` match), ``{"key", "info"}`` for
/key/info (row without the token), and errors as ``{"error": {"message", "type", "param", "code"}}``
(LiteLLM's ProxyException, ``code`` a string). A wrong or missing master key gets 401 in that shape.

The key store is in memory. Every request is recorded in ``calls`` as
``(method, path, query, body)``. ``inject(method, path, status, body)`` makes the next
matching request (after authentication) fail with the given answer. ``premium=False`` makes
regeneration fail as it does without a LiteLLM Enterprise license.

Run it alone with ``python tests/integration/litellm_contract.py --port 4000 --master-key sk-...``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import re
import secrets
import threading
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch on import

import pydantic  # noqa: E402
from litellm.proxy._types import (  # noqa: E402  LiteLLM's own request/response models
    CommonProxyErrors,
    GenerateKeyRequest,
    GenerateKeyResponse,
    KeyRequest,
    LiteLLM_ManagementEndpoint_MetadataFields,
    LiteLLM_ManagementEndpoint_MetadataFields_Premium,
    LiteLLM_VerificationToken,
    RegenerateKeyRequest,
    UpdateKeyRequest,
    UserAPIKeyAuth,
)

#: LiteLLM release whose endpoints this stand-in follows (tests/requirements.txt pins it).
CONTRACT_LITELLM_VERSION = "1.108.7"

_ROW_FIELDS = frozenset(LiteLLM_VerificationToken.model_fields)
_METADATA_FIELDS = frozenset(LiteLLM_ManagementEndpoint_MetadataFields) | frozenset(
    LiteLLM_ManagementEndpoint_MetadataFields_Premium)
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
# not stored on the key row by update/regenerate
_NOT_PATCHED = frozenset(("key", "new_key", "new_master_key", "grace_period", "key_type"))


def hash_token(key: str) -> str:
    """LiteLLM's token: sha256 hex of the key (litellm.proxy.utils.hash_token)."""
    return hashlib.sha256(key.encode()).hexdigest()


def _hash_if_needed(key: str) -> str:
    return hash_token(key) if key.startswith("sk-") else key


def _expires(duration):
    if duration is None or duration == "-1":
        return None
    match = _DURATION.match(duration)
    if not match:
        raise ValueError("Invalid duration format: %s. Use '30s', '30m', '30h' or '30d'." % duration)
    delta = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    return (datetime.now(timezone.utc) + delta).isoformat()


class ContractError(Exception):
    """An error answered in LiteLLM's ProxyException shape."""

    def __init__(self, status, message, kind="invalid_request_error", param=None):
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": kind, "param": param, "code": str(status)}}


class ValidationFailed(Exception):
    def __init__(self, errors):
        super().__init__(errors)
        self.body = {"detail": errors}


def validate(model, body):
    """``model.model_validate(body)`` with FastAPI's 422 detail, unknown fields rejected."""
    errors = []
    if not isinstance(body, dict):
        raise ValidationFailed([{"type": "model_attributes_type", "loc": ["body"],
                                 "msg": "Input should be a valid dictionary or object to extract fields from"}])
    for name in sorted(set(body) - set(model.model_fields)):
        errors.append({"type": "extra_forbidden", "loc": ["body", name],
                       "msg": "Extra inputs are not permitted (unknown to LiteLLM's %s)" % model.__name__})
    try:
        data = model.model_validate(body)
    except pydantic.ValidationError as exc:
        errors.extend({"type": e["type"], "loc": ["body", *e["loc"]], "msg": e["msg"]} for e in exc.errors())
        data = None
    if errors:
        raise ValidationFailed(errors)
    return data


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LitellmContractServer

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def _send(self, status, body):
        data = json.dumps(body, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ValidationFailed([{"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error"}]) from None

    def _authenticate(self):
        header = self.headers.get("Authorization")
        if not header:
            raise ContractError(401, "Authentication Error, No api key passed in.", "auth_error")
        if not header.startswith("Bearer "):
            raise ContractError(401, "Authentication Error, Malformed API Key passed in. Ensure Key has "
                                     "`Bearer ` prefix.", "auth_error")
        if not secrets.compare_digest(header[len("Bearer "):], self.server.master_key):
            raise ContractError(401, "Authentication Error, Invalid proxy server token passed. key=%s, not "
                                     "found in db. Create key via `/key/generate` call."
                                % hash_token(header[len("Bearer "):]), "auth_error")

    def _handle(self, method):
        parts = urlsplit(self.path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        body = None
        try:
            body = self._body() if method == "POST" else None
        except ValidationFailed as exc:
            self.server.record(method, path, query, None)
            self._send(422, exc.body)
            return
        self.server.record(method, path, query, body)
        try:
            self._authenticate()
            injected = self.server.take_injected(method, path)
            if injected is not None:
                self._send(*injected)
                return
            status, answer = self.server.store.dispatch(method, path, query, body, self.server.premium)
        except ContractError as exc:
            self._send(exc.status, exc.body)
        except ValidationFailed as exc:
            self._send(422, exc.body)
        except Exception as exc:  # pylint: disable=broad-except  # a stand-in bug: answer as LiteLLM would
            self._send(500, {"error": {"message": "contract server error: %r" % exc, "type": "internal_server_error",
                                       "param": None, "code": "500"}})
        else:
            self._send(status, answer)

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")


class KeyStore:
    """In-memory key table, keyed by token (the sha256 of the key)."""

    def __init__(self):
        self.rows = {}
        self.lock = threading.Lock()

    # -- helpers ------------------------------------------------------------------

    @staticmethod
    def _now():
        return datetime.now(timezone.utc).isoformat()

    @staticmethod
    def _row_json(row):
        """A stored row through LiteLLM's own LiteLLM_VerificationToken model."""
        # a None where LiteLLM's column has a non-None default means "not set" (Prisma fills the default)
        fields = LiteLLM_VerificationToken.model_fields
        row = {k: v for k, v in row.items() if v is not None or k not in fields or fields[k].default is None}
        return LiteLLM_VerificationToken.model_validate(row).model_dump(mode="json")

    def _by_alias(self, alias):
        return [row for row in self.rows.values() if row.get("key_alias") == alias]

    def _find(self, key=None, alias=None):
        if key is not None:
            row = self.rows.get(_hash_if_needed(key))
            if row is None:
                raise ContractError(404, "Key not found.", "not_found_error", "key")
            return row
        if alias is None:
            raise ContractError(400, "either key or key_alias must be provided", "bad_request_error", "key")
        rows = self._by_alias(alias)
        if not rows:
            raise ContractError(404, "Key not found. No key with key_alias='%s'." % alias, "not_found_error",
                                "key_alias")
        if len(rows) > 1:
            raise ContractError(400, "Multiple keys share key_alias='%s', so it cannot be used as an identifier."
                                % alias, "bad_request_error", "key_alias")
        return rows[0]

    @staticmethod
    def _set_soft_budget(row, value):
        if row.get("budget_id") is None and value is None:
            return
        if row.get("budget_id") is None:
            row["budget_id"] = str(uuid.uuid4())
        row["litellm_budget_table"] = {"budget_id": row["budget_id"], "soft_budget": value}

    def _patch(self, row, data):
        """Apply an UpdateKeyRequest / RegenerateKeyRequest as LiteLLM does (merge patch)."""
        patch = data.model_dump(mode="json", exclude_unset=True)
        metadata = dict(row.get("metadata") or {})
        if "metadata" in patch:
            kept = {k: v for k, v in metadata.items() if k == "service_account_id"}
            metadata = dict(patch["metadata"] or {}, **kept)
        for name, value in patch.items():
            if name in _NOT_PATCHED or name == "metadata":
                continue
            if name in _METADATA_FIELDS:
                if value is not None:
                    metadata[name] = value
            elif name == "soft_budget":
                self._set_soft_budget(row, value)
            elif name == "duration":
                row["expires"] = _expires(value)
            elif name in _ROW_FIELDS:
                row[name] = value
        row["metadata"] = metadata
        row["updated_at"] = self._now()

    # -- endpoints ----------------------------------------------------------------

    def dispatch(self, method, path, query, body, premium):
        with self.lock:
            if method == "POST" and path == "/key/generate":
                return self.generate(validate(GenerateKeyRequest, body if body is not None else {}))
            if method == "POST" and path == "/key/update":
                return self.update(validate(UpdateKeyRequest, body))
            if method == "POST" and path == "/key/delete":
                return self.delete(validate(KeyRequest, body))
            if method == "POST" and path.startswith("/key/") and path.endswith("/regenerate"):
                key = unquote(path[len("/key/"):-len("/regenerate")]) or None
                if key == "":
                    key = None
                data = validate(RegenerateKeyRequest, body) if body is not None else None
                return self.regenerate(key, data, premium)
            if method == "POST" and path == "/key/regenerate":
                data = validate(RegenerateKeyRequest, body) if body is not None else None
                return self.regenerate(None, data, premium)
            if method == "GET" and path == "/key/list":
                return self.list(query)
            if method == "GET" and path == "/key/info":
                return self.info(query)
        return 404, {"detail": "Not Found"}

    def generate(self, data):
        if data.key_alias is not None and self._by_alias(data.key_alias):
            raise ContractError(400, "Key with alias '%s' already exists. Unique key aliases across all keys are "
                                     "required." % data.key_alias, "bad_request_error", "key_alias")
        secret = data.key or "sk-" + secrets.token_urlsafe(16)
        token = hash_token(secret)
        dumped = data.model_dump(mode="json")
        row = {name: dumped[name] for name in _ROW_FIELDS if name in dumped}
        metadata = dict(dumped.get("metadata") or {})
        for name in data.model_fields_set & _METADATA_FIELDS:
            if dumped.get(name) is not None:
                metadata[name] = dumped[name]
        now = self._now()
        row.update(token=token, key_name="sk-...%s" % secret[-4:], metadata=metadata, spend=0.0,
                   expires=_expires(data.duration), created_at=now, updated_at=now,
                   created_by="default_user_id", updated_by="default_user_id", budget_id=None,
                   litellm_budget_table=None)
        self._set_soft_budget(row, data.soft_budget)
        self.rows[token] = row
        response = GenerateKeyResponse.model_validate(dict(self._row_json(row), key=secret, token_id=token,
                                                           token=None))
        response.token = response.token_id  # as _common_key_generation_helper does
        return 200, response.model_dump(mode="json")

    def update(self, data):
        row = self._find(data.key, data.key_alias if data.key is None else None)
        if data.key_alias is not None and data.key_alias != row.get("key_alias") and self._by_alias(data.key_alias):
            raise ContractError(400, "Key with alias '%s' already exists. Unique key aliases across all keys are "
                                     "required." % data.key_alias, "bad_request_error", "key_alias")
        self._patch(row, data)
        dumped = self._row_json(row)
        return 200, dict(dumped, key=row["token"])

    def delete(self, data):
        if data.keys:
            tokens = [_hash_if_needed(k) for k in data.keys]
            deleted = data.keys
        else:
            tokens = [row["token"] for alias in data.key_aliases for row in self._by_alias(alias)]
            deleted = data.key_aliases
        missing = [t for t in tokens if t not in self.rows]
        if missing or not tokens:
            raise ContractError(400, "Failed to delete all keys. Keys passed in=%d, Deleted keys=%d"
                                % (len(deleted), len(tokens) - len(missing)), "bad_request_error", "keys")
        for token in tokens:
            del self.rows[token]
        return 200, {"deleted_keys": deleted}

    def regenerate(self, key, data, premium):
        if not premium:
            raise ContractError(500, "Regenerating Virtual Keys is an Enterprise feature, %s"
                                % CommonProxyErrors.not_premium_user.value, "internal_server_error")
        key = data.key if data is not None and data.key else key
        if not key:
            raise ContractError(400, str({"error": "No key passed in."}))
        hashed = key if "sk" not in key else hash_token(key)
        row = self.rows.get(hashed)
        if row is None:
            raise ContractError(404, str({"error": "Key %s not found." % key}), "not_found_error")
        secret = (data.new_key if data is not None and data.new_key else None) or "sk-" + secrets.token_urlsafe(16)
        new_token = hash_token(secret)
        if data is not None:
            self._patch(row, data)
        del self.rows[hashed]
        row.update(token=new_token, key_name="sk-...%s" % secret[-4:])
        self.rows[new_token] = row
        answer = self._row_json(row)
        answer["key"] = secret
        answer["token_id"] = answer.pop("token")
        return 200, GenerateKeyResponse.model_validate(answer).model_dump(mode="json")

    def list(self, query):
        page = int(query.get("page", 1))
        size = int(query.get("size", 10))
        if page < 1 or not 1 <= size <= 100:
            raise ValidationFailed([{"type": "less_than_equal", "loc": ["query", "size"],
                                     "msg": "Input should be less than or equal to 100"}])
        rows = sorted(self.rows.values(), key=lambda r: r["created_at"], reverse=True)
        if query.get("key_alias") is not None:
            rows = [r for r in rows if r.get("key_alias") == query["key_alias"]]
        total = len(rows)
        rows = rows[(page - 1) * size:page * size]
        if query.get("return_full_object", "false").lower() == "true":
            keys = [UserAPIKeyAuth(**self._row_json(r)).model_dump(mode="json", exclude={"parent_otel_span"})
                    for r in rows]
        else:
            keys = [r["token"] for r in rows]
        return 200, {"keys": keys, "total_count": total, "current_page": page, "total_pages": -(-total // size)}

    def info(self, query):
        key = query.get("key")
        if not key:
            raise ContractError(400, "No key passed in. Pass ?key= or authenticate with a virtual key.",
                                "bad_request_error", "key")
        row = self.rows.get(_hash_if_needed(key))
        if row is None:
            raise ContractError(404, "Key not found in database", "not_found_error", "key")
        info = self._row_json(row)
        info.pop("token")
        info["status"] = "revoked" if info.get("blocked") else "active"
        return 200, {"key": key, "info": info}


class LitellmContractServer(ThreadingHTTPServer):
    """The stand-in server; see the module docstring. ``url`` once started."""

    daemon_threads = True

    def __init__(self, master_key, premium=True, host="127.0.0.1", port=0):
        super().__init__((host, port), _Handler)
        self.master_key = master_key
        self.premium = premium
        self.store = KeyStore()
        self.calls = []
        self._injected = []
        self._lock = threading.Lock()
        self._thread = None

    @property
    def url(self):
        return "http://%s:%d" % self.server_address[:2]

    def record(self, method, path, query, body):
        with self._lock:
            self.calls.append((method, path, query, copy.deepcopy(body)))

    def writes(self):
        """The recorded calls to endpoints that write (every POST)."""
        return [c for c in self.calls if c[0] == "POST"]

    def inject(self, method, path, status, body):
        with self._lock:
            self._injected.append((method, path, status, body))

    def take_injected(self, method, path):
        with self._lock:
            for index, (m, p, status, body) in enumerate(self._injected):
                if m == method and (p == path or (p.endswith("*") and path.startswith(p[:-1]))):
                    del self._injected[index]
                    return status, body
        return None

    def start(self):
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(5)


def main():
    parser = argparse.ArgumentParser(description="Stand-in for LiteLLM's /key/* endpoints (contract server).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4000)
    parser.add_argument("--master-key", default=os.environ.get("LITELLM_MASTER_KEY", "sk-contract-master"))
    parser.add_argument("--no-premium", action="store_true", help="answer /key/{key}/regenerate as without a license")
    args = parser.parse_args()
    server = LitellmContractServer(args.master_key, premium=not args.no_premium, host=args.host, port=args.port)
    print("LiteLLM %s key endpoints stand-in at %s" % (CONTRACT_LITELLM_VERSION, server.url), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
