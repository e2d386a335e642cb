"""Fan-out: every committed outbox row becomes one pending delivery per active channel.

Rows are claimed with SKIP LOCKED, so several processes can fan out at once without doubling
a delivery (the deliveries' primary key would refuse it anyway). A channel added later receives
the events committed after it was added.
"""

from __future__ import annotations

import asyncpg

FAN_OUT_BATCH = 1000


async def fan_out_once(pool: asyncpg.Pool, *, redis_enabled: bool,
                       batch: int = FAN_OUT_BATCH) -> int:
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "SELECT id, event_type, user_id, user_seq FROM outbox WHERE fanned_out_at IS NULL "
            "ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED", batch)
        if not rows:
            return 0
        ids = [row["id"] for row in rows]
        if redis_enabled:
            await conn.execute(
                "INSERT INTO event_deliveries (outbox_id, channel, user_id, user_seq) "
                "SELECT id, 'redis', user_id, user_seq FROM outbox WHERE id = ANY($1::bigint[])",
                ids)
        await conn.execute(
            "INSERT INTO event_deliveries (outbox_id, channel, user_id, user_seq) "
            "SELECT o.id, 'webhook:' || w.id, o.user_id, o.user_seq "
            "FROM outbox o JOIN webhook_endpoints w ON w.removed_at IS NULL "
            "  AND (cardinality(w.event_types) = 0 OR o.event_type = ANY(w.event_types)) "
            "WHERE o.id = ANY($1::bigint[])", ids)
        await conn.execute("UPDATE outbox SET fanned_out_at = now() WHERE id = ANY($1::bigint[])",
                           ids)
        return len(ids)
