"""Scripted conversations: /send and /tip between users, with Confirm / Cancel."""

from __future__ import annotations

import asyncpg
from redis.asyncio import Redis

from tests.bot.conftest import (
    Vnode,
    answered,
    asks_to_confirm,
    balance_msat,
    funded,
    is_confirmation,
    new_user,
    notified,
    press,
    started,
    two_users,
)
from tests.bot.telegram_api import FakeTelegram, TgUser
from tests.support import wait_until
from vnode.bot.runtime import BotRuntime

GROUP = -1001234567890


async def test_send_to_a_username_after_confirm_and_the_payee_is_told(
        bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode, db: asyncpg.Connection) -> None:
    alice, bob = await two_users(telegram, vnode, 20_000, usernames=True)

    asked = await asks_to_confirm(telegram, alice, f"/send 5k @{bob.username} lunch money")
    assert "5,000 sats" in (asked.text or "") and f"vn_{bob.id}" in (asked.text or "")
    assert "lunch money" in (asked.text or "")
    assert await balance_msat(vnode, bob) == 0  # nothing moves before Confirm

    press(telegram, alice, asked, "Confirm")
    done = await telegram.wait_for(alice.id, lambda m: "Sent" in (m.text or ""))
    assert done.message_id == asked.message_id and done.buttons() == []
    assert "Sent 5,000 sats" in (done.text or "") and "15,000 sats" in (done.text or "")
    told = await telegram.wait_for(bob.id, lambda m: "Received" in (m.text or ""))
    assert f"from @{alice.username}" in (told.text or "") and "lunch money" in (told.text or "")
    assert await balance_msat(vnode, bob) == 5_000_000
    assert await balance_msat(vnode, alice) == 15_000_000
    await notified(db, bob, "transfer.completed")


async def test_amount_forms_telegram_ids_and_vn_ids(bot: BotRuntime, telegram: FakeTelegram,
                                                    vnode: Vnode) -> None:
    alice, bob = await two_users(telegram, vnode, 1_000_000)
    for text, shown in ((f"/send 0.0001 btc {bob.id}", "10,000 sats"),
                        (f"/send 1,500 sats vn_{bob.id}", "1,500 sats"),
                        (f"/send 2.5k vn_{bob.id} thanks", "2,500 sats")):
        telegram.user_says(alice, text)
        asked = await telegram.wait_for(alice.id, is_confirmation)
        assert shown in (asked.text or "") and f"vn_{bob.id}" in (asked.text or ""), text


async def test_double_tap_on_confirm_sends_once(bot: BotRuntime, telegram: FakeTelegram,
                                                vnode: Vnode) -> None:
    alice, bob = await two_users(telegram, vnode, 10_000)
    asked = await asks_to_confirm(telegram, alice, f"/send 1000 {bob.id}")
    # three taps arrive together, before any answer
    taps = [press(telegram, alice, asked, "Confirm") for _ in range(3)]
    await telegram.wait_for(alice.id, lambda m: "Sent 1,000 sats" in (m.text or ""))
    answers = sorted([(await telegram.wait_for_answer(tap))["text"] for tap in taps])
    assert answers == ["Already done.", "Already done.", "Sending…"]
    assert await balance_msat(vnode, bob) == 1_000_000
    assert await balance_msat(vnode, alice) == 9_000_000
    history = await vnode.admin.history(bob.id)
    assert len(history.transactions) == 1


async def test_cancel_sends_nothing(bot: BotRuntime, telegram: FakeTelegram,
                                    vnode: Vnode) -> None:
    alice, bob = await two_users(telegram, vnode, 10_000)
    asked = await asks_to_confirm(telegram, alice, f"/send 1000 {bob.id}")
    taps = [press(telegram, alice, asked, "Cancel"),
            press(telegram, alice, asked, "Confirm")]  # the second before the first's answer
    cancelled = await telegram.wait_for(alice.id, lambda m: "Cancelled" in (m.text or ""))
    assert cancelled.buttons() == []
    for tap in taps:
        assert (await telegram.wait_for_answer(tap))["text"] == "Cancelled. Nothing was sent."
    assert await balance_msat(vnode, bob) == 0 and await balance_msat(vnode, alice) == 10_000_000


