"""Many deliveries in flight, on a real database and real HTTP receivers: each user's events still
arrive in order and once, a batch's acknowledgement never covers a failed delivery, and a slow
endpoint holds up no other (docs/adr/0025)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.integration.events.test_dispatcher import (
    Recorder,
    add_endpoint,
    delivery,
    emit,
    emit_grid,
    fan_out_all,
    make_due,
)
from tests.integration.events.webhook_receiver import WebhookReceiver
from tests.support import close_pool, wait_until
from vnode.db.pool import create_pool
from vnode.events import webhooks
from vnode.events.delivery import DELIVERY_BATCH, backoff_s, deliver_once
from vnode.events.dispatcher import Dispatcher
from vnode.events.envelope import Event

SECRET = "whsec-" + "s" * 24
LOCAL = frozenset({"127.0.0.1"})


@pytest.fixture
async def pool(fresh_db: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(fresh_db, min_size=1, max_size=12)
    yield pool
    await close_pool(pool)


def dispatcher_on(pool: asyncpg.Pool) -> Dispatcher:
    return Dispatcher(
        pool, redis_url=None, redis_stream_key="unused", redis_maxlen=1000, allow_hosts=LOCAL
    )


async def test_many_users_in_flight_each_in_order_and_once(pool: asyncpg.Pool) -> None:
    """More events than a batch, 40 users posted side by side over kept-alive connections:
    every user's events arrive in seq order, each exactly once."""
    users, per_user = 40, 16
    assert users * per_user > DELIVERY_BATCH
    with WebhookReceiver(SECRET) as receiver:
        await add_endpoint(pool, receiver.url, secret=SECRET)
        total = await emit_grid(pool, users, per_user)
        await fan_out_all(pool)
        dispatcher = dispatcher_on(pool)
        try:

            async def all_arrived_and_acknowledged() -> bool:
                await dispatcher.deliver_webhooks()
                return len(receiver.received) >= total and not await pool.fetchval(
                    "SELECT count(*) FROM event_deliveries WHERE channel LIKE 'webhook:%' "
                    "AND status <> 'delivered'"
                )

            await wait_until(all_arrived_and_acknowledged, 30, "every event delivered")
        finally:
            await dispatcher.close()
        assert len(receiver.received) == total
        assert Counter(receiver.ids()).most_common(1)[0][1] == 1  # none twice
        assert receiver.seqs_by_user() == {u: list(range(1, per_user + 1)) for u in range(1, 41)}
        assert receiver.bad_signatures == []


async def test_a_batch_acknowledgement_never_acks_a_failed_delivery(pool: asyncpg.Pool) -> None:
    """Deliveries and failures of one batch are written by one statement each: the failed
    ones stay pending, each with its own attempt count, error and backoff."""
    first_fail = await emit(pool, 1)
    second_fail = await emit(pool, 2)
    fine = [await emit(pool, 3), await emit(pool, 4)]
    await fan_out_all(pool)
    # user 2's delivery has failed twice before: its next failure is its third.
    await pool.execute(
        "UPDATE event_deliveries SET attempts = 2 WHERE channel = 'redis' AND outbox_id = $1",
        second_fail,
    )
    errors = {first_fail: "HTTP 500", second_fail: "HTTP 503"}

    def fail(event: Event) -> str | None:
        return errors.get(event.outbox_id)

    sender = Recorder(fail=fail)
    assert await deliver_once(pool, "redis", sender.send) == 2
    for outbox_id in fine:
        assert (await delivery(pool, outbox_id))["status"] == "delivered"
    for outbox_id, tries in ((first_fail, 1), (second_fail, 3)):
        row = await delivery(pool, outbox_id)
        assert (row["status"], row["attempts"], row["last_error"]) == (
            "pending",
            tries,
            errors[outbox_id],
        )
        assert backoff_s(tries) - 0.5 < row["due_in_s"] <= backoff_s(tries)
    await make_due(pool)
    assert await deliver_once(pool, "redis", Recorder().send) == 2  # now both go


async def test_a_slow_endpoint_holds_up_no_other(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One endpoint hangs on every request; the other gets every event meanwhile, in order,
    pass after pass, while the slow one's batch is still in flight."""
    monkeypatch.setattr(webhooks, "DELIVERY_TIMEOUT_S", 30.0)  # the slow one stays in flight
    with WebhookReceiver(SECRET) as slow, WebhookReceiver(SECRET) as fast:
        slow.hang()
        await add_endpoint(pool, slow.url, secret=SECRET)
        await add_endpoint(pool, fast.url, secret=SECRET)
        dispatcher = dispatcher_on(pool)
        try:
            for round_ in range(1, 4):
                for user in (1, 2):
                    await emit(pool, user)
                await fan_out_all(pool)

                async def fast_has_it(expected: int = 2 * round_) -> bool:
                    await dispatcher.deliver_webhooks()
                    return len(fast.received) == expected

                await wait_until(fast_has_it, 10, f"round {round_} at the fast endpoint")
            assert fast.seqs_by_user() == {1: [1, 2, 3], 2: [1, 2, 3]}
            assert slow.received == [] and slow.hung >= 1

            slow.hang(False)  # it answers 503 to what it held; the retries then succeed

            async def slow_has_all() -> bool:
                await make_due(pool)
                await dispatcher.deliver_webhooks()
                return len(slow.received) == 6

            await wait_until(slow_has_all, 20, "the slow endpoint's events once it answers")
            assert slow.seqs_by_user() == {1: [1, 2, 3], 2: [1, 2, 3]}
        finally:
            slow.hang(False)
            await dispatcher.close()
