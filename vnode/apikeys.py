"""API keys: created once and shown once, stored as SHA-256 hashes, checked with a small cache.

Keys are 256-bit random strings, so a plain hash is enough (no password stretching needed).
Scopes are ordered: each includes the ones below it (admin > spend > receive > read), so the
bot's spend key can also read balances and make invoices, while a receive or read key can
never reach an endpoint that moves money.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from vnode.db.pool import DbConnection

log = logging.getLogger(__name__)

KEY_PREFIX = "vnk_"
NOTIFY_CHANNEL = "vnode_api_keys"


class Scope(StrEnum):
    READ = "read"
    RECEIVE = "receive"
    SPEND = "spend"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, required: Scope) -> bool:
        return self.rank >= required.rank


_RANK = {Scope.READ: 0, Scope.RECEIVE: 1, Scope.SPEND: 2, Scope.ADMIN: 3}


@dataclass(frozen=True)
class Principal:
    key_id: int | None  # None for the VNODE_ADMIN_KEY bootstrap key
    name: str
    scope: Scope

    @property
    def owner(self) -> str:
        """Namespace for Idempotency-Keys: one caller cannot replay another's answers."""
        return "env-admin" if self.key_id is None else f"key:{self.key_id}"


@dataclass(frozen=True)
class KeyInfo:
    id: int
    name: str
    scope: Scope
    key_prefix: str
    created_at: datetime
    revoked_at: datetime | None


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


async def create_key(conn: DbConnection, name: str, scope: Scope) -> tuple[KeyInfo, str]:
    """Store a new key's hash; returns its record and the key itself, which is never kept."""
    key = generate_key()
    row = await conn.fetchrow(
        "INSERT INTO api_keys (name, scope, key_hash, key_prefix) VALUES ($1, $2, $3, $4) "
        "RETURNING id, name, scope, key_prefix, created_at, revoked_at",
        name, scope.value, hash_key(key), key[: len(KEY_PREFIX) + 6],
    )
    assert row is not None
    return _info(row), key


async def list_keys(conn: DbConnection) -> list[KeyInfo]:
    rows = await conn.fetch(
        "SELECT id, name, scope, key_prefix, created_at, revoked_at FROM api_keys ORDER BY id"
    )
    return [_info(row) for row in rows]


async def revoke_key(conn: DbConnection, key_id: int) -> bool:
    """Revoke a key; every running vnode process drops it from its cache at once."""
    async with conn.transaction():
        revoked = await conn.fetchval(
            "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL "
            "RETURNING id", key_id,
        )
        await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(key_id))
    return revoked is not None


async def count_admin_keys(conn: DbConnection) -> int:
    count = await conn.fetchval(
        "SELECT count(*) FROM api_keys WHERE scope = 'admin' AND revoked_at IS NULL"
    )
    return int(count)


def _info(row: asyncpg.Record) -> KeyInfo:
    return KeyInfo(row["id"], row["name"], Scope(row["scope"]), row["key_prefix"],
                   row["created_at"], row["revoked_at"])


class KeyVerifier:
    """Turns a bearer token into a Principal, caching hits for a short time.

    The cache saves a database round trip on every request; revocations arrive by NOTIFY and
    empty it, and the TTL bounds staleness should a notification be missed.
    """

    def __init__(self, pool: asyncpg.Pool, admin_key: str | None, ttl_s: float) -> None:
        self._pool = pool
        self._admin_hash = hash_key(admin_key) if admin_key else None
        self._ttl_s = ttl_s
        self._cache: dict[bytes, tuple[Principal, float]] = {}
        self._listener: PoolConnectionProxy[asyncpg.Record] | None = None

    async def start(self) -> None:
        listener = await self._pool.acquire()
        await listener.add_listener(NOTIFY_CHANNEL, self._on_notify)
        self._listener = listener

    async def stop(self) -> None:
        if self._listener is not None:
            await self._listener.remove_listener(NOTIFY_CHANNEL, self._on_notify)
            await self._pool.release(self._listener)
            self._listener = None

    def _on_notify(self, *_args: object) -> None:
        self._cache.clear()

    async def verify(self, token: str) -> Principal | None:
        digest = hash_key(token)
        if self._admin_hash is not None and hmac.compare_digest(digest, self._admin_hash):
            return Principal(None, "VNODE_ADMIN_KEY", Scope.ADMIN)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        row = await self._pool.fetchrow(
            "SELECT id, name, scope FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
            digest,
        )
        if row is None:
            self._cache.pop(digest, None)
            return None
        principal = Principal(row["id"], row["name"], Scope(row["scope"]))
        if len(self._cache) > 10_000:  # bounded: unknown tokens are never cached
            self._cache.clear()
        self._cache[digest] = (principal, now + self._ttl_s)
        return principal
