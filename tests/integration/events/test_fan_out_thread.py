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
from tests.integration.events.test_dispatcher import emit_grid
from tests.integration.events.test_redis_streams import read_stream
from tests.support import wait_until
from vnode.db.pool import create_pool
from vnode.events.fanout_thread import FanOutThread
from vnode.settings import Settings


@pytest.fixture
async def pool(fresh_db: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(fresh_db, min_size=1, max_size=4)
    yield pool
    await pool.close()


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
    first = FanOutThread(settings, fresh_db, None)
    await first.start()
    try:

        async def some_streamed() -> bool:
            return bool(await stream(redis_url, key))

        await wait_until(some_streamed, 20, "the first entries")
    finally:
        await first.stop()
    partial = len(await stream(redis_url, key))

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
    assert partial < total <= len(entries)  # the second thread had work left; none lost
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
