"""Pipelined delivery (`deliver_pipelined`, the webhooks' path; docs/adr/0027) on a real
database: two batches in flight at once, yet a user is never in two of them, each user's events
go in seq order, a failure holds that user's later events back across batches, one deliverer per
channel, and a pass cancelled mid-flight (as at a shutdown or a crash) leaves what it sent
unacknowledged and pending, to be sent again, in order.

A test sender stands in for the HTTP posts (the database and vnode's code are the real ones).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import asyncpg
import pytest

from tests.integration.events.test_dispatcher import (
    Recorder,
    add_endpoint,
    emit_grid,
    fan_out_all,
    make_due,
)
from tests.support import close_pool, wait_until
from vnode.db.pool import create_pool
from vnode.events.delivery import Result, deliver_pipelined
from vnode.events.envelope import Event


@pytest.fixture
async def pool(fresh_db: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(fresh_db, min_size=1, max_size=12)
    yield pool
    await close_pool(pool)


@dataclass
class UserWatch:
    """Wraps a Recorder: notes every time a user is in two batches being sent at once."""

    inner: Recorder
    sending: Counter[int] = field(default_factory=Counter)
    doubled: list[int] = field(default_factory=list)

    async def send(self, events: Sequence[Event]) -> list[Result]:
        users = {e.user_id for e in events}
        self.doubled.extend(u for u in users if self.sending[u])
        self.sending.update(users)
        try:
            return await self.inner.send(events)
        finally:
            self.sending.subtract(users)


async def pending(pool: asyncpg.Pool, channel: str) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM event_deliveries WHERE channel = $1 AND status = 'pending'",
            channel,
        )
    )


async def test_two_batches_in_flight_each_user_in_one_and_in_order(pool: asyncpg.Pool) -> None:
    channel = f"webhook:{await add_endpoint(pool)}"
    users, per_user = 30, 10
    total = await emit_grid(pool, users, per_user)
    await fan_out_all(pool)
    sender = UserWatch(Recorder(io_s=0.01))

    delivered = await deliver_pipelined(pool, channel, sender.send, batch=20, pass_s=60)

    assert delivered == total
    assert sender.inner.max_calls_in_flight == 2  # the next batch went while one was sent
    assert sender.doubled == []  # but never with a user of the batch still in flight
    assert set(Counter(e.outbox_id for e in sender.inner.attempts).values()) == {1}
    for user in range(1, users + 1):
        assert sender.inner.seqs(user) == list(range(1, per_user + 1)), user
    assert await pending(pool, channel) == 0


async def test_a_failure_holds_that_users_later_events_across_batches(pool: asyncpg.Pool) -> None:
    channel = f"webhook:{await add_endpoint(pool)}"
    await emit_grid(pool, users=10, per_user=6)  # user 1's events fall in several batches
    await fan_out_all(pool)
    flaky = True

    def fail(event: Event) -> str | None:
        return "HTTP 503" if flaky and event.user_id == 1 and event.user_seq == 2 else None

    sender = Recorder(fail=fail, io_s=0.005)
    assert await deliver_pipelined(pool, channel, sender.send, batch=7, pass_s=60) == 60 - 5
    assert sender.seqs(1) == [1, 2]  # 3..6 never went while 2 was failing
    assert await pending(pool, channel) == 5
    for user in range(2, 11):
        assert sender.seqs(user) == [1, 2, 3, 4, 5, 6]

    flaky = False
    await make_due(pool)
    assert await deliver_pipelined(pool, channel, sender.send, batch=7, pass_s=60) == 5
    assert sender.seqs(1) == [1, 2, 2, 3, 4, 5, 6]  # the retry first, then the rest in order


@dataclass
class Gate:
    """A sender that holds every batch until opened, as an endpoint that does not answer."""

    inner: Recorder = field(default_factory=Recorder)
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    held: list[Event] = field(default_factory=list)

    async def send(self, events: Sequence[Event]) -> list[Result]:
        self.held.extend(events)
        await self.opened.wait()
        return await self.inner.send(events)


async def test_one_pipelined_deliverer_per_channel(pool: asyncpg.Pool) -> None:
    channel = f"webhook:{await add_endpoint(pool)}"
    total = await emit_grid(pool, users=5, per_user=4)
    await fan_out_all(pool)
    first = Gate()
    running = asyncio.create_task(deliver_pipelined(pool, channel, first.send, pass_s=60))

    async def holding() -> bool:
        return bool(first.held)

    try:
        await wait_until(holding, 10, "the first deliverer to send")
        second = Recorder()
        assert await deliver_pipelined(pool, channel, second.send) == 0  # skipped: locked
        assert second.attempts == []
    finally:
        first.opened.set()
    assert await running == total
    assert await pending(pool, channel) == 0
    assert await advisory_locks(pool) == 0  # unlocked at the end of the pass


async def test_a_cancelled_pass_leaves_what_it_sent_pending_and_the_channel_free(
    pool: asyncpg.Pool,
) -> None:
    """Cancelled while both batches are in flight (a shutdown; a crash loses the same:
    nothing it sent was acknowledged): every event is still pending, the channel's lock went
    with the pass, and the next pass sends them all again, each user's in order."""
    channel = f"webhook:{await add_endpoint(pool)}"
    users, per_user = 20, 3  # a batch of 10 holds 10 users: the second has the other 10
    total = await emit_grid(pool, users, per_user)
    await fan_out_all(pool)
    stuck = Gate()
    running = asyncio.create_task(deliver_pipelined(pool, channel, stuck.send, batch=10, pass_s=60))

    async def two_batches_held() -> bool:
        return len(stuck.held) == 20

    try:
        await wait_until(two_batches_held, 10, "two batches in flight")
    finally:
        running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert await pending(pool, channel) == total

    async def no_lock_left() -> bool:  # its connection was closed: the server ends the session
        return await advisory_locks(pool) == 0

    await wait_until(no_lock_left, 10, "the cancelled pass's lock to go")

    again = Recorder()
    assert await deliver_pipelined(pool, channel, again.send, batch=10, pass_s=60) == total
    for user in range(1, users + 1):
        assert again.seqs(user) == list(range(1, per_user + 1)), user
    assert await pending(pool, channel) == 0


