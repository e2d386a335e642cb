"""Scripted conversations: paying Lightning invoices with /pay and /send."""

from __future__ import annotations

import asyncio

import asyncpg

from harness.redis import RedisServer
from tests.bot.conftest import (
    Vnode,
    asks_to_confirm,
    balance_msat,
    bot_settings,
    funded,
    new_user,
    notified,
    press,
    started,
    two_users,
)
from tests.bot.cutting_proxy import CuttingProxy
from vnode.bot.runtime import BotRuntime
from vnode.demo.bot_api import FakeTelegram


async def test_pay_shows_amount_and_fee_reserve_then_pays_once(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode, db: asyncpg.Connection
) -> None:
    alice = new_user("Alice")
    await started(telegram, alice)
    await funded(vnode, alice, 10_000, telegram)
    invoice = await vnode.sim.invoice(2_000_000)
    asked = await asks_to_confirm(telegram, alice, f"/pay {invoice}")
    assert "Pay <b>2,000 sats</b>" in (asked.raw_text or "")
    # The default reserve: 50 sat + 1% (the node's own worst-case fee, security review M4).
    assert "Fee reserve: up to 70 sats" in (asked.text or "")
    assert "Held now: 2,070 sats" in (asked.text or "")
    assert await balance_msat(vnode, alice) == 10_000_000

    press(telegram, alice, asked, "Confirm")
    done = await telegram.wait_for(alice.id, lambda m: "Paid" in (m.text or ""))
    assert done.message_id == asked.message_id and "Paid 2,000 sats" in (done.text or "")
    assert await balance_msat(vnode, alice) < 10_000_000 - 2_000_000
    await notified(db, alice, "payment.succeeded")
    # The event came after the answer told the end: no second message about it.
    assert [m for m in telegram.messages(alice.id) if "Paid" in (m.text or "")] == [done]


async def test_the_buttons_answer_held_past_the_final_event_still_tells_once(
    own_vnode: Vnode, own_telegram: FakeTelegram, bot_redis: RedisServer
) -> None:
    """End to end: the Confirm button's handler registers its call in flight
    (vnode/bot/payment_calls.py), so the payment's final event, handled while vnode's answer
    is held back in a proxy, waits for that answer and does not tell the end a second time.
    Without the handler's registration the event tells "Paid" and the answer does too.
    (tests/bot/test_notifications.py drives the notifier's side step by step.)"""
    telegram = own_telegram
    proxy = CuttingProxy(own_vnode.serve.port)
    await proxy.start()
    runtime = BotRuntime(bot_settings(own_vnode, telegram, bot_redis.url, url=proxy.url))
    await runtime.start()
    db = await asyncpg.connect(own_vnode.database_url)
    proxy.held = held = asyncio.Event()
    held.set()  # answers pass until the payment's
    try:
        alice = new_user("Alice")
        await started(telegram, alice)
        await funded(own_vnode, alice, 10_000, telegram)
        invoice = await own_vnode.sim.invoice(2_000_000)
        asked = await asks_to_confirm(telegram, alice, f"/pay {invoice}")
        held.clear()
        press(telegram, alice, asked, "Confirm")
        # The event is claimed before it is told; it then waits for the button's answer.
        await notified(db, alice, "payment.succeeded")
        held.set()
        done = await telegram.wait_for(alice.id, lambda m: "Paid" in (m.text or ""))
        assert done.message_id == asked.message_id and "Paid 2,000 sats" in (done.text or "")
        await telegram.wait_idle()
        assert [m for m in telegram.messages(alice.id) if "Paid" in (m.text or "")] == [done]
    finally:
        held.set()
        await db.close()
        await runtime.stop()
        await proxy.stop()


async def test_send_with_an_amountless_invoice_asks_for_the_amount(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode, db: asyncpg.Connection
) -> None:
    alice, bob = await two_users(telegram, vnode, 10_000, usernames=True)
    invoice = (await vnode.admin.ln_invoice(bob.id, description="pizza")).invoice
    telegram.user_says(alice, f"/send lightning:{invoice.upper()}")
    await telegram.wait_for(alice.id, lambda m: "How much" in (m.text or ""))
    telegram.user_says(alice, "lots")
    await telegram.wait_for(alice.id, lambda m: "not an amount" in (m.text or ""))
    asked = await asks_to_confirm(telegram, alice, "1k")
    assert "1,000 sats" in (asked.text or "") and "pizza" in (asked.text or "")
    assert "Fee: none" in (asked.text or "")
    press(telegram, alice, asked, "Confirm")
    await telegram.wait_for(alice.id, lambda m: "Paid 1,000 sats" in (m.text or ""))
    told = await telegram.wait_for(bob.id, lambda m: "Received" in (m.text or ""))
    assert "1,000 sats" in (told.text or "") and f"@{alice.username}" in (told.text or "")
    assert await balance_msat(vnode, bob) == 1_000_000
    await notified(db, bob, "invoice.paid")