async def test_confirmation_expires(bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode,
                                    redis: Redis) -> None:
    alice, bob = await two_users(telegram, vnode, 10_000)
    asked = await asks_to_confirm(telegram, alice, f"/send 1000 {bob.id}")
    token = dict(asked.buttons())["Confirm"].split(":")[-1]
    ttl = await redis.ttl(f"bitmask:confirm:{token}")
    assert 0 < ttl <= bot.settings.bot_confirm_ttl_s
    # Let the expiry run out (Redis forgets the action exactly as it would after the TTL).
    await redis.pexpire(f"bitmask:confirm:{token}", 1)
    await wait_until(lambda: _gone(redis, token), 5, "the confirmation to expire")
    press(telegram, alice, asked, "Confirm")
    await answered(telegram, "expired")
    stripped = await telegram.wait_for(alice.id, lambda m: m.message_id == asked.message_id)
    assert stripped.buttons() == []
    assert await balance_msat(vnode, bob) == 0


async def _gone(redis: Redis, token: str) -> bool:
    return not await redis.exists(f"bitmask:confirm:{token}")


async def test_reply_with_send_and_tip_in_a_group_pay_the_author(
        bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode, db: asyncpg.Connection) -> None:
    alice, carol = new_user("Alice", "alice"), new_user("Carol", "carol")
    await started(telegram, alice)
    await funded(vnode, alice, 10_000, telegram)
    # carol never talked to the bot: a tip opens her wallet. Telegram does not let a bot
    # write first to a user, so she is not told in private (the group saw it).
    said = telegram.user_says(carol, "gm everyone", chat_id=GROUP, chat_type="supergroup")
    telegram.user_says(alice, "/tip 100", chat_id=GROUP, chat_type="supergroup", reply_to=said)
    asked = await telegram.wait_for(GROUP, is_confirmation)
    assert "100 sats" in (asked.text or "") and f"vn_{carol.id}" in (asked.text or "")

    press(telegram, carol, asked, "Confirm")  # not hers to press
    await answered(telegram, "not for you")
    assert await balance_msat(vnode, alice) == 10_000_000

    press(telegram, alice, asked, "Confirm")
    await telegram.wait_for(GROUP, lambda m: "Sent 100 sats" in (m.text or ""))

    telegram.user_says(alice, "/send 250 thanks", chat_id=GROUP, chat_type="supergroup",
                       reply_to=said)
    again = await telegram.wait_for(GROUP, is_confirmation)
    assert "250 sats" in (again.text or "") and "thanks" in (again.text or "")
    press(telegram, alice, again, "Confirm")
    await telegram.wait_for(GROUP, lambda m: "Sent 250 sats" in (m.text or ""))
    assert await balance_msat(vnode, carol) == 350_000
    await notified(db, carol, "transfer.completed", count=2)
    assert telegram.messages(carol.id) == []


async def test_tip_needs_a_reply_and_a_human(bot: BotRuntime, telegram: FakeTelegram,
                                            vnode: Vnode) -> None:
    alice = new_user("Alice")
    await started(telegram, alice)
    await funded(vnode, alice, 1000, telegram)
    telegram.user_says(alice, "/tip 100", chat_id=GROUP, chat_type="supergroup")
    assert "Reply to someone's message" in ((await telegram.wait_for(GROUP)).text or "")
    mine = telegram.user_says(alice, "my own words", chat_id=GROUP, chat_type="supergroup")
    telegram.user_says(alice, "/tip 100", chat_id=GROUP, chat_type="supergroup", reply_to=mine)
    assert "yourself" in ((await telegram.wait_for(GROUP)).text or "")


async def test_a_username_that_changed_owner_never_gets_the_old_owners_money(
        bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode) -> None:
    alice = new_user("Alice")
    dave = new_user("Dave", "handle")
    assert dave.username is not None
    handle = dave.username
    await started(telegram, alice)
    await started(telegram, dave)
    await funded(vnode, alice, 10_000, telegram)

    # alice prepares a send to @handle while it is dave's...
    for_dave = await asks_to_confirm(telegram, alice, f"/send 1000 @{handle}")
    assert f"vn_{dave.id}" in (for_dave.text or "")
    # ...dave renames, and eve takes @handle and talks to the bot before alice confirms.
    dave_renamed = TgUser(id=dave.id, first_name="Dave", username=f"{handle}_new")
    telegram.user_says(dave_renamed, "/help")
    await telegram.wait_for(dave.id, lambda m: "/history" in (m.text or ""))
    eve = TgUser(id=new_user("Eve").id, first_name="Eve", username=handle)
    await started(telegram, eve)
    press(telegram, alice, for_dave, "Confirm")
    await telegram.wait_for(alice.id, lambda m: "Sent 1,000 sats" in (m.text or ""))
    assert await balance_msat(vnode, dave) == 1_000_000  # the id alice confirmed
    assert await balance_msat(vnode, eve) == 0

    # A new /send @handle now names eve, with her node id, before anything moves.
    for_eve = await asks_to_confirm(telegram, alice, f"/send 1000 @{handle}")
    assert f"vn_{eve.id}" in (for_eve.text or "") and f"vn_{dave.id}" not in (for_eve.text or "")
    # The old name of dave now resolves to nobody who hasn't shown it, and unknown names fail.
    telegram.user_says(alice, "/send 1000 @nobody_has_this_name")
    refused = await telegram.wait_for(alice.id)
    assert "don't know @nobody_has_this_name" in (refused.text or "")


