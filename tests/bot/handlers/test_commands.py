"""Scripted conversations: /start, /help, /balance, /receive, /history."""

from __future__ import annotations

import asyncpg
import pytest

from tests.bot.conftest import Vnode, funded, new_user, notified, started
from tests.support import RGB_ASSET
from vnode.bot.runtime import BotRuntime
from vnode.client import VNodeError
from vnode.demo.bot_api import FakeTelegram

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


async def test_start_creates_the_node_and_shows_id_key_and_help(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode
) -> None:
    alice = new_user("Alice", "alice")
    with pytest.raises(VNodeError) as missing:  # before /start vnode does not know alice
        await vnode.admin.asset_balance(alice.id)
    assert missing.value.code == "unknown_user"
    telegram.user_says(alice, "/start")
    welcome = await telegram.wait_for(alice.id)
    node = await vnode.admin.node(alice.id)
    assert f"vn_{alice.id}" in (welcome.text or "") and node.pubkey in (welcome.text or "")
    assert "/send" in (welcome.text or "") and "/receive" in (welcome.text or "")

    telegram.user_says(alice, "/help")
    help_text = await telegram.wait_for(alice.id)
    assert "5k" in (help_text.text or "") and "/history" in (help_text.text or "")


async def test_balance_lists_every_asset_with_thousands_separators(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode
) -> None:
    bob = new_user("Bob")
    await started(telegram, bob)
    await funded(vnode, bob, 1_234_567, telegram)
    await vnode.admin.admin_credit(
        bob.id, asset_id=RGB_ASSET, asset_amount=25_000, reason="stablecoin"
    )
    # Its notification first, as funded() does: else it may be the message the reply wait gets.
    await telegram.wait_for(bob.id, lambda m: "stablecoin" in (m.text or ""))
    telegram.user_says(bob, "/balance")
    shown = (await telegram.wait_for(bob.id)).text or ""
    assert "BTC: 1,234,567 sats" in shown
    assert "25,000" in shown and RGB_ASSET[:12] in shown


async def test_balance_before_start_asks_to_start(bot: BotRuntime, telegram: FakeTelegram) -> None:
    stranger = new_user("Stranger")
    telegram.user_says(stranger, "/balance")
    assert "/start" in ((await telegram.wait_for(stranger.id)).text or "")


async def test_receive_answers_invoice_text_and_qr_and_credits_an_outside_payment(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode, db: asyncpg.Connection
) -> None:
    carol = new_user("Carol")
    await started(telegram, carol)
    telegram.user_says(carol, "/receive 5k")
    text = await telegram.wait_for(carol.id, lambda m: "Invoice for 5,000 sats" in (m.text or ""))
    invoice = next(w for w in (text.text or "").split() if w.startswith("ln"))
    photo = await telegram.wait_for(carol.id, lambda m: m.photo is not None)
    assert photo.photo is not None and photo.photo.startswith(PNG_MAGIC)
    quote = await vnode.admin.decode_invoice(invoice)
    assert quote.amount_msat == 5_000_000 and quote.internal

    paid = await vnode.sim.pay(invoice)
    assert paid.status_code == 200, paid.text
    told = await telegram.wait_for(carol.id, lambda m: "Received" in (m.text or ""))
    assert "5,000 sats" in (told.text or "") and "outside" in (told.text or "")
    assert (await vnode.admin.asset_balance(carol.id)).balance_msat == 5_000_000
    await notified(db, carol, "invoice.paid")


async def test_receive_in_btc_units(bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode) -> None:
    erin = new_user("Erin")
    await started(telegram, erin)
    telegram.user_says(erin, "/receive 0.0001 btc")
    text = await telegram.wait_for(erin.id, lambda m: "Invoice for 10,000 sats" in (m.text or ""))
    invoice = next(w for w in (text.text or "").split() if w.startswith("ln"))
    assert (await vnode.admin.decode_invoice(invoice)).amount_msat == 10_000_000


async def test_receive_refuses_a_bad_amount(bot: BotRuntime, telegram: FakeTelegram) -> None:
    dave = new_user("Dave")
    await started(telegram, dave)
    telegram.user_says(dave, "/receive -5")
    answer = await telegram.wait_for(dave.id)
    assert "not an amount" in (answer.text or "") and answer.photo is None


async def test_history_pages_with_buttons(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode
) -> None:
    erin, frank = new_user("Erin"), new_user("Frank")
    await started(telegram, erin)
    await funded(vnode, erin, 100_000, telegram)
    for i in range(7):
        await vnode.admin.transfer(erin.id, frank.id, amount_sats=1000 + i, memo=f"n{i}")
    telegram.user_says(erin, "/history")
    first = await telegram.wait_for(erin.id, lambda m: "page 1" in (m.text or ""))
    assert "−1,006 sats" in (first.text or "") and "n6" in (first.text or "")
    assert [text for text, _ in first.buttons()] == ["Older »"]

    telegram.press(erin, first, first.buttons()[0][1])
    second = await telegram.wait_for(erin.id, lambda m: "page 2" in (m.text or ""))
    # Eight entries, five a page: the rest, down to the first credit, and no Older button.
    assert "−1,001 sats" in (second.text or "") and "n6" not in (second.text or "")
    assert "+100,000 sats" in (second.text or "")
    assert [text for text, _ in second.buttons()] == ["« Newer"]

    telegram.press(erin, second, second.buttons()[0][1])
    again = await telegram.wait_for(erin.id, lambda m: "page 1" in (m.text or ""))
    assert "n6" in (again.text or "")
