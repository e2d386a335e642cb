"""API keys: created once and shown once, stored as SHA-256 hashes, checked with a small cache.

Keys are 256-bit random strings, so a plain hash is enough (no password stretching needed).
Scopes are ordered: each includes the ones below it (admin > spend > receive > read), so the
bot's spend key can also read balances and make invoices, while a receive or read key can
never reach an endpoint that moves money. `console` stands beside that line, below admin: the
operator console's read-only scope (docs/CONSOLE.md) sees the console's pages and what `read`
sees, and nothing that moves money; admin includes it.
"""

from __future__ import annotations

import asyncio
import contextlib
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
# The revocation listener: how often a silent loss of its connection is looked for, how long
# that check and a reconnect may take, and the reconnect backoff.
LISTEN_CHECK_S = 5.0
LISTEN_CHECK_TIMEOUT_S = 5.0
LISTEN_CONNECT_TIMEOUT_S = 10.0
RECONNECT_MIN_S = 0.1
RECONNECT_MAX_S = 2.0


class Scope(StrEnum):
    READ = "read"
    RECEIVE = "receive"
    SPEND = "spend"
    ADMIN = "admin"
    CONSOLE = "console"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, required: Scope) -> bool:
        # console is off the ordered line: it allows itself and read; of the others only
        # admin allows console, so a console key never reaches receive, spend or admin.
        if required is Scope.CONSOLE:
            return self in (Scope.CONSOLE, Scope.ADMIN)
        if self is Scope.CONSOLE:
            return required is Scope.READ
        return self.rank >= required.rank


# console's rank is read's: it is never compared by rank (allows), only listed by it.
_RANK = {Scope.READ: 0, Scope.CONSOLE: 0, Scope.RECEIVE: 1, Scope.SPEND: 2, Scope.ADMIN: 3}


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
        name,
        scope.value,
        hash_key(key),
        key[: len(KEY_PREFIX) + 6],
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
            "RETURNING id",
            key_id,
        )
        await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(key_id))
    return revoked is not None


async def count_admin_keys(conn: DbConnection) -> int:
    count = await conn.fetchval(
        "SELECT count(*) FROM api_keys WHERE scope = 'admin' AND revoked_at IS NULL"
    )
    return int(count)


def _info(row: asyncpg.Record) -> KeyInfo:
    return KeyInfo(
        row["id"],
        row["name"],
        Scope(row["scope"]),
        row["key_prefix"],
        row["created_at"],
        row["revoked_at"],
    )


