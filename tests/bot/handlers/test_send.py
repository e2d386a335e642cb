"""Scripted conversations: /send and /tip between users, with Confirm / Cancel."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import asyncpg
import pytest
from aiogram.types import TelegramObject
from redis.asyncio import Redis

from tests.bot.conftest import (
    BOT_TOKEN,
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
from tests.bot.cutting_proxy import CuttingProxy
from tests.support import new_user_id, wait_until
from vnode.bot import texts
from vnode.bot.confirmations import PendingAction, PendingActions
from vnode.bot.runtime import CHAT_RETRY, BotRuntime
from vnode.bot.settings import BotSettings
from vnode.demo.bot_api import FakeTelegram, TgUser

GROUP = -1001234567890


async def test_send_to_a_username_after_confirm_and_the_payee_is_told(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode, db: asyncpg.Connection
) -> None:
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


async def test_amount_forms_telegram_ids_and_vn_ids(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode
) -> None:
    alice, bob = await two_users(telegram, vnode, 1_000_000)
    for text, shown in (
        (f"/send 0.0001 btc {bob.id}", "10,000 sats"),
        (f"/send 1,500 sats vn_{bob.id}", "1,500 sats"),
        (f"/send 2.5k vn_{bob.id} thanks", "2,500 sats"),
    ):
        telegram.user_says(alice, text)
        asked = await telegram.wait_for(alice.id, is_confirmation)
        assert shown in (asked.text or "") and f"vn_{bob.id}" in (asked.text or ""), text


async def test_double_tap_on_confirm_sends_once(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode
) -> None:
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


async def test_cancel_sends_nothing(bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode) -> None:
    alice, bob = await two_users(telegram, vnode, 10_000)
    asked = await asks_to_confirm(telegram, alice, f"/send 1000 {bob.id}")
    taps = [
        press(telegram, alice, asked, "Cancel"),
        press(telegram, alice, asked, "Confirm"),
    ]  # the second before the first's answer
    cancelled = await telegram.wait_for(alice.id, lambda m: "Cancelled" in (m.text or ""))
    assert cancelled.buttons() == []
    for tap in taps:
        assert (await telegram.wait_for_answer(tap))["text"] == "Cancelled. Nothing was sent."
    assert await balance_msat(vnode, bob) == 0 and await balance_msat(vnode, alice) == 10_000_000


async def test_confirmation_expires(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode, redis: Redis
) -> None:
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
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode, db: asyncpg.Connection
) -> None:
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

    telegram.user_says(
        alice, "/send 250 thanks", chat_id=GROUP, chat_type="supergroup", reply_to=said
    )
    again = await telegram.wait_for(GROUP, is_confirmation)
    assert "250 sats" in (again.text or "") and "thanks" in (again.text or "")
    press(telegram, alice, again, "Confirm")
    await telegram.wait_for(GROUP, lambda m: "Sent 250 sats" in (m.text or ""))
    assert await balance_msat(vnode, carol) == 350_000
    await notified(db, carol, "transfer.completed", count=2)
    assert telegram.messages(carol.id) == []


async def test_tip_needs_a_reply_and_a_human(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode
) -> None:
    alice = new_user("Alice")
    await started(telegram, alice)
    await funded(vnode, alice, 1000, telegram)
    telegram.user_says(alice, "/tip 100", chat_id=GROUP, chat_type="supergroup")
    assert "Reply to someone's message" in ((await telegram.wait_for(GROUP)).text or "")
    mine = telegram.user_says(alice, "my own words", chat_id=GROUP, chat_type="supergroup")
    telegram.user_says(alice, "/tip 100", chat_id=GROUP, chat_type="supergroup", reply_to=mine)
    assert "yourself" in ((await telegram.wait_for(GROUP)).text or "")


async def test_a_username_that_changed_owner_never_gets_the_old_owners_money(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode
) -> None:
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


async def test_refusals_before_confirm(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode
) -> None:
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
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode
) -> None:
    alice, bob = await two_users(telegram, vnode, 3000)
    asked = await asks_to_confirm(telegram, alice, f"/send 2000 {bob.id}")
    # Meanwhile the balance goes elsewhere (another device, another chat).
    await vnode.admin.admin_debit(alice.id, amount_msat=2_000_000, reason="spent elsewhere")
    press(telegram, alice, asked, "Confirm")
    refused = await telegram.wait_for(
        alice.id, lambda m: m.message_id == asked.message_id and "Sending" not in (m.text or "")
    )
    assert refused.text == "Not enough balance for that." and refused.buttons() == []
    assert await balance_msat(vnode, bob) == 0 and await balance_msat(vnode, alice) == 1_000_000


async def test_names_and_memos_with_markup_are_shown_as_text(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode
) -> None:
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
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode
) -> None:
    alice, carol = new_user("Alice"), new_user("Carol")
    await started(telegram, alice)
    await funded(vnode, alice, 5000)
    said = telegram.user_says(carol, "/help", chat_id=GROUP, chat_type="supergroup")
    telegram.user_says(
        alice, "/send 500 42 thanks", chat_id=GROUP, chat_type="supergroup", reply_to=said
    )
    asked = await telegram.wait_for(GROUP, is_confirmation)
    assert f"vn_{carol.id}" in (asked.text or "") and "42 thanks" in (asked.text or "")


async def test_balance_and_history_stay_private(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode
) -> None:
    alice = new_user("Alice")
    await started(telegram, alice)
    for command in ("/balance", "/history"):
        telegram.user_says(alice, command, chat_id=GROUP, chat_type="supergroup")
        answer = await telegram.wait_for(GROUP, lambda m: "private chat" in (m.text or ""))
        assert "sats" not in (answer.text or "")


# --- L10: a press is judged on the action it takes ---------------------------------------

# Who pressed the button whose handler is running (set by a middleware the test adds).
_PRESSER: ContextVar[int | None] = ContextVar("presser", default=None)


async def _remember_presser(
    handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
    event: TelegramObject,
    data: dict[str, Any],
) -> Any:
    user = getattr(event, "from_user", None)
    reset = _PRESSER.set(user.id if user is not None else None)
    try:
        return await handler(event, data)
    finally:
        _PRESSER.reset(reset)


class _Interleaving:
    """Puts an intruder's press between the owner's Confirm and its unknown outcome.

    The intruder's first call to the store waits until the owner's Confirm has taken the
    action. A read (`peek`) is made then, while the owner's money call holds the action,
    and its answer is handed back only after that call has put the action back for "Try
    again"; a `take` made first waits for the put-back before it runs. The owner's put-back
    waits for the intruder to be in. Every wait has a deadline."""

    def __init__(
        self, store: PendingActions, intruder_id: int, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.intruder_id = intruder_id
        self.owner_took = asyncio.Event()
        self.intruder_in = asyncio.Event()
        self.put_back = asyncio.Event()
        self._first = True
        self._peek, self._take, self._put = store.peek, store.take, store.put
        monkeypatch.setattr(store, "peek", self.peek)
        monkeypatch.setattr(store, "take", self.take)
        monkeypatch.setattr(store, "put", self.put)

    async def _intruders_first_call(self) -> bool:
        if _PRESSER.get() != self.intruder_id or not self._first:
            return False
        self._first = False
        await asyncio.wait_for(self.owner_took.wait(), 20)
        return True

    async def peek(self, token: str) -> PendingAction | None:
        if not await self._intruders_first_call():
            return await self._peek(token)
        found = await self._peek(token)  # nothing there: the owner's call holds it
        self.intruder_in.set()
        await asyncio.wait_for(self.put_back.wait(), 20)
        return found

    async def take(self, token: str, *args: Any) -> Any:
        if await self._intruders_first_call():
            self.intruder_in.set()
            await asyncio.wait_for(self.put_back.wait(), 20)
        taken = await self._take(token, *args)
        if _PRESSER.get() != self.intruder_id and isinstance(taken, PendingAction):
            self.owner_took.set()
        return taken

    async def put(self, action: PendingAction, ttl_s: int | None = None) -> None:
        if action.attempted:  # the owner's call, its outcome unknown, puts it back
            await asyncio.wait_for(self.intruder_in.wait(), 20)
        await self._put(action, ttl_s)
        if action.attempted:
            self.put_back.set()


async def test_l10_foreign_tap_cannot_take_owners_action(
    bot_behind_proxy: BotRuntime,
    own_telegram: FakeTelegram,
    vnode: Vnode,
    proxy: CuttingProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    telegram = own_telegram
    alice, bob = await two_users(telegram, vnode)
    mallory = new_user("Mallory")
    await funded(vnode, alice, 10_000)  # (this bot does not hear the session's events)
    telegram.user_says(alice, f"/send 2000 {bob.id}", chat_id=GROUP, chat_type="supergroup")
    asked = await telegram.wait_for(GROUP, is_confirmation)
    token = dict(asked.buttons())["Confirm"].split(":")[-1]

    dispatcher = bot_behind_proxy.dispatcher
    assert dispatcher is not None
    store: PendingActions = dispatcher["ctx"].pending
    _Interleaving(store, mallory.id, monkeypatch)
    dispatcher.callback_query.outer_middleware(_remember_presser)
    proxy.cut_next = CHAT_RETRY.attempts  # every send: vnode carries it out, unanswered
    press(telegram, alice, asked, "Confirm")
    tap = press(telegram, mallory, asked, "Cancel")  # both taps land together

    assert (await telegram.wait_for_answer(tap, timeout_s=20))["text"] == texts.NOT_YOURS
    unsure = await telegram.wait_for(
        GROUP, lambda m: "don't know yet" in (m.text or ""), timeout_s=20
    )
    waiting = await store.peek(token)  # alice's action is still there, for Try again
    assert waiting is not None and waiting.user_id == alice.id and waiting.attempted
    live = next(m for m in telegram.messages(GROUP) if m.message_id == asked.message_id)
    assert [t for t, _ in live.buttons()] == ["Try again"]
    assert not any(texts.CANCELLED in t for t in (live.text or "", *live.edits))

    press(telegram, alice, unsure, "Try again")
    await telegram.wait_for(GROUP, lambda m: "Sent 2,000 sats" in (m.text or ""))
    assert await balance_msat(vnode, bob) == 2_000_000
    assert len((await vnode.admin.history(bob.id)).transactions) == 1


# --- L11: stale usernames, first names -------------------------------------------------


async def _last_seen_days_ago(db: asyncpg.Connection, user: TgUser, days: int) -> None:
    await db.execute(
        "UPDATE bitmask.profiles SET last_seen = now() - make_interval(days => $2) "
        "WHERE user_id = $1",
        user.id,
        days,
    )


async def test_l11_stale_username_refused(
    bot: BotRuntime,
    telegram: FakeTelegram,
    vnode: Vnode,
    db: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice, bob = await two_users(telegram, vnode, 20_000, usernames=True)
    assert bob.username is not None

    # bob was last seen holding the name 31 days ago: he may have renamed away since.
    await _last_seen_days_ago(db, bob, 31)
    telegram.user_says(alice, f"/send 5000 @{bob.username}")
    refused = await telegram.wait_for(alice.id)
    text = refused.text or ""
    assert f"haven't seen @{bob.username} for over 30 days" in text, text
    assert "Reply to one of their messages" in text and "Telegram id or vn_ id" in text
    assert str(bob.id) not in text and refused.buttons() == []  # whose it was is not said
    assert await balance_msat(vnode, alice) == 20_000_000 and await balance_msat(vnode, bob) == 0

    # Within the window the name is trusted.
    await _last_seen_days_ago(db, bob, 29)
    asked = await asks_to_confirm(telegram, alice, f"/send 5000 @{bob.username}")
    assert f"vn_{bob.id}" in (asked.text or "")

    # His id still works, without the old name shown as his.
    await _last_seen_days_ago(db, bob, 31)
    by_id = await asks_to_confirm(telegram, alice, f"/send 5000 vn_{bob.id}")
    assert f"Bob (vn_{bob.id})" in (by_id.text or "") and "@" not in (by_id.text or "")

    # Seen again with the name, it is trusted again. (A changed first name: an unchanged
    # profile seen within a minute is not written again.)
    telegram.user_says(TgUser(id=bob.id, first_name="Bobby", username=bob.username), "/help")
    await telegram.wait_for(bob.id, lambda m: "/history" in (m.text or ""))
    again = await asks_to_confirm(telegram, alice, f"/send 5000 @{bob.username}")
    assert f"Bobby (@{bob.username}, vn_{bob.id})" in (again.text or "")

    monkeypatch.setenv("VNODE_BOT_USERNAME_FRESH_DAYS", "7")
    assert (
        BotSettings(
            bot_token=BOT_TOKEN, api_key="k", redis_url="redis://x", database_url="postgresql://x"
        ).bot_username_fresh_days
        == 7
    )


async def test_l11_confirmation_shows_first_name(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode
) -> None:
    alice = new_user("Alice")
    bob = TgUser(
        id=new_user_id(), first_name="Bób <i>&</i>", username=f"bob_{secrets.token_hex(3)}"
    )
    await started(telegram, alice)
    await started(telegram, bob)
    await funded(vnode, alice, 10_000, telegram)
    shown = f"Bób <i>&</i> (@{bob.username}, vn_{bob.id})"
    for text in (f"/send 1000 @{bob.username}", f"/send 1000 {bob.id}", f"/send 1000 vn_{bob.id}"):
        asked = await asks_to_confirm(telegram, alice, text)
        assert shown in (asked.text or ""), (text, asked.text)
        assert "Bób &lt;i&gt;&amp;&lt;/i&gt;" in (asked.raw_text or "")  # text, not markup

    # A reply: the name and username come from Telegram.
    carol = new_user("Carol <b>", "carol")
    said = telegram.user_says(carol, "gm", chat_id=GROUP, chat_type="supergroup")
    telegram.user_says(alice, "/send 100", chat_id=GROUP, chat_type="supergroup", reply_to=said)
    asked = await telegram.wait_for(
        GROUP, lambda m: is_confirmation(m) and f"vn_{carol.id}" in (m.text or "")
    )
    assert f"Carol <b> (@{carol.username}, vn_{carol.id})" in (asked.text or "")

    # A wallet whose owner the bot has never seen: no name to show, and it says so.
    ghost = new_user_id()
    await vnode.admin.node(ghost)
    asked = await asks_to_confirm(telegram, alice, f"/send 100 vn_{ghost}")
    assert f"name unknown (vn_{ghost})" in (asked.text or "")