# pg_locks is the whole server's: other tests' databases (pytest-xdist) have their own locks.
THIS_DATABASE = "database = (SELECT oid FROM pg_database WHERE datname = current_database())"


async def advisory_locks(pool: asyncpg.Pool) -> int:
    return int(
        await pool.fetchval(
            f"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND {THIS_DATABASE}"
        )
    )


def first_seen(events: Sequence[Event]) -> dict[int, list[int]]:
    """Each user's seqs in the order first sent (a redelivery may repeat one)."""
    seen: set[int] = set()
    by_user: dict[int, list[int]] = {}
    for event in events:
        if event.outbox_id not in seen:
            seen.add(event.outbox_id)
            by_user.setdefault(event.user_id, []).append(event.user_seq)
    return by_user


async def test_a_pass_whose_connection_the_server_ends_loses_nothing(pool: asyncpg.Pool) -> None:
    """The server ends the pass's connection (pg_terminate_backend, a failover) while two
    batches are being sent: the pass fails, its lock went with the session, nothing it sent is
    acknowledged, and the next pass sends everything again, each user's events in order."""
    channel = f"webhook:{await add_endpoint(pool)}"
    users, per_user = 20, 3
    total = await emit_grid(pool, users, per_user)
    await fan_out_all(pool)
    stuck = Gate()
    running = asyncio.create_task(deliver_pipelined(pool, channel, stuck.send, batch=10, pass_s=60))
    try:

        async def two_batches_held() -> bool:
            return len(stuck.held) == 20

        await wait_until(two_batches_held, 10, "two batches in flight")
        holder = await pool.fetchval(
            f"SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND {THIS_DATABASE}"
        )
        assert holder is not None
        assert await pool.fetchval("SELECT pg_terminate_backend($1, 5000)", holder)
    finally:
        stuck.opened.set()
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError)):
        await running

    async def no_lock_left() -> bool:
        return await advisory_locks(pool) == 0

    await wait_until(no_lock_left, 10, "the ended session's lock to go")
    assert await pending(pool, channel) == total

    rest = Recorder()
    assert await deliver_pipelined(pool, channel, rest.send, batch=10, pass_s=60) == total
    assert first_seen(stuck.inner.attempts + rest.attempts) == {
        u: list(range(1, per_user + 1)) for u in range(1, users + 1)
    }
    assert await advisory_locks(pool) == 0
