# Copyright: (c) 2026, gpuserve.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""gpuserve-keyd: the key service of the gateway's "edge" data path.

In the edge data path (litellm_gateway_data_path: edge) the token stream goes from vLLM
through nginx to the client and never through Python. This service keeps what the gateway
is for, per-key control, out of that stream:

* ``/auth``: nginx asks it about every API request (``auth_request``, no body). The verdict
  comes from the in-memory key table, so a deleted, blocked or expired key is refused from
  the next request on, and a key over its budget from the first request after the usage
  that crossed it has been read (within ``usage_poll_interval`` of the response's end).
  Answers: 204 with ``X-Gpuserve-Key`` (the key's hash, for nginx's usage log), or 401/403
  with ``X-Gpuserve-Reason`` (invalid, expired, blocked, budget, rate_limit) that nginx
  turns into OpenAI-style JSON errors (401, 403, 429).
* Accounting: nginx reads the ``usage`` object vLLM puts at the end of every response
  (``--enable-force-include-usage``) with a small njs body filter and writes one JSON line
  per request to a usage log. This service follows that file (surviving rotation and its own
  restarts: the read offset is stored with the spend in one SQLite transaction), adds the
  tokens to the key and its spend (tokens x the configured per-model prices).
* Key management: the ``/key/*`` endpoints of LiteLLM's proxy that the litellm_key module
  uses (generate, update, delete, block, unblock, list, info, regenerate), same request and
  response shapes (LiteLLM 1.108), master key in ``Authorization: Bearer``.
* ``/metrics/``: Prometheus text format (master key required), ``/health/readiness``,
  ``/health/liveliness``.

Keys are stored as their sha256 (as LiteLLM does): the secret is returned once, by
generate / regenerate. The master key comes from the environment (LITELLM_MASTER_KEY, from
the role's 0600 environment file), never from the command line.

Only the Python standard library is used. Run: ``python3 gpuserve_keyd.py --config config.json``;
``--check-config`` validates a configuration file and exits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import sqlite3
import sys
import threading
import time
import typing as t

from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

VERSION = "1.0.0"
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

#: Request fields accepted by /key/generate, /key/update and /key/{key}/regenerate, with
#: their types (LiteLLM's GenerateKeyRequest / UpdateKeyRequest names).
KEY_FIELDS: dict[str, tuple[type, ...]] = {
    "key_alias": (str,),
    "models": (list,),
    "max_budget": (int, float),
    "budget_duration": (str,),
    "soft_budget": (int, float),
    "rpm_limit": (int,),
    "tpm_limit": (int,),
    "max_parallel_requests": (int,),
    "metadata": (dict,),
    "team_id": (str,),
    "user_id": (str,),
    "organization_id": (str,),
    "blocked": (bool,),
    "duration": (str,),
    "key": (str,),
}
_REGENERATE_FIELDS = dict(KEY_FIELDS, new_key=(str,))
_CONFIG_DEFAULTS: dict[str, t.Any] = {
    "host": "127.0.0.1",
    "port": 4000,
    "database": "/var/lib/gpuserve-keyd/keys.sqlite3",
    "usage_log": "/var/log/gpuserve/usage.log",
    "usage_poll_interval": 0.25,
    "prices": {},
    "default_price": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0},
    "log_level": "WARNING",
}


class ApiError(Exception):
    """An error answered in LiteLLM's ProxyException shape."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": kind, "param": param, "code": str(status)}}


def hash_token(key: str) -> str:
    """The stored form of a key: its sha256 hex (LiteLLM's hash_token)."""
    return hashlib.sha256(key.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value)


def parse_duration(value: str, field: str) -> timedelta:
    """``30s``, ``30m``, ``30h``, ``30d`` as LiteLLM accepts them."""
    match = _DURATION.match(value)
    if not match:
        raise ApiError(400, "Invalid %s %r: use a number and s, m, h or d (for example 30d)" % (field, value),
                       param=field)
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def check_body(body: t.Any, fields: dict[str, tuple[type, ...]]) -> dict[str, t.Any]:
    """Reject bodies with unknown fields or wrong types (422, FastAPI's detail shape)."""
    if not isinstance(body, dict):
        raise ApiError(422, "The request body must be a JSON object")
    errors = []
    for name, value in body.items():
        if name not in fields:
            errors.append("%s: not supported by gpuserve-keyd (the edge data path); use "
                          "litellm_gateway_data_path: litellm for LiteLLM's full key options" % name)
        elif value is not None and (not isinstance(value, fields[name]) or isinstance(value, bool)
                                    and bool not in fields[name]):
            errors.append("%s: expected %s" % (name, "/".join(k.__name__ for k in fields[name])))
    if errors:
        raise ApiError(422, "; ".join(errors))
    return body


def load_config(path: str) -> dict[str, t.Any]:
    """Read and check a JSON configuration file; raises ValueError saying what to fix."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise ValueError("%s: the configuration must be a JSON object" % path)
    unknown = sorted(set(data) - set(_CONFIG_DEFAULTS))
    if unknown:
        raise ValueError("%s: unknown settings %s" % (path, ", ".join(unknown)))
    config = dict(_CONFIG_DEFAULTS, **data)
    if not isinstance(config["port"], int) or not 0 <= config["port"] <= 65535:
        raise ValueError("%s: port must be an integer 0-65535" % path)
    if not isinstance(config["usage_poll_interval"], (int, float)) or not 0 < config["usage_poll_interval"] <= 5:
        raise ValueError("%s: usage_poll_interval must be a number of seconds in (0, 5]" % path)
    prices = dict(config["prices"], **{"": config["default_price"]})
    for model, price in prices.items():
        if not isinstance(price, dict) or set(price) - {"input_cost_per_token", "output_cost_per_token"}:
            raise ValueError("%s: price of %r must be an object with input_cost_per_token and "
                             "output_cost_per_token" % (path, model or "default_price"))
        for name, value in price.items():
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError("%s: %s of %r must be a number >= 0" % (path, name, model or "default_price"))
    for name in ("database", "usage_log"):
        if not isinstance(config[name], str) or not config[name].startswith("/"):
            raise ValueError("%s: %s must be an absolute path" % (path, name))
    return config


class KeyStore:
    """The key table (in memory, persisted to SQLite) and the per-key accounting."""

    def __init__(self, database: str, prices: dict[str, dict[str, float]], default_price: dict[str, float]) -> None:
        self.lock = threading.RLock()
        self.prices = prices
        self.default_price = default_price
        self.db = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS keys (token TEXT PRIMARY KEY, row TEXT NOT NULL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS usage_position (id INTEGER PRIMARY KEY CHECK (id = 1), "
                        "inode INTEGER NOT NULL, offset INTEGER NOT NULL)")
        self.rows: dict[str, dict[str, t.Any]] = {
            token: json.loads(row) for token, row in self.db.execute("SELECT token, row FROM keys")}
        self.windows: dict[str, list[float]] = {}  # token -> [minute start, requests, tokens]
        self.verdicts: dict[str, int] = {}
        self.requests: dict[tuple[str, str], int] = {}
        self.usage_lines = 0
        self.usage_bad_lines = 0
        self.usage_without_tokens = 0

    # -- persistence -------------------------------------------------------------------------

    def _save(self, *rows: dict[str, t.Any]) -> None:
        for row in rows:
            self.db.execute("INSERT OR REPLACE INTO keys (token, row) VALUES (?, ?)",
                            (row["token"], json.dumps(row, sort_keys=True)))

    def position(self) -> tuple[int, int] | None:
        found = self.db.execute("SELECT inode, offset FROM usage_position WHERE id = 1").fetchone()
        return (found[0], found[1]) if found else None

    # -- lookups -----------------------------------------------------------------------------

    def _by_alias(self, alias: str) -> list[dict[str, t.Any]]:
        return [row for row in self.rows.values() if row.get("key_alias") == alias]

    def _find(self, key: str | None = None, alias: str | None = None) -> dict[str, t.Any]:
        if key:
            row = self.rows.get(hash_token(key) if key.startswith("sk-") else key)
            if row is None:
                raise ApiError(404, "Key not found.", "not_found_error", "key")
            return row
        if not alias:
            raise ApiError(400, "either key or key_alias must be provided", "bad_request_error", "key")
        rows = self._by_alias(alias)
        if not rows:
            raise ApiError(404, "Key not found. No key with key_alias='%s'." % alias, "not_found_error", "key_alias")
        if len(rows) > 1:
            raise ApiError(400, "Multiple keys share key_alias='%s'." % alias, "bad_request_error", "key_alias")
        return rows[0]

    @staticmethod
    def public(row: dict[str, t.Any]) -> dict[str, t.Any]:
        return {k: v for k, v in row.items() if not k.startswith("_")}

    # -- verdicts (nginx auth_request) -------------------------------------------------------

    def verdict(self, key: str, now: float | None = None) -> tuple[str, str | None]:
        """``("allow", token)`` or ``(reason, None)`` for the key a client sent."""
        now = time.time() if now is None else now
        with self.lock:
            reason, token = self._verdict(key, now)
            self.verdicts[reason] = self.verdicts.get(reason, 0) + 1
            return reason, token

    def _verdict(self, key: str, now: float) -> tuple[str, str | None]:
        token = hash_token(key)
        row = self.rows.get(token)
        if row is None:
            return "invalid", None
        if row.get("blocked"):
            return "blocked", None
        expires = row.get("_expires_ts")
        if expires is not None and now >= expires:
            return "expired", None
        self._maybe_reset_budget(row, now)
        if row.get("max_budget") is not None and row.get("spend", 0.0) >= row["max_budget"]:
            return "budget", None
        window = self._window(token, now)
        if row.get("rpm_limit") is not None and window[1] >= row["rpm_limit"]:
            return "rate_limit", None
        if row.get("tpm_limit") is not None and window[2] >= row["tpm_limit"]:
            return "rate_limit", None
        window[1] += 1
        return "allow", token

    def _window(self, token: str, now: float) -> list[float]:
        minute = now - now % 60
        window = self.windows.get(token)
        if window is None or window[0] != minute:
            window = self.windows[token] = [minute, 0, 0]
        return window

    def _maybe_reset_budget(self, row: dict[str, t.Any], now: float) -> None:
        reset_at = _parse_time(row.get("budget_reset_at"))
        if reset_at is None or now < reset_at.timestamp():
            return
        period = parse_duration(row["budget_duration"], "budget_duration")
        while reset_at.timestamp() <= now:
            reset_at += period
        row.update(spend=0.0, budget_reset_at=_iso(reset_at))
        self._save(row)

    # -- accounting (usage log lines) --------------------------------------------------------

    def price(self, model: str) -> dict[str, float]:
        return self.prices.get(model, self.default_price)

    def account(self, lines: list[bytes], position: tuple[int, int]) -> None:
        """Add the usage of complete log lines and store the new read position, atomically."""
        with self.lock:
            touched: dict[str, dict[str, t.Any]] = {}
            for raw in lines:
                self.usage_lines += 1
                try:
                    entry = json.loads(raw)
                    token = str(entry.get("key") or "")
                    status = str(entry.get("status") or "")
                    prompt = int(entry.get("prompt") or 0)
                    completion = int(entry.get("completion") or 0)
                    model = str(entry.get("model") or "")
                except (ValueError, TypeError, AttributeError):
                    self.usage_bad_lines += 1
                    continue
                row = self.rows.get(token)
                alias = (row.get("key_alias") or token[:12]) if row else ("master" if token == "master" else "")
                self.requests[(alias, status)] = self.requests.get((alias, status), 0) + 1
                if status.startswith("2") and not entry.get("prompt"):
                    self.usage_without_tokens += 1
                if row is None:
                    continue
                price = self.price(model)
                row["spend"] = row.get("spend", 0.0) + (prompt * price["input_cost_per_token"]
                                                        + completion * price["output_cost_per_token"])
                usage = row.setdefault("gpuserve_usage", {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0})
                usage["requests"] += 1
                usage["prompt_tokens"] += prompt
                usage["completion_tokens"] += completion
                self._window(token, time.time())[2] += prompt + completion
                touched[token] = row
            self.db.execute("BEGIN")
            try:
                self._save(*touched.values())
                self.db.execute("INSERT OR REPLACE INTO usage_position (id, inode, offset) VALUES (1, ?, ?)",
                                position)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    # -- key management (LiteLLM's /key/* shapes) --------------------------------------------

    def _apply(self, row: dict[str, t.Any], body: dict[str, t.Any]) -> None:
        for name, value in body.items():
            if name in ("key", "new_key"):
                continue
            if name == "duration":
                row["expires"] = None if value in (None, "-1") else _iso(_now() + parse_duration(value, "duration"))
            elif name == "budget_duration":
                row["budget_duration"] = value
                row["budget_reset_at"] = None if value is None else _iso(_now() + parse_duration(value, name))
            elif name == "metadata":
                row["metadata"] = dict(value or {})
            elif name == "models":
                row["models"] = [str(m) for m in value or []]
            else:
                row[name] = value
        expires = _parse_time(row.get("expires"))
        row["_expires_ts"] = expires.timestamp() if expires is not None else None
        row["updated_at"] = _iso(_now())

    def generate(self, body: dict[str, t.Any]) -> dict[str, t.Any]:
        body = check_body(body, KEY_FIELDS)
        with self.lock:
            alias = body.get("key_alias")
            if alias is not None and self._by_alias(alias):
                raise ApiError(400, "Key with alias '%s' already exists. Unique key aliases across all keys are "
                                    "required." % alias, "bad_request_error", "key_alias")
            secret = body.get("key") or "sk-" + secrets.token_urlsafe(24)
            if not secret.startswith("sk-"):
                raise ApiError(400, "A key must start with 'sk-'", param="key")
            token = hash_token(secret)
            if token in self.rows:
                raise ApiError(400, "This key already exists", param="key")
            now = _iso(_now())
            row: dict[str, t.Any] = {
                "token": token, "key_name": "sk-...%s" % secret[-4:], "key_alias": None, "spend": 0.0,
                "max_budget": None, "budget_duration": None, "budget_reset_at": None, "soft_budget": None,
                "expires": None, "models": [], "rpm_limit": None, "tpm_limit": None,
                "max_parallel_requests": None, "metadata": {}, "team_id": None, "user_id": None,
                "organization_id": None, "blocked": None, "created_at": now, "created_by": "master_key",
                "updated_by": "master_key",
                "gpuserve_usage": {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0},
            }
            self._apply(row, body)
            self.rows[token] = row
            self._save(row)
            return dict(self.public(row), key=secret, token=token, token_id=token)

    def update(self, body: dict[str, t.Any]) -> dict[str, t.Any]:
        body = check_body(body, KEY_FIELDS)
        with self.lock:
            row = self._find(body.get("key"), body.get("key_alias") if not body.get("key") else None)
            alias = body.get("key_alias")
            if alias is not None and alias != row.get("key_alias") and self._by_alias(alias):
                raise ApiError(400, "Key with alias '%s' already exists." % alias, "bad_request_error", "key_alias")
            self._apply(row, body)
            self._save(row)
            return dict(self.public(row), key=row["token"])

    def delete(self, body: t.Any) -> dict[str, t.Any]:
        body = check_body(body, {"keys": (list,), "key_aliases": (list,)})
        with self.lock:
            if body.get("keys"):
                named = list(body["keys"])
                tokens = [hash_token(k) if str(k).startswith("sk-") else str(k) for k in named]
            else:
                named = list(body.get("key_aliases") or [])
                tokens = [row["token"] for alias in named for row in self._by_alias(alias)]
            missing = [tok for tok in tokens if tok not in self.rows]
            if missing or not tokens:
                raise ApiError(400, "Failed to delete all keys. Keys passed in=%d, Deleted keys=%d"
                               % (len(named), len(tokens) - len(missing)), "bad_request_error", "keys")
            for token in tokens:
                del self.rows[token]
                self.windows.pop(token, None)
                self.db.execute("DELETE FROM keys WHERE token = ?", (token,))
            return {"deleted_keys": named}

    def block(self, body: t.Any, blocked: bool) -> dict[str, t.Any]:
        body = check_body(body, {"key": (str,)})
        with self.lock:
            row = self._find(body.get("key"))
            row["blocked"] = blocked
            row["updated_at"] = _iso(_now())
            self._save(row)
            return self.public(row)

    def regenerate(self, key: str | None, body: dict[str, t.Any] | None) -> dict[str, t.Any]:
        body = check_body(body or {}, _REGENERATE_FIELDS)
        with self.lock:
            row = self._find(body.get("key") or key)
            secret = body.get("new_key") or "sk-" + secrets.token_urlsafe(24)
            new_token = hash_token(secret)
            self._apply(row, {k: v for k, v in body.items() if k != "key_alias" or v is not None})
            del self.rows[row["token"]]
            self.db.execute("DELETE FROM keys WHERE token = ?", (row["token"],))
            self.windows.pop(row["token"], None)
            row.update(token=new_token, key_name="sk-...%s" % secret[-4:])
            self.rows[new_token] = row
            self._save(row)
            answer = self.public(row)
            answer.pop("token")
            return dict(answer, key=secret, token_id=new_token)

    def list(self, query: dict[str, str]) -> dict[str, t.Any]:
        try:
            page, size = int(query.get("page", 1)), int(query.get("size", 10))
        except ValueError:
            raise ApiError(422, "page and size must be integers") from None
        if page < 1 or not 1 <= size <= 100:
            raise ApiError(422, "page must be >= 1 and size 1-100")
        with self.lock:
            rows = sorted(self.rows.values(), key=lambda r: r["created_at"], reverse=True)
            if query.get("key_alias") is not None:
                rows = [r for r in rows if r.get("key_alias") == query["key_alias"]]
            total = len(rows)
            rows = rows[(page - 1) * size:page * size]
            full = query.get("return_full_object", "false").lower() == "true"
            keys = [self.public(r) for r in rows] if full else [r["token"] for r in rows]
        return {"keys": keys, "total_count": total, "current_page": page, "total_pages": -(-total // size)}

    def info(self, key: str | None) -> dict[str, t.Any]:
        if not key:
            raise ApiError(400, "No key passed in. Pass ?key=", "bad_request_error", "key")
        with self.lock:
            row = self._find(key)
            info = self.public(row)
        info.pop("token")
        info["status"] = "revoked" if info.get("blocked") else "active"
        return {"key": key, "info": info}

    # -- metrics -----------------------------------------------------------------------------

    def metrics(self, follower: UsageFollower | None) -> str:
        def esc(value: t.Any) -> str:
            return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

        out = ["# HELP gpuserve_keyd_auth_total Verdicts given to nginx, by reason.",
               "# TYPE gpuserve_keyd_auth_total counter"]
        with self.lock:
            for reason, count in sorted(self.verdicts.items()):
                out.append('gpuserve_keyd_auth_total{verdict="%s"} %d' % (esc(reason), count))
            out += ["# HELP gpuserve_keyd_requests_total Requests read from the usage log, by key alias and status.",
                    "# TYPE gpuserve_keyd_requests_total counter"]
            for (alias, status), count in sorted(self.requests.items()):
                out.append('gpuserve_keyd_requests_total{key_alias="%s",status_code="%s"} %d'
                           % (esc(alias), esc(status), count))
            per_key = [(r.get("key_alias") or r["token"][:12], r) for r in self.rows.values()]
            for name, field, kind, help_text in (
                    ("gpuserve_keyd_prompt_tokens_total", "prompt_tokens", "counter", "Prompt tokens by key."),
                    ("gpuserve_keyd_completion_tokens_total", "completion_tokens", "counter",
                     "Completion tokens by key."),
                    ("gpuserve_keyd_spend", "spend", "gauge", "Spend of each key (its budget's currency)."),
                    ("gpuserve_keyd_max_budget", "max_budget", "gauge", "Budget of each key that has one.")):
                out += ["# HELP %s %s" % (name, help_text), "# TYPE %s %s" % (name, kind)]
                for alias, row in sorted(per_key, key=lambda item: item[0]):
                    value = row.get(field) if field in ("spend", "max_budget") else \
                        (row.get("gpuserve_usage") or {}).get(field, 0)
                    if value is not None:
                        out.append('%s{key_alias="%s"} %s' % (name, esc(alias), repr(float(value))))
            out += ["# TYPE gpuserve_keyd_keys gauge", "gpuserve_keyd_keys %d" % len(self.rows),
                    "# TYPE gpuserve_keyd_usage_lines_total counter",
                    "gpuserve_keyd_usage_lines_total %d" % self.usage_lines,
                    "# TYPE gpuserve_keyd_usage_bad_lines_total counter",
                    "gpuserve_keyd_usage_bad_lines_total %d" % self.usage_bad_lines,
                    "# HELP gpuserve_keyd_usage_missing_total Successful responses without a usage object.",
                    "# TYPE gpuserve_keyd_usage_missing_total counter",
                    "gpuserve_keyd_usage_missing_total %d" % self.usage_without_tokens]
        if follower is not None:
            out += ["# HELP gpuserve_keyd_usage_last_read_timestamp_seconds When the usage log was last read.",
                    "# TYPE gpuserve_keyd_usage_last_read_timestamp_seconds gauge",
                    "gpuserve_keyd_usage_last_read_timestamp_seconds %.3f" % follower.last_read]
        return "\n".join(out) + "\n"


class UsageFollower(threading.Thread):
    """Follows nginx's usage log like ``tail -F``: rotation, truncation, restarts."""

    def __init__(self, store: KeyStore, path: str, interval: float) -> None:
        super().__init__(name="usage-follower", daemon=True)
        self.store = store
        self.path = path
        self.interval = interval
        self.handle: t.BinaryIO | None = None
        self.inode = 0
        self.offset = 0
        self.partial = b""
        self.last_read = 0.0
        self.stopping = threading.Event()

    def _open(self, path: str, inode: int, offset: int) -> bool:
        try:
            handle = open(path, "rb")  # pylint: disable=consider-using-with  # kept open while followed
        except OSError:
            return False
        stat = os.fstat(handle.fileno())
        if stat.st_ino != inode:
            handle.close()
            return False
        handle.seek(min(offset, stat.st_size))
        self.handle, self.inode, self.offset, self.partial = handle, inode, min(offset, stat.st_size), b""
        return True

    def start_position(self) -> None:
        """Resume where the stored position says: the current file, or its rotated predecessor."""
        stored = self.store.position()
        if stored is not None:
            for candidate in (self.path, self.path + ".1"):
                if self._open(candidate, stored[0], stored[1]):
                    return
        try:
            inode = os.stat(self.path).st_ino
        except OSError:
            return
        self._open(self.path, inode, 0)

    def poll(self) -> int:
        """Read what is new; returns the number of complete lines accounted."""
        self.last_read = time.time()
        if self.handle is None:
            self.start_position()
            if self.handle is None:
                return 0
        count = self._drain()
        try:
            current = os.stat(self.path)
        except OSError:
            return count
        if current.st_ino != self.inode:
            # rotated: the old file is complete once nginx reopened its logs; take the rest and move on
            count += self._drain()
            self.handle.close()
            self.handle = None
            if self._open(self.path, current.st_ino, 0):
                count += self._drain()
        elif current.st_size < self.offset:
            # truncated in place (copytruncate)
            self.handle.seek(0)
            self.offset, self.partial = 0, b""
            count += self._drain()
        return count

    def _drain(self) -> int:
        assert self.handle is not None
        data = self.handle.read()
        if not data:
            return 0
        self.offset += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        lines = [line for line in lines if line.strip()]
        # the stored offset points after the last complete line
        self.store.account(lines, (self.inode, self.offset - len(self.partial)))
        return len(lines)

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.poll()
            except Exception as exc:  # pylint: disable=broad-except  # keep following; say why
                print("gpuserve-keyd: reading %s failed: %r" % (self.path, exc), file=sys.stderr, flush=True)
            self.stopping.wait(self.interval)


class Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive: nginx keeps a pool of connections for its auth subrequests."""

    protocol_version = "HTTP/1.1"
    server_version = "gpuserve-keyd/" + VERSION
    sys_version = ""
    server: KeyServer

    def log_message(self, format: str, *args: t.Any) -> None:  # pylint: disable=redefined-builtin
        if self.server.verbose:
            sys.stderr.write("%s\n" % (format % args))

    def _send(self, status: int, body: t.Any = None, headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        data = b"" if body is None else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _bearer(self) -> str:
        header = self.headers.get("Authorization") or ""
        return header[7:].strip() if header[:7].lower() == "bearer " else ""

    def _is_master(self, key: str) -> bool:
        return secrets.compare_digest(key.encode(), self.server.master_key.encode())

    def _admin(self) -> None:
        if not self._is_master(self._bearer()):
            raise ApiError(401, "Authentication Error: this endpoint needs the master key", "auth_error")

    def _body(self) -> t.Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(422, "The request body is not valid JSON") from None

    def _auth(self) -> None:
        key = self._bearer()
        if key and self._is_master(key):
            self._send(204, headers={"X-Gpuserve-Key": "master"})
            return
        reason, token = self.server.store.verdict(key) if key else ("invalid", None)
        if token is not None:
            self._send(204, headers={"X-Gpuserve-Key": token})
        else:
            self._send(403 if reason in ("blocked", "budget", "rate_limit") else 401,
                       headers={"X-Gpuserve-Reason": reason})

    def _route(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        store = self.server.store
        try:
            if path == "/auth":
                self._auth()
                return
            if path in ("/health/readiness", "/health/liveliness", "/health/liveness"):
                self._send(200, {"status": "healthy", "service": "gpuserve-keyd", "version": VERSION,
                                 "keys": len(store.rows)})
                return
            self._admin()
            body = self._body() if method == "POST" else None
            if path.rstrip("/") == "/metrics" and method == "GET":
                self._send(200, store.metrics(self.server.follower), content_type="text/plain; version=0.0.4")
                return
            if method == "POST" and path == "/key/generate":
                answer = store.generate(body)
            elif method == "POST" and path == "/key/update":
                answer = store.update(body)
            elif method == "POST" and path == "/key/delete":
                answer = store.delete(body)
            elif method == "POST" and path in ("/key/block", "/key/unblock"):
                answer = store.block(body, path == "/key/block")
            elif method == "POST" and path == "/key/regenerate":
                answer = store.regenerate(None, body)
            elif method == "POST" and path.startswith("/key/") and path.endswith("/regenerate"):
                answer = store.regenerate(unquote(path[len("/key/"):-len("/regenerate")]) or None, body)
            elif method == "GET" and path == "/key/list":
                answer = store.list(query)
            elif method == "GET" and path == "/key/info":
                answer = store.info(query.get("key"))
            else:
                raise ApiError(404, "Not Found: %s %s" % (method, path), "not_found_error")
        except ApiError as exc:
            self._send(exc.status, exc.body)
        except Exception as exc:  # pylint: disable=broad-except  # answer, never drop the connection
            self._send(500, ApiError(500, "gpuserve-keyd error: %r" % exc, "internal_server_error").body)
        else:
            self._send(200, answer)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_HEAD(self) -> None:  # noqa: N802
        self._route("HEAD")


class KeyServer(ThreadingHTTPServer):
    """The HTTP server; ``url`` once bound."""

    daemon_threads = True
    allow_reuse_address = True
    # nginx opens a connection per concurrent request until its keepalive pool is warm: a burst of
    # 128 streams at once must queue, not overflow socketserver's default backlog of 5 (dropped
    # SYNs cost a 1 s retransmit, then nginx's 2 s connect timeout and a 500; measured on the H200).
    request_queue_size = 4096

    def __init__(self, config: dict[str, t.Any], master_key: str, follow: bool = True) -> None:
        self.config = config
        self.master_key = master_key
        self.verbose = config["log_level"].upper() in ("DEBUG", "INFO")
        self.store = KeyStore(config["database"], config["prices"], config["default_price"])
        self.follower: UsageFollower | None = None
        if follow:
            self.follower = UsageFollower(self.store, config["usage_log"], float(config["usage_poll_interval"]))
        super().__init__((config["host"], config["port"]), Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return "http://%s:%d" % (host, port)

    def start(self) -> threading.Thread:
        if self.follower is not None:
            self.follower.start()
        thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        if self.follower is not None:
            self.follower.stopping.set()
            self.follower.join(5)
        self.shutdown()
        self.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--config", required=True, help="JSON configuration file")
    parser.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except (OSError, ValueError) as exc:
        print("gpuserve-keyd: invalid configuration: %s" % exc, file=sys.stderr)
        return 2
    if args.check_config:
        print("gpuserve-keyd: %s is valid" % args.config)
        return 0
    master_key = os.environ.get("LITELLM_MASTER_KEY", "")
    if not master_key.startswith("sk-"):
        print("gpuserve-keyd: LITELLM_MASTER_KEY (environment file) must be set and start with sk-", file=sys.stderr)
        return 2
    server = KeyServer(config, master_key)
    print("gpuserve-keyd %s listening on %s, following %s" % (VERSION, server.url, config["usage_log"]),
          file=sys.stderr, flush=True)
    if server.follower is not None:
        server.follower.start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
