"""Console logins: a session per login, kept in PostgreSQL, found by the hash of a cookie token.

The cookie carries 256 random bits; the table keeps only their SHA-256, so reading the table
opens no session. A session ends at its expiry, at logout, and as soon as the API key it was
opened with is revoked (every lookup joins the key). Each session has its own CSRF token,
which every form carries back.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import asyncpg

from vnode.apikeys import Principal, Scope

COOKIE = "vnode_console"
LOGIN_COOKIE = "vnode_console_login"  # the login form's own CSRF token (no session yet)


@dataclass(frozen=True)
class ConsoleSession:
    key_id: int | None  # None: the VNODE_ADMIN_KEY bootstrap key
    key_name: str
    scope: Scope
    csrf_token: str

    @property
    def can_act(self) -> bool:
        """Only admin moves money or changes anything; console is read-only."""
        return self.scope is Scope.ADMIN

    @property
    def owner(self) -> str:
        """The Idempotency-Key namespace of this operator's actions (apart from the API's)."""
        return "console:" + ("env-admin" if self.key_id is None else f"key:{self.key_id}")


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


async def open_session(pool: asyncpg.Pool, principal: Principal, ttl_s: int) -> str:
    """A new session for a verified key whose scope allows the console; returns the token."""
    token = new_token()
    # Sessions a day past their end are of no more use; a login is rare enough to sweep them.
    await pool.execute("DELETE FROM console_sessions WHERE expires_at < now() - interval '1 day'")
    await pool.execute(
        "INSERT INTO console_sessions (token_hash, key_id, key_name, scope, csrf_token, "
        "expires_at) VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))",
        _hash(token),
        principal.key_id,
        principal.name,
        principal.scope.value,
        new_token(),
        float(ttl_s),
    )
    return token


async def find_session(pool: asyncpg.Pool, token: str | None) -> ConsoleSession | None:
    """The live session of a cookie token: not expired, not logged out, its key not revoked."""
    if not token or len(token) > 100:
        return None
    row = await pool.fetchrow(
        "SELECT s.key_id, s.key_name, s.scope, s.csrf_token FROM console_sessions s "
        "LEFT JOIN api_keys k ON k.id = s.key_id "
        "WHERE s.token_hash = $1 AND s.ended_at IS NULL AND s.expires_at > now() "
        "AND (s.key_id IS NULL OR k.revoked_at IS NULL)",
        _hash(token),
    )
    if row is None:
        return None
    return ConsoleSession(row["key_id"], row["key_name"], Scope(row["scope"]), row["csrf_token"])


async def end_session(pool: asyncpg.Pool, token: str) -> None:
    await pool.execute(
        "UPDATE console_sessions SET ended_at = now() WHERE token_hash = $1 AND ended_at IS NULL",
        _hash(token),
    )


def same_token(given: str | None, expected: str | None) -> bool:
    """A CSRF check in constant time; a missing or empty token, on either side, never matches."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
