"""Fan-out: every committed outbox row becomes one delivery per active channel.

One process fans out at a time (a transaction-scoped advisory lock; the others skip their
turn): were two to fan out at once, the second could commit a user's next event while the
first still held that user's earlier one, and the later event would be delivered first. Rows
are claimed with SKIP LOCKED all the same, and the deliveries' primary key refuses a double.
A channel added later receives the events committed after it was added.

Redis Streams in the same transaction (docs/adr/0030): with `redis` given, the batch's events
are XADDed before the fan-out commits, and their Redis deliveries are written as delivered,
unless the event's user has an earlier Redis delivery still pending (a retry waiting for its
backoff, or one being sent by the Redis loop): those, and the whole batch when Redis fails, are
written pending and left to the Redis loop, in order behind the user's earlier ones. One commit
fewer between an event and the stream. At least once: a fan-out that rolls back after its XADD
(its commit failed, the process died) is fanned out again and XADDed again; consumers dedupe by
event id (docs/EVENTS.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from vnode.events.delivery import Result
from vnode.events.envelope import OUTBOX_COLUMNS, Event

log = logging.getLogger(__name__)

FAN_OUT_BATCH = 1000
_FAN_OUT_LOCK = 0x766E6F6465466F  # pg advisory lock key: one fan-out at a time
# The fan-out's XADD holds the fan-out's transaction (and so the webhooks' fan-out): bounded,
# and after a failure the fan-out leaves Redis to the Redis loop (and its backoff) for a while.
DIRECT_SEND_TIMEOUT_S = 1.0
DIRECT_SEND_PAUSE_S = 5.0

# What the fan-out calls to XADD a batch in order (RedisStreamChannel.send).
RedisSend = Callable[[Sequence[Event]], Awaitable[list[Result]]]


class DirectRedis:
    """The fan-out's way to Redis: the channel's send, paused after a failure."""

    def __init__(self, send: RedisSend) -> None:
        self.send = send
        self.paused_until = 0.0
        # Of the last fan-out's batch, how many Redis deliveries it left pending.
        self.left_pending = 0

    @property
    def paused(self) -> bool:
        return time.monotonic() < self.paused_until

    async def send_all(self, events: Sequence[Event]) -> bool:
        """XADD every event, in order; False when any was not sent (all are then retried)."""
        try:
            async with asyncio.timeout(DIRECT_SEND_TIMEOUT_S):
                results = await self.send(events)
        except TimeoutError:
            results = [Result(e.outbox_id, "redis: timed out") for e in events]
        failed = [r for r in results if r.error is not None]
        if failed or len(results) != len(events):
            self.paused_until = time.monotonic() + DIRECT_SEND_PAUSE_S
            log.warning(
                "Redis refused the fan-out's batch; the Redis loop retries it",
                extra={"events": len(events), "error": (failed[0].error if failed else "")},
            )
            return False
        return True


_CLAIM = (
    "SELECT o.id AS outbox_id FROM outbox o WHERE o.fanned_out_at IS NULL "
    "ORDER BY o.id LIMIT $1 FOR UPDATE SKIP LOCKED"
)
# The same, with what an envelope needs, and `held`: the user has a Redis delivery pending (a
# retry waiting for its backoff, or one the Redis loop is sending now, not yet committed), so
# its events keep their order only behind it, left pending for the Redis loop.
_CLAIM_DIRECT = f"""
    SELECT {OUTBOX_COLUMNS}, EXISTS (
        SELECT 1 FROM event_deliveries e
        WHERE e.channel = 'redis' AND e.status = 'pending' AND e.user_id = o.user_id) AS held
    FROM outbox o WHERE o.fanned_out_at IS NULL
    ORDER BY o.id LIMIT $1 FOR UPDATE OF o SKIP LOCKED"""  # noqa: S608 - a constant
# $1 the batch's outbox ids, $2 which of them Redis took, $3 whether Redis is a channel.
_RECORD = """
    WITH batch AS (
        SELECT o.id, o.user_id, o.user_seq, o.event_type, b.sent
        FROM unnest($1::bigint[], $2::bool[]) AS b(id, sent) JOIN outbox o ON o.id = b.id
    ), to_redis AS (
        INSERT INTO event_deliveries
            (outbox_id, channel, user_id, user_seq, status, attempts, delivered_at)
        SELECT id, 'redis', user_id, user_seq,
               CASE WHEN sent THEN 'delivered' ELSE 'pending' END,
               CASE WHEN sent THEN 1 ELSE 0 END,
               CASE WHEN sent THEN clock_timestamp() END
        FROM batch WHERE $3
    ), to_webhooks AS (
        INSERT INTO event_deliveries (outbox_id, channel, user_id, user_seq)
        SELECT b.id, 'webhook:' || w.id, b.user_id, b.user_seq
        FROM batch b JOIN webhook_endpoints w ON w.removed_at IS NULL
          AND (cardinality(w.event_types) = 0 OR b.event_type = ANY(w.event_types))
    )
    UPDATE outbox SET fanned_out_at = now() WHERE id = ANY($1::bigint[])"""


async def fan_out_once(
    pool: asyncpg.Pool,
    *,
    redis_enabled: bool,
    batch: int = FAN_OUT_BATCH,
    redis: DirectRedis | None = None,
) -> int:
    """Fan out one batch; returns how many outbox rows it took. `redis` (with `redis_enabled`):
    XADD them in the transaction (the module's docstring)."""
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _FAN_OUT_LOCK):
            return 0  # another process is fanning out right now
        direct = redis_enabled and redis is not None and not redis.paused
        rows = await conn.fetch(_CLAIM_DIRECT if direct else _CLAIM, batch)
        if not rows:
            return 0
        ids = [row["outbox_id"] for row in rows]
        sent: set[int] = set()
        if direct:
            assert redis is not None
            sent = await _send_direct(redis, rows)
        if redis is not None:
            redis.left_pending = len(ids) - len(sent) if redis_enabled else 0
        # One statement for the batch's deliveries and its outbox rows: each round trip on the
        # fan-out's path also waits for the interpreter lock (docs/adr/0030).
        await conn.execute(_RECORD, ids, [i in sent for i in ids], redis_enabled)
        return len(ids)


async def _send_direct(redis: DirectRedis, rows: Sequence[asyncpg.Record]) -> set[int]:
    """XADD the rows whose users have no earlier Redis delivery pending (`held`); returns their
    ids (none when Redis failed: then all of them are left pending)."""
    events = [Event.from_row(row) for row in rows if not row["held"]]
    if not events or not await redis.send_all(events):
        return set()
    return {event.outbox_id for event in events}
