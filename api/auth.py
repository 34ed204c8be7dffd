"""API keys (stored hashed, with scopes and a tenant) and per-key rate limits.

A key reads ``gk_<id>_<secret>``: the id finds the row, the secret is compared with its SHA-256 hash.
The secrets are 32 random bytes, so a fast hash is enough (there is nothing to guess); the full key is
shown once, when it is created.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import threading
import time
from typing import Literal

from pydantic import BaseModel, Field

from api.db import Database
from grader.errors import GraderError

Scope = Literal["grade", "author", "admin"]
SCOPES: tuple[Scope, ...] = ("grade", "author", "admin")
TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_KEY = re.compile(r"^gk_([a-f0-9]{12})_([A-Za-z0-9_-]{20,})$")


class ApiKey(BaseModel):
    """A stored key, without its secret."""

    id: str
    name: str
    tenant: str
    scopes: list[Scope]
    rate_limit: int | None = Field(description="Requests per minute; None: the server's default; 0: unlimited.")
    created_at: float
    revoked_at: float | None = None

    def allows(self, scope: Scope) -> bool:
        """``admin`` holds every scope; ``author`` may also grade."""
        granted = set(self.scopes)
        if "admin" in granted:
            return True
        return scope in granted or (scope == "grade" and "author" in granted)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(db: Database, *, name: str, tenant: str, scopes: list[str],
               rate_limit: int | None = None) -> tuple[str, ApiKey]:
    """Store a new key; returns the full key (shown once) and its record."""
    if not TENANT.match(tenant):
        raise GraderError(f"tenant {tenant!r} must be lower-case letters, digits, '-' or '_' (at most 63)")
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise GraderError(f"unknown scope(s) {', '.join(bad) or '(none given)'}; scopes are: {', '.join(SCOPES)}")
    if rate_limit is not None and rate_limit < 0:
        raise GraderError(f"the rate limit is requests per minute (0: unlimited), not {rate_limit}")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    record = ApiKey(id=key_id, name=name, tenant=tenant, scopes=list(dict.fromkeys(scopes)),  # type: ignore[arg-type]
                    rate_limit=rate_limit, created_at=time.time())
    with db.transaction() as conn:
        conn.execute("INSERT INTO api_keys (id, name, tenant, scopes, secret_hash, rate_limit, created_at) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (key_id, name, tenant, ",".join(record.scopes), _hash(secret), rate_limit, record.created_at))
    return f"gk_{key_id}_{secret}", record


def _record(row) -> ApiKey:
    return ApiKey(id=row["id"], name=row["name"], tenant=row["tenant"], scopes=row["scopes"].split(","),
                  rate_limit=row["rate_limit"], created_at=row["created_at"], revoked_at=row["revoked_at"])


def list_keys(db: Database) -> list[ApiKey]:
    return [_record(row) for row in db.query("SELECT * FROM api_keys ORDER BY created_at")]


def revoke_key(db: Database, key_id: str) -> ApiKey:
    """Revoke a key by id (its full key works too); raises if there is no such key."""
    match = _KEY.match(key_id)
    key_id = match.group(1) if match else key_id
    with db.transaction() as conn:
        updated = conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                               (time.time(), key_id)).rowcount
    rows = db.query("SELECT * FROM api_keys WHERE id = ?", (key_id,))
    if not rows:
        raise GraderError(f"no key with id {key_id!r}; `grader keys list` shows the ids")
    if not updated and rows[0]["revoked_at"] is None:
        raise GraderError(f"key {key_id!r} could not be revoked")
    return _record(rows[0])


def verify_key(db: Database, presented: str) -> ApiKey | None:
    """The live key for a presented ``gk_...`` string, or None (unknown, wrong secret or revoked)."""
    match = _KEY.match(presented.strip())
    if not match:
        return None
    rows = db.query("SELECT * FROM api_keys WHERE id = ?", (match.group(1),))
    if not rows or rows[0]["revoked_at"] is not None:
        return None
    if not hmac.compare_digest(rows[0]["secret_hash"], _hash(match.group(2))):
        return None
    return _record(rows[0])


class RateLimiter:
    """A token bucket per key: ``burst`` requests at once, refilled at ``per_minute``."""

    def __init__(self, burst: int):
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key_id: str, per_minute: int) -> float:
        """0 if the request may go ahead, else the seconds to wait before the next one."""
        if per_minute <= 0:
            return 0.0
        capacity = float(min(self.burst, per_minute))
        rate = per_minute / 60.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (capacity, now))
            tokens = min(capacity, tokens + (now - last) * rate)
            if tokens >= 1:
                self._buckets[key_id] = (tokens - 1, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1 - tokens) / rate

    @staticmethod
    def retry_after(wait: float) -> str:
        return str(max(1, math.ceil(wait)))