async def test_amount_question_can_be_cancelled(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode
) -> None:
    alice, bob = await two_users(telegram, vnode)
    invoice = (await vnode.admin.ln_invoice(bob.id)).invoice
    telegram.user_says(alice, f"/pay {invoice}")
    await telegram.wait_for(alice.id, lambda m: "How much" in (m.text or ""))
    telegram.user_says(alice, "/cancel")
    await telegram.wait_for(alice.id, lambda m: "Cancelled" in (m.text or ""))
    telegram.user_says(alice, "500")  # no longer an answer to anything
    telegram.user_says(alice, "/help")
    nxt = await telegram.wait_for(alice.id)
    assert "/history" in (nxt.text or "")


async def test_failed_payment_is_refunded_and_said_once(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode, db: asyncpg.Connection
) -> None:
    alice = new_user("Alice")
    await started(telegram, alice)
    await funded(vnode, alice, 10_000, telegram)
    invoice = await vnode.sim.invoice(3_000_000)
    asked = await asks_to_confirm(telegram, alice, f"/pay {invoice}")
    await vnode.sim.faults(next_payment="fail")
    press(telegram, alice, asked, "Confirm")
    failed = await telegram.wait_for(alice.id, lambda m: "failed" in (m.text or ""))
    assert "back in your balance" in (failed.text or "")
    assert await balance_msat(vnode, alice) == 10_000_000
    await notified(db, alice, "payment.failed")
    assert [m for m in telegram.messages(alice.id) if "failed" in (m.text or "")] == [failed]


async def test_pending_payment_is_told_when_it_settles(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode, db: asyncpg.Connection
) -> None:
    alice = new_user("Alice")
    await started(telegram, alice)
    await funded(vnode, alice, 10_000, telegram)
    invoice = await vnode.sim.invoice(1_000_000)
    quote = await vnode.admin.decode_invoice(invoice)
    asked = await asks_to_confirm(telegram, alice, f"/pay {invoice}")
    await vnode.sim.faults(next_payment="hold")
    press(telegram, alice, asked, "Confirm")
    flight = await telegram.wait_for(alice.id, lambda m: "in flight" in (m.text or ""))
    assert flight.message_id == asked.message_id
    await vnode.sim.release(quote.payment_hash, "succeed")
    told = await telegram.wait_for(alice.id, lambda m: "Paid 1,000 sats" in (m.text or ""))
    assert told.reply_to_message_id == asked.message_id  # a reply to the confirmation
    await notified(db, alice, "payment.succeeded")


async def test_invoice_refusals(bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode) -> None:
    alice = new_user("Alice")
    await started(telegram, alice)
    await funded(vnode, alice, 1000, telegram)
    big = await vnode.sim.invoice(5_000_000)
    own = (await vnode.admin.ln_invoice(alice.id, amt_msat=1000)).invoice
    cases = [
        ("/pay lnbcrt1qqqqqqqqqqqqqqq", "not a valid Lightning invoice"),
        ("/pay", "Usage: /pay"),
        (f"/pay {big}", "Not enough balance"),
        (f"/pay {big} 7000", "does not match the invoice"),
    ]
    for text, expected in cases:
        telegram.user_says(alice, text)
        answer = await telegram.wait_for(alice.id)
        assert expected in (answer.text or ""), (text, answer.text)
        assert answer.buttons() == []
    asked = await asks_to_confirm(telegram, alice, f"/pay {own}")
    press(telegram, alice, asked, "Confirm")
    refused = await telegram.wait_for(
        alice.id, lambda m: m.message_id == asked.message_id and "own invoice" in (m.text or "")
    )
    assert refused.buttons() == []
    assert await balance_msat(vnode, alice) == 1_000_000
