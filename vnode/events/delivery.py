"""Delivering one channel's pending events: in order per user, at least once, with backoff.

One process at a time delivers a given channel (an advisory lock on the channel's key,
transaction-scoped in `deliver_once`, session-level in `deliver_pipelined`, each excluding the
other; the others skip the channel), so an event never goes to a channel twice at the same
moment. `deliver_once` reads, sends and acknowledges one batch (Redis Streams);
`deliver_pipelined` keeps two smaller batches in flight (webhooks, where a batch waits on HTTP
round trips). A user's next event waits while an earlier one is pending; other users' events go
on. A failed delivery is retried with exponential backoff and becomes dead (the dead-letter
list) after `dead_after_s`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass

import asyncpg

from vnode.db.pool import DbConnection
from vnode.events.envelope import OUTBOX_COLUMNS, Event

log = logging.getLogger(__name__)

MIN_BACKOFF_S = 1.0
MAX_BACKOFF_S = 3600.0
DEAD_AFTER_S = 26 * 3600  # retried for more than 24 hours before the dead-letter list
DELIVERY_BATCH = 500  # events read, sent and acknowledged together by deliver_once
# deliver_pipelined (webhooks): smaller batches, two in flight, so that no event waits for a
# batch of 500 before it and the next batch is read while one is sent (docs/adr/0027).
PIPELINE_BATCH = 100
PIPELINE_DEPTH = 2
PIPELINE_PASS_S = 2.0


@dataclass(frozen=True)
class Result:
    """One delivery's outcome: None error means delivered."""

    outbox_id: int
    error: str | None = None


# Sends a batch in order; returns one Result per event it attempted. An event it did not
# attempt (it stopped a user's chain after a failure) stays pending untouched.
Sender = Callable[[Sequence[Event]], Awaitable[list[Result]]]


def backoff_s(attempts: int) -> float:
    return float(min(MIN_BACKOFF_S * 2.0 ** max(attempts - 1, 0), MAX_BACKOFF_S))


def channel_lock_key(channel: str) -> int:
    """The advisory lock held while a channel is being delivered."""
    return int.from_bytes(
        hashlib.sha256(f"vnode-delivery:{channel}".encode()).digest()[:8], "big", signed=True
    )


# Walks event_deliveries_pending_order (channel, outbox_id) from the channel's oldest pending
# event and stops at the LIMIT (migration 0019; EXPLAIN in docs/PERFORMANCE.md, "Issue 13,
# delivery (session 6)"). $3: users with a delivery in flight in this process, skipped.
_DUE = f"""
    SELECT {OUTBOX_COLUMNS}, d.attempts, d.created_at AS first_tried_at
    FROM event_deliveries d JOIN outbox o ON o.id = d.outbox_id
    WHERE d.channel = $1 AND d.status = 'pending' AND d.next_attempt_at <= now()
      AND d.user_id <> ALL($3::bigint[])
      AND NOT EXISTS (
          SELECT 1 FROM event_deliveries e
          WHERE e.channel = d.channel AND e.user_id = d.user_id AND e.status = 'pending'
            AND e.user_seq < d.user_seq AND e.next_attempt_at > now()
          -- OFFSET 0 keeps this a per-row lookup by (channel, user_id, user_seq): planned as
          -- an anti-join on statistics from before a burst, it compared every pending row
          -- with every other (74 s per call with 20,000 pending; bench/events.py).
          OFFSET 0)
    ORDER BY d.outbox_id LIMIT $2"""  # noqa: S608 - a constant; only values are parameters


async def _due(
    conn: DbConnection, channel: str, batch: int, busy_users: Collection[int] = ()
) -> list[asyncpg.Record]:
    return list(await conn.fetch(_DUE, channel, batch, list(busy_users)))


async def _record(
    conn: DbConnection,
    channel: str,
    rows: Sequence[asyncpg.Record],
    results: Sequence[Result],
    dead_after_s: float,
) -> int:
    """Write a batch's outcomes (one statement for its deliveries, one for its failures);
    returns how many were delivered. An event the sender did not attempt stays untouched."""
    attempts = {row["outbox_id"]: row["attempts"] for row in rows}
    delivered = [r.outbox_id for r in results if r.error is None]
    failed = [r for r in results if r.error is not None]
    tries = [attempts[f.outbox_id] + 1 for f in failed]
    if delivered:
        await conn.execute(
            "UPDATE event_deliveries SET status = 'delivered', "
            "delivered_at = clock_timestamp(), attempts = attempts + 1, last_error = NULL "
            "WHERE channel = $1 AND outbox_id = ANY($2::bigint[]) AND status = 'pending'",
            channel,
            delivered,
        )
    if failed:
        # One statement for every failure of the batch, each with its own count and backoff.
        await conn.execute(
            "UPDATE event_deliveries d SET attempts = f.tries, last_error = f.error, "
            "next_attempt_at = now() + make_interval(secs => f.backoff), "
            "status = CASE WHEN d.created_at < now() - make_interval(secs => $2) "
            "              THEN 'dead' ELSE 'pending' END "
            "FROM unnest($3::bigint[], $4::int[], $5::text[], $6::float8[]) "
            "     AS f(outbox_id, tries, error, backoff) "
            "WHERE d.channel = $1 AND d.outbox_id = f.outbox_id AND d.status = 'pending'",
            channel,
            dead_after_s,
            [f.outbox_id for f in failed],
            tries,
            [(f.error or "")[:500] for f in failed],
            [backoff_s(t) for t in tries],
        )
    for result, tries_now in zip(failed, tries, strict=True):
        log.warning(
            "event delivery failed",
            extra={
                "channel": channel,
                "outbox_id": result.outbox_id,
                "attempts": tries_now,
                "error": (result.error or "")[:200],
            },
        )
    return len(delivered)


