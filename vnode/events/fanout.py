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

from vnode.db.pool import DbConnection
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
        columns = OUTBOX_COLUMNS if direct else "o.id AS outbox_id, o.user_id"
        rows = await conn.fetch(
            f"SELECT {columns} FROM outbox o WHERE o.fanned_out_at IS NULL "  # noqa: S608
            "ORDER BY o.id LIMIT $1 FOR UPDATE SKIP LOCKED",
            batch,
        )
        if not rows:
            return 0
        ids = [row["outbox_id"] for row in rows]
        if redis_enabled:
            sent: list[int] = []
            if direct:
                assert redis is not None
                sent = await _send_direct(conn, redis, rows)
            if redis is not None:
                redis.left_pending = len(ids) - len(sent)
            await conn.execute(
                "INSERT INTO event_deliveries "
                "  (outbox_id, channel, user_id, user_seq, status, attempts, delivered_at) "
                "SELECT id, 'redis', user_id, user_seq, "
                "  CASE WHEN id = ANY($2::bigint[]) THEN 'delivered' ELSE 'pending' END, "
                "  CASE WHEN id = ANY($2::bigint[]) THEN 1 ELSE 0 END, "
                "  CASE WHEN id = ANY($2::bigint[]) THEN clock_timestamp() END "
                "FROM outbox WHERE id = ANY($1::bigint[])",
                ids,
                sent,
            )
        await conn.execute(
            "INSERT INTO event_deliveries (outbox_id, channel, user_id, user_seq) "
            "SELECT o.id, 'webhook:' || w.id, o.user_id, o.user_seq "
            "FROM outbox o JOIN webhook_endpoints w ON w.removed_at IS NULL "
            "  AND (cardinality(w.event_types) = 0 OR o.event_type = ANY(w.event_types)) "
            "WHERE o.id = ANY($1::bigint[])",
            ids,
        )
        await conn.execute(
            "UPDATE outbox SET fanned_out_at = now() WHERE id = ANY($1::bigint[])", ids
        )
        return len(ids)


async def _send_direct(
    conn: DbConnection, redis: DirectRedis, rows: Sequence[asyncpg.Record]
) -> list[int]:
    """XADD the rows whose users have no earlier Redis delivery pending; returns their ids
    (none when Redis failed: then all of them are left pending)."""
    users = list({row["user_id"] for row in rows})
    # A user with a Redis delivery pending (its retry waits for a backoff, or the Redis loop
    # is sending it now, not yet committed) keeps its order only behind it: left pending.
    held = {
        r["user_id"]
        for r in await conn.fetch(
            "SELECT DISTINCT user_id FROM event_deliveries WHERE channel = 'redis' "
            "AND status = 'pending' AND user_id = ANY($1::bigint[])",
            users,
        )
    }
    events = [Event.from_row(row) for row in rows if row["user_id"] not in held]
    if not events or not await redis.send_all(events):
        return []
    return [event.outbox_id for event in events]
