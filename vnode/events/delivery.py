"""Delivering one channel's pending events: in order per user, at least once, with backoff.

One process at a time delivers a given channel (a transaction-scoped advisory lock; the others
skip it), so an event never goes to a channel twice at the same moment. A user's next event
waits while an earlier one is pending; other users' events go on. A failed delivery is retried
with exponential backoff and becomes dead (the dead-letter list) after `dead_after_s`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg

from vnode.events.envelope import OUTBOX_COLUMNS, Event

log = logging.getLogger(__name__)

MIN_BACKOFF_S = 1.0
MAX_BACKOFF_S = 3600.0
DEAD_AFTER_S = 26 * 3600  # retried for more than 24 hours before the dead-letter list
DELIVERY_BATCH = 500  # events read, sent and acknowledged together


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


_DUE = f"""
    SELECT {OUTBOX_COLUMNS}, d.attempts, d.created_at AS first_tried_at
    FROM event_deliveries d JOIN outbox o ON o.id = d.outbox_id
    WHERE d.channel = $1 AND d.status = 'pending' AND d.next_attempt_at <= now()
      AND NOT EXISTS (
          SELECT 1 FROM event_deliveries e
          WHERE e.channel = d.channel AND e.user_id = d.user_id AND e.status = 'pending'
            AND e.user_seq < d.user_seq AND e.next_attempt_at > now()
          -- OFFSET 0 keeps this a per-row lookup by (channel, user_id, user_seq): planned as
          -- an anti-join on statistics from before a burst, it compared every pending row
          -- with every other (74 s per call with 20,000 pending; bench/events.py).
          OFFSET 0)
    ORDER BY d.outbox_id LIMIT $2"""  # noqa: S608 - a constant; only values are parameters


async def deliver_once(
    pool: asyncpg.Pool,
    channel: str,
    send: Sender,
    *,
    batch: int = DELIVERY_BATCH,
    dead_after_s: float = DEAD_AFTER_S,
) -> int:
    """Deliver what is due on `channel`; returns how many events were delivered."""
    async with pool.acquire() as conn, conn.transaction():
        locked = await conn.fetchval(
            "SELECT pg_try_advisory_xact_lock($1)", channel_lock_key(channel)
        )
        if not locked:
            return 0  # another process is delivering this channel right now
        rows = await conn.fetch(_DUE, channel, batch)
        if not rows:
            return 0
        events = [Event.from_row(row) for row in rows]
        results = await send(events)
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


async def retry_dead(pool: asyncpg.Pool, channel: str | None = None) -> int:
    """Put dead deliveries back in the queue (all channels, or one)."""
    result = await pool.execute(
        "UPDATE event_deliveries SET status = 'pending', next_attempt_at = now(), "
        "created_at = now() WHERE status = 'dead' AND ($1::text IS NULL OR channel = $1)",
        channel,
    )
    return int(result.split()[-1])