class KeyVerifier:
    """Turns a bearer token into a Principal, caching hits for a short time.

    The cache saves a database round trip on every request; revocations arrive by NOTIFY and
    empty it, and the TTL bounds staleness should a notification be missed. Two races are
    closed (L4):

    - A lookup that began before a revocation must not put the pre-revocation answer in the
      cache after the NOTIFY emptied it: every NOTIFY bumps `generation`, and a lookup caches
      only if the generation did not change while it ran.
    - A LISTEN connection that dies (database restart, network cut, terminated backend) hears
      nothing more: its loss is noticed (asyncpg's termination callback, and a periodic check
      for silent losses), nothing is cached until LISTEN is back, the cache is emptied, and the
      listener reconnects with backoff.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        admin_key: str | None,
        ttl_s: float,
        *,
        check_s: float = LISTEN_CHECK_S,
    ) -> None:
        self._pool = pool
        self._admin_hash = hash_key(admin_key) if admin_key else None
        self._ttl_s = ttl_s
        self._check_s = check_s
        self._cache: dict[bytes, tuple[Principal, float]] = {}
        self._listener: PoolConnectionProxy[asyncpg.Record] | None = None
        self._generation = 0
        self._listening = False
        self._lost = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None
        self.resubscriptions = 0  # LISTEN connections re-established after a loss

    @property
    def generation(self) -> int:
        """Bumped by every NOTIFY and every change of the LISTEN connection."""
        return self._generation

    @property
    def listening(self) -> bool:
        """True while a LISTEN connection is believed alive (only then is anything cached)."""
        return self._listening

    async def start(self) -> None:
        await self._subscribe()  # the first time, a failure is the caller's (start-up fails)
        self._keeper = asyncio.create_task(self._keep_listening(), name="api-key-listener")

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        await self._drop_listener()

    def _invalidate(self) -> None:
        self._generation += 1
        self._cache.clear()

    async def revoke(self, conn: DbConnection, key_id: int) -> bool:
        """Revoke a key and forget it here at once. Other processes hear the NOTIFY; this one
        must not wait for its own: a console that revoked a key and sees it still accepted a
        moment later (the NOTIFY queued behind other work) has been lied to."""
        revoked = await revoke_key(conn, key_id)
        self._invalidate()
        return revoked

    def _on_notify(self, *_args: object) -> None:
        self._invalidate()

    def _on_lost(self, *_args: object) -> None:
        # Called by asyncpg when the LISTEN connection is gone: revocations can no longer
        # reach this process, so stop trusting and filling the cache at once.
        self._listening = False
        self._invalidate()
        self._lost.set()

    async def _subscribe(self) -> None:
        listener = await self._pool.acquire(timeout=LISTEN_CONNECT_TIMEOUT_S)
        try:
            listener.add_termination_listener(self._on_lost)
            await listener.add_listener(NOTIFY_CHANNEL, self._on_notify)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._pool.release(listener, timeout=1.0)
            raise
        self._listener = listener
        self._lost.clear()
        # Revocations made while nobody listened were missed: forget what was cached then.
        self._invalidate()
        self._listening = True

    async def _drop_listener(self) -> None:
        self._listening = False
        self._invalidate()
        listener, self._listener = self._listener, None
        if listener is None:
            return
        try:
            listener.remove_termination_listener(self._on_lost)
            await listener.remove_listener(NOTIFY_CHANNEL, self._on_notify)
            await self._pool.release(listener, timeout=1.0)
        except Exception:  # a dead connection: make sure the pool forgets it
            with contextlib.suppress(Exception):
                listener.terminate()

    async def _alive(self) -> bool:
        listener = self._listener
        if listener is None or listener.is_closed():
            return False
        try:
            # A half-open TCP connection (peer gone without a FIN) fires no termination
            # callback; only a round trip finds it.
            await listener.fetchval("SELECT 1", timeout=LISTEN_CHECK_TIMEOUT_S)
        except Exception:  # any failure of the check (asyncpg also raises InternalClientError
            # on a connection whose backend was terminated): not alive, and the keeper must
            # live on to reconnect, never die of an exception class nobody listed
            return False
        return True

    async def _keep_listening(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._lost.wait(), self._check_s)
            except TimeoutError:
                if await self._alive():
                    continue
            log.warning("API key revocation listener lost; reconnecting")
            await self._drop_listener()
            delay = RECONNECT_MIN_S
            while True:
                try:
                    await self._subscribe()
                except Exception as exc:  # the database is down or restarting: try again
                    log.warning(
                        "API key revocation listener: reconnect failed",
                        extra={"error": str(exc)[:200], "retry_in_s": delay},
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RECONNECT_MAX_S)
                    continue
                self.resubscriptions += 1
                log.info("API key revocation listener re-subscribed")
                break

    async def verify(self, token: str) -> Principal | None:
        digest = hash_key(token)
        if self._admin_hash is not None and hmac.compare_digest(digest, self._admin_hash):
            return Principal(None, "VNODE_ADMIN_KEY", Scope.ADMIN)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        generation = self._generation
        # The lookup also notes the key's last use (for the console's key page), at most once
        # a minute per key: a cache miss, not a request, pays for it.
        row = await self._pool.fetchrow(
            "WITH k AS (SELECT id, name, scope, last_used_at FROM api_keys "
            "           WHERE key_hash = $1 AND revoked_at IS NULL), "
            "u AS (UPDATE api_keys a SET last_used_at = now() FROM k WHERE a.id = k.id "
            "      AND (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute')) "
            "SELECT id, name, scope FROM k",
            digest,
        )
        if row is None:
            self._cache.pop(digest, None)
            return None
        principal = Principal(row["id"], row["name"], Scope(row["scope"]))
        # Answering this request with what the lookup read is right (it began before any
        # revocation that raced it); keeping it is not, if a NOTIFY came in meanwhile.
        if self._listening and self._generation == generation:
            if len(self._cache) > 10_000:  # bounded: unknown tokens are never cached
                self._cache.clear()
            self._cache[digest] = (principal, now + self._ttl_s)
        return principal