async def test_refusals_before_confirm(bot: BotRuntime, telegram: FakeTelegram,
                                       vnode: Vnode) -> None:
    alice, bob = await two_users(telegram, vnode, 1000)
    cases = [
        (f"/send 5000 {bob.id}", "Not enough balance"),
        (f"/send abc {bob.id}", "not an amount"),
        ("/send 5k", "Who to?"),
        (f"/send 10 {alice.id}", "yourself"),
        (f"/send 10 {new_user('Ghost').id}", "has no bitMaskRGB wallet"),
        ("/send 10 @x!", "not a recipient"),
        (f"/send 0 {bob.id}", "more than zero"),
    ]
    for text, expected in cases:
        telegram.user_says(alice, text)
        answer = await telegram.wait_for(alice.id)
        assert expected in (answer.text or ""), (text, answer.text)
        assert answer.buttons() == []
    assert await balance_msat(vnode, alice) == 1_000_000 and await balance_msat(vnode, bob) == 0


async def test_balance_spent_elsewhere_before_confirm_is_refused_at_confirm(
        bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode) -> None:
    alice, bob = await two_users(telegram, vnode, 3000)
    asked = await asks_to_confirm(telegram, alice, f"/send 2000 {bob.id}")
    # Meanwhile the balance goes elsewhere (another device, another chat).
    await vnode.admin.admin_debit(alice.id, amount_msat=2_000_000, reason="spent elsewhere")
    press(telegram, alice, asked, "Confirm")
    refused = await telegram.wait_for(
        alice.id, lambda m: m.message_id == asked.message_id and "Sending" not in (m.text or ""))
    assert refused.text == "Not enough balance for that." and refused.buttons() == []
    assert await balance_msat(vnode, bob) == 0 and await balance_msat(vnode, alice) == 1_000_000


async def test_names_and_memos_with_markup_are_shown_as_text(
        bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode) -> None:
    alice = TgUser(id=new_user("x").id, first_name="<b>Al & Co</b>", username=None)
    bob = new_user("<i>Bob")
    await started(telegram, alice)
    await started(telegram, bob)
    await funded(vnode, alice, 5000, telegram)
    memo = "<script>alert(1)</script> & <b>"
    asked = await asks_to_confirm(telegram, alice, f"/send 100 {bob.id} {memo}")
    assert memo in (asked.text or "")  # the stand-in parses HTML strictly: shown as typed
    press(telegram, alice, asked, "Confirm")
    told = await telegram.wait_for(bob.id, lambda m: "Received" in (m.text or ""))
    assert "<b>Al & Co</b>" in (told.text or "") and memo in (told.text or "")
    too_long = "m" * 257
    telegram.user_says(alice, f"/send 100 {bob.id} {too_long}")
    await telegram.wait_for(alice.id, lambda m: "memo is too long" in (m.text or ""))


async def test_a_reply_with_a_number_keeps_it_in_the_memo(
        bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode) -> None:
    alice, carol = new_user("Alice"), new_user("Carol")
    await started(telegram, alice)
    await funded(vnode, alice, 5000)
    said = telegram.user_says(carol, "/help", chat_id=GROUP, chat_type="supergroup")
    telegram.user_says(alice, "/send 500 42 thanks", chat_id=GROUP, chat_type="supergroup",
                       reply_to=said)
    asked = await telegram.wait_for(GROUP, is_confirmation)
    assert f"vn_{carol.id}" in (asked.text or "") and "42 thanks" in (asked.text or "")


async def test_balance_and_history_stay_private(bot: BotRuntime, telegram: FakeTelegram,
                                                vnode: Vnode) -> None:
    alice = new_user("Alice")
    await started(telegram, alice)
    for command in ("/balance", "/history"):
        telegram.user_says(alice, command, chat_id=GROUP, chat_type="supergroup")
        answer = await telegram.wait_for(GROUP, lambda m: "private chat" in (m.text or ""))
        assert "sats" not in (answer.text or "")
