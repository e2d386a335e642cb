"""Behaviour under trouble: vnode unreachable (before and during a money call), Telegram's
flood limit, the bot's own rate limit. A short friendly message, nothing sent twice."""

from __future__ import annotations

from harness.redis import RedisServer
from tests.bot.conftest import (
    Vnode,
    asks_to_confirm,
    balance_msat,
    bot_settings,
    funded,
    new_user,
    press,
    serve_env,
    two_users,
)
from tests.bot.cutting_proxy import CuttingProxy
from tests.support import ServeProcess, free_port, wait_until
from vnode.bot.runtime import CHAT_RETRY, BotRuntime
from vnode.demo.bot_api import FakeTelegram


async def test_vnode_unreachable_gets_a_short_answer(
    own_telegram: FakeTelegram, vnode: Vnode, bot_redis: RedisServer
) -> None:
    telegram = own_telegram
    settings = bot_settings(
        vnode,
        telegram,
        bot_redis.url,
        redis_stream_key="test:nowhere",
        url=f"http://127.0.0.1:{free_port()}",
    )
    runtime = BotRuntime(settings)
    await runtime.start()
    try:
        alice = new_user("Alice")
        telegram.user_says(alice, "/balance")
        answer = await telegram.wait_for(alice.id)
        assert "can't reach the wallet service" in (answer.text or "")
        assert "Traceback" not in (answer.text or "")
    finally:
        await runtime.stop()


async def test_vnode_down_at_confirm_then_back_sends_once(
    own_vnode: Vnode, own_telegram: FakeTelegram, bot_redis: RedisServer
) -> None:
    telegram = own_telegram
    runtime = BotRuntime(bot_settings(own_vnode, telegram, bot_redis.url))
    await runtime.start()
    try:
        alice, bob = await two_users(telegram, own_vnode, 10_000)
        asked = await asks_to_confirm(telegram, alice, f"/send 4000 {bob.id}")

        serve = own_vnode.serve
        serve.stop()
        press(telegram, alice, asked, "Confirm")
        unsure = await telegram.wait_for(
            alice.id, lambda m: "don't know yet" in (m.text or ""), timeout_s=20
        )
        assert [t for t, _ in unsure.buttons()] == ["Try again"]  # no Cancel: it may be sent

        own_vnode.serve = ServeProcess(
            own_vnode.database_url,
            serve.data_dir,
            port=serve.port,
            extra_env=serve_env(bot_redis.url, own_vnode.stream_key),
        )
        await own_vnode.serve.wait_ready()
        press(telegram, alice, unsure, "Try again")
        await telegram.wait_for(alice.id, lambda m: "Sent 4,000 sats" in (m.text or ""))
        assert await balance_msat(own_vnode, bob) == 4_000_000
        assert await balance_msat(own_vnode, alice) == 6_000_000
    finally:
        await runtime.stop()


async def test_telegram_flood_limit_is_waited_out(bot: BotRuntime, telegram: FakeTelegram) -> None:
    alice = new_user("Alice")
    telegram.fail_next("sendMessage", error_code=429, retry_after=1)
    telegram.user_says(alice, "/help")
    answer = await telegram.wait_for(alice.id)
    assert "/history" in (answer.text or "")
    assert (
        len(
            [
                c
                for c in telegram.calls("sendMessage")
                if c["params"].get("chat_id") in (alice.id, str(alice.id))
            ]
        )
        == 2
    )
    assert len(telegram.messages(alice.id)) == 1  # refused once, then sent once


async def test_rate_limit_says_slow_down_once(
    vnode: Vnode, own_telegram: FakeTelegram, bot_redis: RedisServer
) -> None:
    telegram = own_telegram
    runtime = BotRuntime(
        bot_settings(
            vnode,
            telegram,
            bot_redis.url,
            bot_rate_limit=3,
            bot_rate_window_s=60,
            redis_stream_key="test:rate",
        )
    )
    await runtime.start()
    try:
        spammer = new_user("Spammer")
        for _ in range(6):
            telegram.user_says(spammer, "/help")
        await telegram.wait_for(spammer.id, lambda m: "Slow down" in (m.text or ""))
        telegram.user_says(spammer, "/help")
        other = new_user("Other")  # others are not slowed down
        telegram.user_says(other, "/help")

        def texts() -> list[str]:
            return [m.text or "" for m in telegram.messages(spammer.id)]

        async def three_answers() -> bool:
            return sum("/history" in t for t in texts()) >= 3

        await wait_until(three_answers, 10, "three answers to the spammer")
        await telegram.wait_for(other.id)  # handled after all the spammer's updates
        assert sum("/history" in t for t in texts()) == 3
        assert sum("Slow down" in t for t in texts()) == 1
    finally:
        await runtime.stop()


async def test_result_is_said_anew_when_the_confirmation_cannot_be_edited(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode
) -> None:
    alice, bob = await two_users(telegram, vnode, 5000)
    asked = await asks_to_confirm(telegram, alice, f"/send 1500 {bob.id}")
    telegram.fail_next(
        "editMessageText", error_code=502, description="Bad Gateway", retry_after=None, times=2
    )
    press(telegram, alice, asked, "Confirm")
    said = await telegram.wait_for(alice.id, lambda m: "Sent 1,500 sats" in (m.text or ""))
    assert said.message_id != asked.message_id and said.method == "sendMessage"
    assert await balance_msat(vnode, bob) == 1_500_000


async def test_a_lost_answer_is_retried_with_the_same_key(
    bot_behind_proxy: BotRuntime, own_telegram: FakeTelegram, vnode: Vnode, proxy: CuttingProxy
) -> None:
    telegram = own_telegram
    alice, bob = await two_users(telegram, vnode)
    await funded(vnode, alice, 10_000)  # (this bot does not hear the session's events)
    asked = await asks_to_confirm(telegram, alice, f"/send 3000 {bob.id}")
    proxy.cut_next = 1  # vnode carries the transfer out; its answer is lost
    press(telegram, alice, asked, "Confirm")
    await telegram.wait_for(alice.id, lambda m: "Sent 3,000 sats" in (m.text or ""))
    assert proxy.cut == 1
    assert await balance_msat(vnode, bob) == 3_000_000  # once, not twice
    assert len((await vnode.admin.history(bob.id)).transactions) == 1


async def test_an_unknown_outcome_is_never_called_nothing_sent(
    bot_behind_proxy: BotRuntime, own_telegram: FakeTelegram, vnode: Vnode, proxy: CuttingProxy
) -> None:
    telegram = own_telegram
    alice, bob = await two_users(telegram, vnode)
    await funded(vnode, alice, 10_000)
    asked = await asks_to_confirm(telegram, alice, f"/send 2000 {bob.id} rent")
    # Every send the client's chat policy makes: the outcome stays unknown.
    proxy.cut_next = CHAT_RETRY.attempts
    press(telegram, alice, asked, "Confirm")
    unsure = await telegram.wait_for(alice.id, lambda m: "don't know yet" in (m.text or ""))
    assert [t for t, _ in unsure.buttons()] == ["Try again"]
    assert "Nothing was sent" not in (unsure.text or "")
    assert await balance_msat(vnode, bob) == 2_000_000  # it did go through
    press(telegram, alice, unsure, "Try again")
    done = await telegram.wait_for(alice.id, lambda m: "Sent 2,000 sats" in (m.text or ""))
    assert done.buttons() == []
    assert await balance_msat(vnode, bob) == 2_000_000
    assert len((await vnode.admin.history(bob.id)).transactions) == 1
