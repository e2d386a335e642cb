"""The dispatcher's guarantees on a real database: fan-out exactly once, one deliverer per channel
at a time, per-user order, backoff, dead letters. (Redelivery after `vnode serve` is killed:
tests/e2e/events/test_dispatcher.py.)

Fan-out and delivery are called directly with a test sender: a plain function the dispatcher
calls in place of Redis or a webhook (the database and our code are the real ones).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import asyncpg
import pytest

from tests.support import close_pool, wait_until
from vnode.db.pool import create_pool
from vnode.events.delivery import DEAD_AFTER_S, Result, backoff_s, deliver_once, retry_dead
from vnode.events.envelope import Event
from vnode.events.fanout import fan_out_once

FailWhen = Callable[[Event], str | None]


@pytest.fixture
async def pool(fresh_db: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(fresh_db, min_size=1, max_size=12)
    yield pool
    await close_pool(pool)


async def emit_grid(pool: asyncpg.Pool, users: int, per_user: int) -> int:
    """users x per_user events, interleaved (seq 1 of every user, then seq 2...)."""
    await pool.execute(
        "INSERT INTO outbox (event_type, user_id, user_seq, payload) "
        "SELECT CASE WHEN s % 3 = 0 THEN 'transfer.completed' ELSE 'admin.credit' END, u, s, "
        "       jsonb_build_object('n', s) "
        "FROM generate_series(1, $2::int) s, generate_series(1, $1::int) u ORDER BY s, u",
        users,
        per_user,
    )
    return users * per_user


async def emit(pool: asyncpg.Pool, user_id: int, event_type: str = "transfer.completed") -> int:
    """One more event for `user_id`; returns its outbox id."""
    return int(
        await pool.fetchval(
            "INSERT INTO outbox (event_type, user_id, user_seq, payload) "
            "SELECT $2, $1, coalesce(max(user_seq), 0) + 1, '{}' FROM outbox WHERE user_id = $1 "
            "RETURNING id",
            user_id,
            event_type,
        )
    )


async def add_endpoint(
    pool: asyncpg.Pool,
    url: str = "http://127.0.0.1:9/hook",
    event_types: Sequence[str] = (),
    secret: str = "whsec-" + "s" * 24,
    removed: bool = False,
) -> int:
    return int(
        await pool.fetchval(
            "INSERT INTO webhook_endpoints (url, event_types, secret, removed_at) "
            "VALUES ($1, $2, $3, CASE WHEN $4 THEN now() END) RETURNING id",
            url,
            list(event_types),
            secret,
            removed,
        )
    )


async def fan_out_all(pool: asyncpg.Pool) -> None:
    while await fan_out_once(pool, redis_enabled=True):
        pass


@dataclass
class Recorder:
    """A test sender that keeps the Sender contract: events in order, and a user's chain
    stops at its first failure (the later ones are not attempted)."""

    fail: FailWhen = lambda event: None
    io_s: float = 0.0  # time one batch "spends on the wire" (a real sender awaits I/O here)
    attempts: list[Event] = field(default_factory=list)
    in_flight: set[int] = field(default_factory=set)
    calls_in_flight: int = 0
    max_calls_in_flight: int = 0
    overlaps: list[int] = field(default_factory=list)

    async def send(self, events: Sequence[Event]) -> list[Result]:
        self.calls_in_flight += 1
        self.max_calls_in_flight = max(self.max_calls_in_flight, self.calls_in_flight)
        self.overlaps.extend(e.outbox_id for e in events if e.outbox_id in self.in_flight)
        self.in_flight.update(e.outbox_id for e in events)
        try:
            if self.io_s:
                await asyncio.sleep(self.io_s)
            results: list[Result] = []
            stopped: set[int] = set()
            for event in events:
                if event.user_id in stopped:
                    continue
                self.attempts.append(event)
                error = self.fail(event)
                results.append(Result(event.outbox_id, error))
                if error is not None:
                    stopped.add(event.user_id)
            return results
        finally:
            self.in_flight.difference_update(e.outbox_id for e in events)
            self.calls_in_flight -= 1

    def seqs(self, user_id: int) -> list[int]:
        return [e.user_seq for e in self.attempts if e.user_id == user_id]


async def delivery(pool: asyncpg.Pool, outbox_id: int, channel: str = "redis") -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT status, attempts, next_attempt_at, last_error, created_at, "
        "  extract(epoch FROM next_attempt_at - now())::float8 AS due_in_s "
        "FROM event_deliveries WHERE channel = $1 AND outbox_id = $2",
        channel,
        outbox_id,
    )
    assert row is not None
    return row


async def make_due(pool: asyncpg.Pool) -> None:
    """Let the backoff time pass, without waiting for it."""
    await pool.execute(
        "UPDATE event_deliveries SET next_attempt_at = now() WHERE status = 'pending'"
    )


# --------------------------------------------------------------------------------------------
# Fan-out


async def test_fan_out_is_exactly_once_with_five_concurrent_callers(pool: asyncpg.Pool) -> None:
    every = await add_endpoint(pool)
    credits_only = await add_endpoint(pool, event_types=["admin.credit"])
    await add_endpoint(pool, removed=True)
    total = await emit_grid(pool, users=50, per_user=50)
    credits = await pool.fetchval("SELECT count(*) FROM outbox WHERE event_type = 'admin.credit'")
    claimed: list[int] = []

    async def fan_out_worker() -> None:
        while await pool.fetchval("SELECT count(*) FROM outbox WHERE fanned_out_at IS NULL"):
            claimed.append(await fan_out_once(pool, redis_enabled=True, batch=100))

    await asyncio.gather(*(fan_out_worker() for _ in range(5)))

    assert sum(claimed) == total  # each row claimed by exactly one call
    per_channel = {
        r["channel"]: r["count"]
        for r in await pool.fetch("SELECT channel, count(*) FROM event_deliveries GROUP BY channel")
    }
    assert per_channel == {
        "redis": total,
        f"webhook:{every}": total,
        f"webhook:{credits_only}": credits,
    }
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM (SELECT 1 FROM event_deliveries GROUP BY channel, outbox_id "
            "HAVING count(*) > 1) twice"
        )
        == 0
    )
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE fanned_out_at IS NULL") == 0
    assert await fan_out_once(pool, redis_enabled=True) == 0  # nothing left, nothing redone


async def test_a_user_is_never_delivered_ahead_of_a_fan_out_still_in_progress(
    pool: asyncpg.Pool, fresh_db: str
) -> None:
    """Two dispatchers fan out at once: the first has claimed a user's seq 1 and not committed
    yet (paused here by a test-only trigger; in life a preemption, a slow disk) when the user's
    seq 2 is committed. The second must not fan out seq 2 meanwhile, or seq 2 would be
    delivered before seq 1."""
    user = 7
    first = await emit(pool, user)
    pause = await asyncpg.connect(fresh_db)
    await pause.execute(f"""
        CREATE FUNCTION test_pause() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NEW; END $$;
        CREATE TRIGGER test_pause BEFORE INSERT ON event_deliveries FOR EACH ROW
        WHEN (NEW.outbox_id = {first}) EXECUTE FUNCTION test_pause();""")
    await pause.execute("SELECT pg_advisory_lock(4242)")
    in_progress = asyncio.create_task(fan_out_once(pool, redis_enabled=True))
    try:

        async def claimed_and_waiting() -> bool:
            return bool(
                await pool.fetchval(
                    # This database's only: other workers' tests wait on locks too, and
                    # a fan-out of theirs seen here let the second fan-out below claim seq 1
                    # first and wait on the pause forever (a hung make test-fast).
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%INSERT INTO event_deliveries%' "
                    "AND datname = current_database() AND pid <> pg_backend_pid()"
                )
            )

        await wait_until(claimed_and_waiting, 10, "the first fan-out to hold seq 1")
        second = await emit(pool, user)

        await fan_out_once(pool, redis_enabled=True)  # another process, meanwhile
        early = Recorder()
        await deliver_once(pool, "redis", early.send)
        assert early.seqs(user) == [], "seq 2 went out before seq 1 was even fanned out"
    finally:
        await pause.execute("SELECT pg_advisory_unlock(4242)")
        await pause.close()
        await in_progress
    await fan_out_all(pool)
    later = Recorder()
    assert await deliver_once(pool, "redis", later.send) == 2
    assert [e.outbox_id for e in later.attempts] == [first, second]


# --------------------------------------------------------------------------------------------
# Delivery


async def test_four_concurrent_deliverers_never_send_an_event_twice_at_once(
    pool: asyncpg.Pool,
) -> None:
    hook = await add_endpoint(pool)
    channels = ["redis", f"webhook:{hook}"]
    total = await emit_grid(pool, users=30, per_user=20)
    await fan_out_all(pool)
    senders = {channel: Recorder(io_s=0.002) for channel in channels}
    contended = 0

    async def deliverer() -> None:
        nonlocal contended
        while await pool.fetchval("SELECT count(*) FROM event_deliveries WHERE status = 'pending'"):
            for channel in channels:
                sender = senders[channel]
                if (
                    not await deliver_once(pool, channel, sender.send, batch=40)
                    and sender.calls_in_flight
                ):
                    contended += 1  # another deliverer holds the channel: skipped, as it must

    await asyncio.gather(*(deliverer() for _ in range(4)))

    assert contended > 0  # the four really competed
    for channel, sender in senders.items():
        assert sender.max_calls_in_flight == 1, channel
        assert sender.overlaps == [], channel
        sent = Counter(e.outbox_id for e in sender.attempts)
        assert len(sent) == total and set(sent.values()) == {1}, channel  # each once
        for user in range(1, 31):
            assert sender.seqs(user) == list(range(1, 21)), (channel, user)


async def test_a_failing_first_event_holds_back_that_user_only(pool: asyncpg.Pool) -> None:
    alice, bob, carol = 1, 2, 3
    await emit_grid(pool, users=3, per_user=3)
    await fan_out_all(pool)
    flaky = True

    def fail(event: Event) -> str | None:
        return "HTTP 503" if flaky and event.user_id == alice and event.user_seq == 1 else None

    sender = Recorder(fail=fail)
    assert await deliver_once(pool, "redis", sender.send) == 6  # bob's and carol's
    assert sender.seqs(alice) == [1]
    assert sender.seqs(bob) == sender.seqs(carol) == [1, 2, 3]
    states = {
        r["user_seq"]: r["status"]
        for r in await pool.fetch(
            "SELECT user_seq, status FROM event_deliveries WHERE user_id = $1", alice
        )
    }
    assert states == {1: "pending", 2: "pending", 3: "pending"}

    # While seq 1 waits for its retry, seq 2 and 3 wait behind it; new events of others go on.
    bob_more = await emit(pool, bob)
    await fan_out_all(pool)
    assert await deliver_once(pool, "redis", sender.send) == 1
    assert sender.attempts[-1].outbox_id == bob_more
    assert sender.seqs(alice) == [1]

    flaky = False
    await make_due(pool)
    assert await deliver_once(pool, "redis", sender.send) == 3
    assert sender.seqs(alice) == [1, 1, 2, 3]  # retried first, then the rest in order


async def test_backoff_doubles_from_one_second(pool: asyncpg.Pool) -> None:
    outbox_id = await emit(pool, 5)
    await fan_out_all(pool)
    sender = Recorder(fail=lambda event: "redis: Connection refused")
    for attempts, expected_s in ((1, 1.0), (2, 2.0), (3, 4.0)):
        assert await deliver_once(pool, "redis", sender.send) == 0
        row = await delivery(pool, outbox_id)
        assert (row["status"], row["attempts"]) == ("pending", attempts)
        assert row["last_error"] == "redis: Connection refused"
        # next_attempt_at is counted from the delivery transaction's start, just before now.
        assert expected_s - 0.5 < row["due_in_s"] <= expected_s, (attempts, row["due_in_s"])
        assert await deliver_once(pool, "redis", sender.send) == 0  # not due: not attempted
        assert len(sender.attempts) == attempts
        await make_due(pool)
    assert [backoff_s(n) for n in (1, 2, 3, 4, 12, 13, 50)] == [
        1.0,
        2.0,
        4.0,
        8.0,
        2048.0,
        3600.0,
        3600.0,
    ]


async def test_dead_after_dead_after_s_and_retry_dead_requeues(pool: asyncpg.Pool) -> None:
    hook = await add_endpoint(pool)
    old, recent = await emit(pool, 1), await emit(pool, 2)
    after_old = await emit(pool, 1)
    await fan_out_all(pool)
    broken = True
    sender = Recorder(
        fail=lambda e: "HTTP 500" if broken and e.outbox_id in (old, recent) else None
    )
    for channel in ("redis", f"webhook:{hook}"):
        assert await deliver_once(pool, channel, sender.send, dead_after_s=3600) == 0
    # Two hours of failures for `old`, half an hour for `recent`.
    await pool.execute(
        "UPDATE event_deliveries SET created_at = now() - interval '2 hours' WHERE outbox_id = $1",
        old,
    )
    await pool.execute(
        "UPDATE event_deliveries SET created_at = now() - interval '30 min' WHERE outbox_id = $1",
        recent,
    )
    await make_due(pool)
    for channel in ("redis", f"webhook:{hook}"):
        await deliver_once(pool, channel, sender.send, dead_after_s=3600)
        assert (await delivery(pool, old, channel))["status"] == "dead"
        assert (await delivery(pool, recent, channel))["status"] == "pending"
    # A dead event no longer holds its user back: the dead-letter list has it.
    await make_due(pool)
    await deliver_once(pool, "redis", sender.send, dead_after_s=3600)
    assert (await delivery(pool, after_old))["status"] == "delivered"
    assert DEAD_AFTER_S > 24 * 3600  # by default, retried for more than a day

    broken = False
    assert await retry_dead(pool, "redis") == 1  # that channel only
    assert (await delivery(pool, old, f"webhook:{hook}"))["status"] == "dead"
    requeued = await delivery(pool, old)
    assert requeued["status"] == "pending" and requeued["due_in_s"] <= 0
    await make_due(pool)  # `recent` too
    assert await deliver_once(pool, "redis", sender.send, dead_after_s=3600) == 2  # + recent
    assert (await delivery(pool, old))["status"] == "delivered"
    assert await retry_dead(pool) == 1  # every channel: the webhook's
    await make_due(pool)
    assert await deliver_once(pool, f"webhook:{hook}", sender.send) == 3
    assert (
        await pool.fetchval("SELECT count(*) FROM event_deliveries WHERE status <> 'delivered'")
        == 0
    )