async def deliver_once(
    pool: asyncpg.Pool,
    channel: str,
    send: Sender,
    *,
    batch: int = DELIVERY_BATCH,
    dead_after_s: float = DEAD_AFTER_S,
) -> int:
    """Deliver one batch of what is due on `channel`; returns how many events were delivered."""
    async with pool.acquire() as conn, conn.transaction():
        locked = await conn.fetchval(
            "SELECT pg_try_advisory_xact_lock($1)", channel_lock_key(channel)
        )
        if not locked:
            return 0  # another process is delivering this channel right now
        rows = await _due(conn, channel, batch)
        if not rows:
            return 0
        results = await send([Event.from_row(row) for row in rows])
        return await _record(conn, channel, rows, results, dead_after_s)


@dataclass
class _InFlight:
    rows: list[asyncpg.Record]
    users: frozenset[int]
    sending: asyncio.Future[list[Result]]


async def deliver_pipelined(
    pool: asyncpg.Pool,
    channel: str,
    send: Sender,
    *,
    batch: int = PIPELINE_BATCH,
    depth: int = PIPELINE_DEPTH,
    pass_s: float = PIPELINE_PASS_S,
    dead_after_s: float = DEAD_AFTER_S,
) -> int:
    """Deliver what is due on `channel`, `depth` batches in flight: the next batch is read and
    sent while the one before it is still being sent or acknowledged. Returns the deliveries.

    Per-user order: a batch never holds a user whose events are in a batch still in flight
    (not yet acknowledged), so a user's events are sent by one batch at a time, in order, and a
    failure is recorded (its backoff holds the user's later events back) before the next batch
    is read. At least once: a batch is acknowledged after it was sent; what was sent but not
    acknowledged (a crash, a cancellation) stays pending and is sent again.

    One deliverer per channel: the pass's connection holds the channel's advisory lock at
    session level, reads and acknowledges in autocommit (each batch's acknowledgement committed
    as soon as it is sent), and unlocks at the end. Not a transaction-scoped lock: a transaction
    open for the whole pass held back PostgreSQL's xmin horizon (dead rows and index entries
    could not be pruned while it lasted; bench/events.py measured PostgreSQL at 1.0-1.2 cores
    instead of 0.75, docs/PERFORMANCE.md). A pass reads new batches for `pass_s`, then
    finishes what is in flight and returns, so endpoint changes are seen."""
    key = channel_lock_key(channel)
    async with pool.acquire() as conn:
        try:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
                return 0  # another process is delivering this channel right now
            try:
                return await _pipeline(conn, channel, send, batch, depth, pass_s, dead_after_s)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", key)
        except BaseException:
            # Cancelled or failed, perhaps with the lock still held (mid-statement, or the
            # unlock did not run): the pool does not reset connections (vnode/db/pool.py), so
            # a lock left on one would stop this channel for good. Closing the connection ends
            # its session and every lock with it; the pool opens another.
            if not _gone(conn):
                conn.terminate()
            raise


def _gone(conn: DbConnection) -> bool:
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:
        return True  # the pool took it back when it closed (asyncpg detaches the proxy)


async def _pipeline(
    conn: DbConnection,
    channel: str,
    send: Sender,
    batch: int,
    depth: int,
    pass_s: float,
    dead_after_s: float,
) -> int:
    loop = asyncio.get_running_loop()
    until = loop.time() + pass_s
    in_flight: deque[_InFlight] = deque()
    busy: set[int] = set()  # users of the batches in flight
    delivered = 0
    more = True  # a full batch came last, or one was acknowledged since: read again
    try:
        while True:
            while more and len(in_flight) < depth and loop.time() < until:
                rows = await _due(conn, channel, batch, busy)
                more = len(rows) == batch
                if not rows:
                    break
                users = frozenset(row["user_id"] for row in rows)
                busy |= users
                sending = asyncio.ensure_future(send([Event.from_row(row) for row in rows]))
                in_flight.append(_InFlight(rows, users, sending))
            if not in_flight:
                return delivered
            oldest = in_flight[0]
            results = await oldest.sending
            async with conn.transaction():  # one commit for its deliveries and failures
                delivered += await _record(conn, channel, oldest.rows, results, dead_after_s)
            in_flight.popleft()
            busy -= oldest.users
            more = True
    finally:
        # Cancelled or failed: what is in flight is not acknowledged, so it stays pending.
        for left in in_flight:
            left.sending.cancel()
        await asyncio.gather(*(left.sending for left in in_flight), return_exceptions=True)


async def retry_dead(pool: asyncpg.Pool, channel: str | None = None) -> int:
    """Put dead deliveries back in the queue (all channels, or one)."""
    result = await pool.execute(
        "UPDATE event_deliveries SET status = 'pending', next_attempt_at = now(), "
        "created_at = now() WHERE status = 'dead' AND ($1::text IS NULL OR channel = $1)",
        channel,
    )
    return int(result.split()[-1])
