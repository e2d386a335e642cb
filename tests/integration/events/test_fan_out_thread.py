"""The fan-out and Redis Streams on a loop of their own (vnode/events/fanout_thread.py, docs/adr/
0027), on a real database and a real redis-server: every committed event reaches the stream in
each user's order; stopping the thread in the middle of a backlog loses nothing and a new one
finishes it, each user's events first seen in order; it closes its connections when it stops;
a thread that cannot reach the database fails its start instead of running without a fan-out.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import make_settings
from tests.integration.events.test_dispatcher import emit, emit_grid
from tests.integration.events.test_redis_streams import read_stream
from tests.integration.ledger.support import NO_KEY, SIGNER
from tests.support import close_pool, wait_until
from vnode.db.pool import create_pool
from vnode.events.fanout import FAN_OUT_BATCH
from vnode.events.fanout_thread import FanOutThread
from vnode.ledger.admin import AdminCommand, AdminMove, admin_move
from vnode.settings import Settings


@pytest.fixture
async def pool(fresh_db: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(fresh_db, min_size=1, max_size=4)
    yield pool
    await close_pool(pool)


def settings_for(tmp_path: Path, redis_url: str, key: str) -> Settings:
    return make_settings(
        tmp_path, redis_url=redis_url, redis_stream_key=key, events_interval_s=0.02
    )


async def stream(redis_url: str, key: str) -> list[tuple[int, int, str]]:
    """(user_id, seq, event id) of every entry, in stream order."""
    return [
        (int(f["user_id"]), int(f["seq"]), f["id"]) for _, f in await read_stream(redis_url, key)
    ]


def first_seen_by_user(entries: list[tuple[int, int, str]]) -> dict[int, list[int]]:
    seen: set[str] = set()
    by_user: dict[int, list[int]] = defaultdict(list)
    for user, seq, event_id in entries:
        if event_id not in seen:
            seen.add(event_id)
            by_user[user].append(seq)
    return dict(by_user)


async def test_every_event_reaches_the_stream_in_order_and_the_thread_stops_cleanly(
    tmp_path: Path, fresh_db: str, pool: asyncpg.Pool, redis_url: str
) -> None:
    key = f"vnode:test:{secrets.token_hex(6)}"
    thread = FanOutThread(settings_for(tmp_path, redis_url, key), fresh_db, None)
    await thread.start()
    try:
        total = await emit_grid(pool, users=20, per_user=10)

        async def all_streamed() -> bool:
            return len(await stream(redis_url, key)) >= total

        await wait_until(all_streamed, 20, "every event in the stream")
    finally:
        await thread.stop()
    assert not thread.alive
    entries = await stream(redis_url, key)
    assert len(entries) == total  # none twice when nothing failed
    assert first_seen_by_user(entries) == {u: list(range(1, 11)) for u in range(1, 21)}
    assert not await pool.fetchval(
        "SELECT count(*) FROM event_deliveries WHERE channel = 'redis' AND status <> 'delivered'"
    )

    async def its_connections_closed() -> bool:  # this database's: other tests run beside it
        return not await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'vnode-fan-out' "
            "AND datname = current_database()"
        )

    await wait_until(its_connections_closed, 10, "the thread's connections to close")


async def test_stopped_mid_backlog_a_new_thread_delivers_the_rest_in_order(
    tmp_path: Path, fresh_db: str, pool: asyncpg.Pool, redis_url: str
) -> None:
    key = f"vnode:test:{secrets.token_hex(6)}"
    settings = settings_for(tmp_path, redis_url, key)
    users, per_user = 50, 60
    total = await emit_grid(pool, users, per_user)  # 3,000: several fan-out batches
    # The first thread stops in the middle of the backlog: a test-only trigger holds the fan-out
    # of everything after the first batch (its XADD done, its inserts waiting: rolled back when
    # the thread stops, so sent again by the second thread, at least once). Each wait gives up
    # after half a second and the fan-out tries again: a stop's cancel that reaches the server
    # just before the statement does is lost, and the stop waited 30 s for the held statement
    # (about one run in six).
    first_batch_end = await pool.fetchval("SELECT min(id) + $1 - 1 FROM outbox", FAN_OUT_BATCH)
    holder = await asyncpg.connect(fresh_db)
    await holder.execute(f"""
        CREATE FUNCTION test_hold() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM set_config('lock_timeout', '500ms', true);
            PERFORM pg_advisory_xact_lock_shared(4243);
            RETURN NEW;
        END $$;
        CREATE TRIGGER test_hold BEFORE INSERT ON event_deliveries FOR EACH ROW
        WHEN (NEW.outbox_id > {first_batch_end}) EXECUTE FUNCTION test_hold();""")
    await holder.execute("SELECT pg_advisory_lock(4243)")
    first = FanOutThread(settings, fresh_db, None)
    await first.start()
    try:

        async def first_batch_committed() -> bool:  # in the stream is not yet committed
            return bool(
                await pool.fetchval("SELECT count(*) FROM outbox WHERE fanned_out_at IS NOT NULL")
            )

        await wait_until(first_batch_committed, 20, "the first batch")
    finally:
        await first.stop()
        # Unlocked first: the stopped thread's backend may still wait on the lock (its client
        # is gone, so its transaction rolls back once it runs on), and the DROP waits for it.
        await holder.execute("SELECT pg_advisory_unlock(4243)")
        await holder.execute("DROP TRIGGER test_hold ON event_deliveries")
        await holder.close()
    # The first thread left work: what it had not committed (the stream may hold some of it, and
    # more than once: each held attempt XADDed its batch before its inserts gave up).
    left = await pool.fetchval("SELECT count(*) FROM outbox WHERE fanned_out_at IS NULL")

    second = FanOutThread(settings, fresh_db, None)
    await second.start()
    try:

        async def everything_delivered() -> bool:
            return not await pool.fetchval(
                "SELECT (SELECT count(*) FROM outbox WHERE fanned_out_at IS NULL) + "
                "(SELECT count(*) FROM event_deliveries WHERE status <> 'delivered')"
            )

        await wait_until(everything_delivered, 30, "the rest delivered by the second thread")
    finally:
        await second.stop()
    entries = await stream(redis_url, key)
    assert 0 < left < total  # stopped in the middle of the backlog
    assert len({event_id for _, _, event_id in entries}) == total  # none lost
    assert first_seen_by_user(entries) == {
        u: list(range(1, per_user + 1)) for u in range(1, users + 1)
    }


async def test_a_thread_that_cannot_reach_the_database_fails_its_start(
    tmp_path: Path, redis_url: str
) -> None:
    settings = settings_for(tmp_path, redis_url, "vnode:test:unused")
    thread = FanOutThread(settings, "postgresql://nobody@127.0.0.1:9/none", None)
    with pytest.raises(RuntimeError, match="could not start"):
        await thread.start()
    assert not thread.alive


def slow_poll_settings(tmp_path: Path, redis_url: str, key: str, interval_s: float) -> Settings:
    return make_settings(
        tmp_path, redis_url=redis_url, redis_stream_key=key, events_interval_s=interval_s
    )


async def test_a_commit_wakes_the_fan_out_before_its_next_poll(
    tmp_path: Path, fresh_db: str, pool: asyncpg.Pool, redis_url: str
) -> None:
    """With a poll of 60 s, an event is in the stream within seconds of the wake-up that a
    commit of outbox rows sends (vnode/events/wakeup.py; docs/adr/0030)."""
    key = f"vnode:test:{secrets.token_hex(6)}"
    first = await emit(pool, 1)
    thread = FanOutThread(slow_poll_settings(tmp_path, redis_url, key, 60.0), fresh_db, None)
    await thread.start()
    try:
        await wait_until(lambda: delivered(pool, first), 20, "the first pass to deliver it")
        # A money call (an admin credit, through call_money_function) commits the next event and
        # sends the wake-up; the test sends none of its own.
        credited = await admin_move(
            pool, SIGNER, AdminCommand(AdminMove.CREDIT, 2, "BTC", 1000, "wake"), NO_KEY
        )
        assert credited.code == "ok", credited
        second = await pool.fetchval("SELECT max(id) FROM outbox WHERE user_id = 2")
        # Delivered: in the stream and recorded (the XADD comes before the fan-out's commit).
        await wait_until(lambda: delivered(pool, second), 10, "the woken fan-out to deliver it")
    finally:
        await thread.stop()
    assert [(user, seq) for user, seq, _ in await stream(redis_url, key)] == [(1, 1), (2, 1)]


async def delivered(pool: asyncpg.Pool, outbox_id: int) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT count(*) FROM event_deliveries WHERE channel = 'redis' "
            "AND status = 'delivered' AND outbox_id = $1",
            outbox_id,
        )
    )


async def test_without_a_wake_up_the_poll_still_delivers(
    tmp_path: Path, fresh_db: str, pool: asyncpg.Pool, redis_url: str
) -> None:
    """A wake-up is a hint: events committed with none (another process, a wake-up lost) are
    fanned out and streamed by the next poll."""
    key = f"vnode:test:{secrets.token_hex(6)}"
    thread = FanOutThread(slow_poll_settings(tmp_path, redis_url, key, 0.5), fresh_db, None)
    await thread.start()
    try:
        await emit(pool, 2)  # committed by SQL alone: OUTBOX.committed() is never called

        async def streamed() -> bool:
            return len(await stream(redis_url, key)) == 1

        await wait_until(streamed, 20, "the poll to stream the event")
    finally:
        await thread.stop()
