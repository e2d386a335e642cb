"""The fan-out's XADD in its own transaction (docs/adr/0030), on a real database with a test
sender in place of Redis: delivered in the fan-out's commit, except behind a user's earlier
pending Redis delivery (left pending, delivered after it by the Redis loop), and all of the
batch left pending when Redis fails. A fan-out that rolls back after its XADD sends again."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.integration.events.test_dispatcher import Recorder, delivery, emit, make_due
from tests.support import close_pool
from vnode.db.pool import create_pool
from vnode.events.delivery import deliver_once
from vnode.events.fanout import DirectRedis, fan_out_once


@pytest.fixture
async def pool(fresh_db: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(fresh_db, min_size=1, max_size=4)
    yield pool
    await close_pool(pool)


async def statuses(pool: asyncpg.Pool) -> dict[int, str]:
    rows = await pool.fetch(
        "SELECT outbox_id, status FROM event_deliveries WHERE channel = 'redis'"
    )
    return {r["outbox_id"]: r["status"] for r in rows}


async def test_the_fan_out_sends_and_records_delivered_in_one_commit(pool: asyncpg.Pool) -> None:
    ids = [await emit(pool, user) for user in (1, 2, 1, 3, 2)]
    redis = Recorder()
    direct = DirectRedis(redis.send)

    assert await fan_out_once(pool, redis_enabled=True, redis=direct) == 5

    assert [e.outbox_id for e in redis.attempts] == ids  # one batch, in outbox order
    assert await statuses(pool) == dict.fromkeys(ids, "delivered")
    assert direct.left_pending == 0
    row = await delivery(pool, ids[0])
    assert row["attempts"] == 1
    assert await deliver_once(pool, "redis", Recorder().send) == 0  # nothing left to send


async def test_a_user_with_an_earlier_pending_delivery_is_left_to_the_redis_loop_in_order(
    pool: asyncpg.Pool,
) -> None:
    first = await emit(pool, 7)
    down = Recorder(fail=lambda event: "redis: down")
    await fan_out_once(pool, redis_enabled=True, redis=DirectRedis(down.send))
    assert await statuses(pool) == {first: "pending"}  # Redis refused: kept for the loop
    await deliver_once(pool, "redis", down.send)  # a retry fails too: backoff holds user 7
    assert (await delivery(pool, first))["attempts"] == 1

    second, other = await emit(pool, 7), await emit(pool, 8)
    redis = Recorder()
    direct = DirectRedis(redis.send)
    await fan_out_once(pool, redis_enabled=True, redis=direct)

    assert [e.outbox_id for e in redis.attempts] == [other]  # user 7 is not sent ahead
    assert await statuses(pool) == {first: "pending", second: "pending", other: "delivered"}
    assert direct.left_pending == 1
    await make_due(pool)
    loop = Recorder()
    assert await deliver_once(pool, "redis", loop.send) == 2
    assert [e.outbox_id for e in loop.attempts] == [first, second]


async def test_redis_failing_leaves_the_whole_batch_pending_and_pauses_direct_sends(
    pool: asyncpg.Pool,
) -> None:
    ids = [await emit(pool, user) for user in (1, 2)]
    down = Recorder(fail=lambda event: "redis: connection refused" if event.user_id == 2 else None)
    direct = DirectRedis(down.send)

    assert await fan_out_once(pool, redis_enabled=True, redis=direct) == 2

    assert await statuses(pool) == dict.fromkeys(ids, "pending")  # at least once: all again
    assert direct.paused and direct.left_pending == 2
    later = await emit(pool, 3)
    await fan_out_once(pool, redis_enabled=True, redis=direct)
    assert len(down.attempts) == 2  # paused: the fan-out did not try Redis again
    assert (await statuses(pool))[later] == "pending"
    loop = Recorder()
    assert await deliver_once(pool, "redis", loop.send) == 3
    assert [e.outbox_id for e in loop.attempts] == [*ids, later]


async def test_a_fan_out_rolled_back_after_its_xadd_sends_again(
    pool: asyncpg.Pool, fresh_db: str
) -> None:
    """At least once: the fan-out's transaction fails after Redis took the batch (here a
    test-only trigger refuses its outbox update); nothing is recorded, the next fan-out sends
    the same events again (consumers dedupe by event id)."""
    event = await emit(pool, 5)
    admin = await asyncpg.connect(fresh_db)
    try:
        await admin.execute("""
            CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'refused for the test'; END $$;
            CREATE TRIGGER test_refuse BEFORE UPDATE ON outbox
            FOR EACH ROW EXECUTE FUNCTION test_refuse();""")
        redis = Recorder()
        with pytest.raises(asyncpg.RaiseError):
            await fan_out_once(pool, redis_enabled=True, redis=DirectRedis(redis.send))
        assert [e.outbox_id for e in redis.attempts] == [event]
        assert await statuses(pool) == {}
        await admin.execute("DROP TRIGGER test_refuse ON outbox")
    finally:
        await admin.close()

    await fan_out_once(pool, redis_enabled=True, redis=DirectRedis(redis.send))
    assert [e.outbox_id for e in redis.attempts] == [event, event]
    assert await statuses(pool) == {event: "delivered"}
