"""PaymentCalls: the notifier waits for a button's payment call, and only for a bounded time."""

from __future__ import annotations

import asyncio

from vnode.bot.payment_calls import PaymentCalls


async def test_no_call_in_flight_means_no_wait() -> None:
    await asyncio.wait_for(PaymentCalls().answered("aa", 1, timeout_s=60), 1)


async def test_waits_until_the_call_has_answered() -> None:
    calls = PaymentCalls()
    order: list[str] = []
    entered, answer = asyncio.Event(), asyncio.Event()

    async def button() -> None:
        async with calls.in_flight("aa", 1):
            entered.set()
            await answer.wait()
            order.append("answer recorded")

    task = asyncio.create_task(button())
    await entered.wait()  # the button's call is in flight
    waiting = asyncio.create_task(calls.answered("aa", 1, timeout_s=60))
    finished, _ = await asyncio.wait({waiting}, timeout=0.1)
    assert not finished  # still waiting for the answer
    await asyncio.wait_for(calls.answered("bb", 1, timeout_s=60), 1)  # another payment
    await asyncio.wait_for(calls.answered("aa", 2, timeout_s=60), 1)  # another user
    answer.set()
    await asyncio.wait_for(waiting, 1)
    order.append("event told")
    await task
    assert order == ["answer recorded", "event told"]
    await asyncio.wait_for(calls.answered("aa", 1, timeout_s=60), 1)  # forgotten after


async def test_the_wait_is_bounded_and_a_failed_call_ends_it() -> None:
    calls = PaymentCalls()
    entered, hang = asyncio.Event(), asyncio.Event()

    async def hanging() -> None:
        async with calls.in_flight("aa", 1):
            entered.set()
            await hang.wait()

    task = asyncio.create_task(hanging())
    await entered.wait()
    await asyncio.wait_for(calls.answered("aa", 1, timeout_s=0.05), 5)  # gives up, no error
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.wait_for(calls.answered("aa", 1, timeout_s=60), 1)
