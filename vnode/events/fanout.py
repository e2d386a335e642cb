"""Fan-out: every committed outbox row becomes one pending delivery per active channel.

One process fans out at a time (a transaction-scoped advisory lock; the others skip their
turn): were two to fan out at once, the second could commit a user's next event while the
first still held that user's earlier one, and the later event would be delivered first. Rows
are claimed with SKIP LOCKED all the same, and the deliveries' primary key refuses a double.
A channel added later receives the events committed after it was added.
"""

from __future__ import annotations

import asyncpg

FAN_OUT_BATCH = 1000
_FAN_OUT_LOCK = 0x766E6F6465466F  # pg advisory lock key: one fan-out at a time


async def fan_out_once(
    pool: asyncpg.Pool, *, redis_enabled: bool, batch: int = FAN_OUT_BATCH
) -> int:
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _FAN_OUT_LOCK):
            return 0  # another process is fanning out right now
        rows = await conn.fetch(
            "SELECT id, event_type, user_id, user_seq FROM outbox WHERE fanned_out_at IS NULL "
            "ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            batch,
        )
        if not rows:
            return 0
        ids = [row["id"] for row in rows]
        if redis_enabled:
            await conn.execute(
                "INSERT INTO event_deliveries (outbox_id, channel, user_id, user_seq) "
                "SELECT id, 'redis', user_id, user_seq FROM outbox WHERE id = ANY($1::bigint[])",
                ids,
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
