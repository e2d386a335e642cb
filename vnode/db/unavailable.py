"""The one rule for "the database is out of reach": which exceptions mean it, and what a caller
is told. The HTTP middleware (503 `database_unavailable`, in the API's, LndHub's and LNURL's
shapes), the workers' supervisor and the bot all ask `is_database_down`.

A connection-level failure is a dependency failing, not a bug: refused or reset connections,
a connection closed under a query, a server starting up or shutting down, a backend terminated
by an administrator (or by Patroni demoting the primary), a primary that became a read-only
replica, and no pooled connection free in time. None of them says whether a money call that was
under way committed: the answer is "unknown, send again with the same Idempotency-Key".
"""

from __future__ import annotations

import asyncpg

# OSError covers ConnectionRefusedError, ConnectionResetError, a socket that is gone and the
# builtin TimeoutError (asyncio.TimeoutError is the same class), which is what a pool acquire
# timeout raises. PostgresConnectionError is SQLSTATE class 08 (connection failures);
# CannotConnectNowError is "the database system is starting up / shutting down";
# AdminShutdownError a backend terminated (pg_terminate_backend, Patroni demoting a primary, a
# fast shutdown); CrashShutdownError another backend's crash. A cancelled query
# (QueryCanceledError) is not here: it is a timeout someone set, not the database going away.
# InterfaceError covers ConnectionDoesNotExistError ("connection was closed in the middle of
# operation"); a ReadOnlySQLTransactionError on a write is a primary demoted under a pooled
# connection. InternalClientError ("cannot switch to state N; another operation (2) is in
# progress") is what asyncpg 0.32 raises on a pooled connection whose backend was terminated
# while it was idle (asyncpg issue #1069): nothing was sent, and the dead connection leaves the
# pool on release.
DATABASE_DOWN: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.exceptions.InternalClientError,
)

# A connection may be lost after a money function committed and before its answer came back, so
# the caller is told the effect is unknown and how to find out: a retry with the same
# Idempotency-Key answers what happened, or does it once.
DATABASE_DOWN_MESSAGE = (
    "the database cannot be reached; whether this request took effect is unknown: send it "
    "again with the same Idempotency-Key (which never applies it twice), or read the state first"
)
RETRY_AFTER_S = 1


def is_database_down(exc: BaseException) -> bool:
    """True for a connection-level failure of PostgreSQL (see the module docstring)."""
    return isinstance(exc, DATABASE_DOWN)


def describe(exc: BaseException) -> str:
    """One short line for a log: the class and the first line of the message, no traceback."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
