"""The asyncpg connection pool and the retry rule for transactions PostgreSQL aborted."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, TypeVar, cast

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from vnode.db.connect import connect, with_default_target

T = TypeVar("T")

# A plain connection or one borrowed from a pool; every query helper takes either.
DbConnection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"

# Aborted by PostgreSQL before anything committed, so running the whole transaction again is safe.
_RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
MAX_ATTEMPTS = 5


async def _no_reset(_conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """Nothing sets session state on pooled connections (the NOTIFY listener keeps its own),
    so the default reset, a second round trip on every release, is skipped."""


async def create_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 16,
    application_name: str = "vnode",
    read_only: bool = False,
) -> asyncpg.Pool:
    """A pool whose every new connection goes through vnode.db.connect: on a DSN of several
    hosts it finds the primary (or what `target_session_attrs` asks), skipping hosts that
    answer an error. asyncpg replaces a pooled connection that died (a restart, a failover,
    a terminated backend) at its next acquire, so the pool recovers by itself.

    No `command_timeout` and no `statement_timeout`: either could cancel a COMMIT waiting for a
    synchronous standby, which PostgreSQL then makes visible here before the standby has it
    (docs/adr/0023-database-failover-client-side.md).

    `read_only`: a read replica's pool (VNODE_DATABASE_READ_URL). Its sessions are read-only
    whatever server they reach, so a write handed to it by mistake fails instead of landing
    on a primary behind the read URL; on several hosts it prefers a standby.
    """
    settings = {"application_name": application_name}
    if read_only:
        settings["default_transaction_read_only"] = "on"
        dsn = with_default_target(dsn, "prefer-standby")
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        reset=_no_reset,
        # The stubs' protocol spells out every keyword of asyncpg.connect; ours passes them on.
        connect=cast(Any, connect),
        server_settings=settings,
    )
    assert pool is not None
    return pool


async def retry_aborted(operation: Callable[[], Awaitable[T]]) -> T:
    """Run a money transaction, again when PostgreSQL aborted it for a deadlock or a
    serialization failure; the one way vnode's money functions are called.

    Shielded from cancellation: a caller cancelled (a client gone, a shutdown past its drain)
    must not cancel the statement, because asyncpg would then send PostgreSQL a cancel, and
    a COMMIT waiting for a synchronous standby that is cancelled stays committed here while
    the standby may not have it (a failover would then lose an answered transfer). The
    transaction runs to its end; only its answer is dropped (docs/adr/0023)."""
    return await asyncio.shield(_retrying(operation))


async def _retrying(operation: Callable[[], Awaitable[T]]) -> T:
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return await operation()
        except _RETRYABLE:
            if attempt == MAX_ATTEMPTS:
                raise
            await asyncio.sleep(random.uniform(0, 0.005 * attempt))
    raise AssertionError("unreachable")
