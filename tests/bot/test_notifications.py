"""Notifications: each vnode event tells its user once, from the Redis stream across bot
restarts and redeliveries, or from signed webhooks; and `vnode bot` as a real process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import asyncpg
import httpx
from redis.asyncio import Redis

from tests.bot.conftest import (
    BOT_TOKEN,
    Vnode,
    bot_settings,
    funded,
    new_user,
    started,
)
from tests.bot.telegram_api import FakeTelegram, TgUser
from tests.events.redis_server import RedisServer
from tests.support import ADMIN_KEY, VNODE, bearer, free_port, wait_until
from vnode.bot.runtime import BotRuntime
from vnode.payments.signing import SIGNATURE_HEADER, sign


def received(telegram: FakeTelegram, user: TgUser) -> list[str]:
    return [m.text or "" for m in telegram.messages(user.id) if "Received" in (m.text or "")]


async def test_events_while_the_bot_is_down_are_told_once_after_restarts(
        own_vnode: Vnode, own_telegram: FakeTelegram, bot_redis: RedisServer) -> None:
    telegram = own_telegram
    settings = bot_settings(own_vnode, telegram, bot_redis.url)
    first = BotRuntime(settings)
    await first.start()
    alice, bob = new_user("Alice", "alice"), new_user("Bob")
    await started(telegram, alice)
    await started(telegram, bob)
    await first.stop()

    await funded(own_vnode, alice, 10_000)
    for amount in (1000, 2000, 3000):  # while no bot runs
        await own_vnode.admin.transfer(alice.id, bob.id, amount_sats=amount)
    second = BotRuntime(settings)
    await second.start()
    try:
        await wait_until(lambda: _count(telegram, bob, 3), 20, "bob told of three transfers")
    finally:
        await second.stop()

    # A redelivery of the whole stream (as after a crash before XACK) tells nobody again.
    redis = Redis.from_url(bot_redis.url)
    try:
        await redis.xgroup_setid(own_vnode.stream_key, settings.bot_consumer_group, id="0")
    finally:
        await redis.aclose()
    third = BotRuntime(settings)
    await third.start()
    try:
        await own_vnode.admin.transfer(alice.id, bob.id, amount_sats=4000)
        await wait_until(lambda: _count(telegram, bob, 4), 20, "the fourth transfer told")
    finally:
        await third.stop()
    texts = received(telegram, bob)
    for amount in ("1,000", "2,000", "3,000", "4,000"):
        assert sum(f"{amount} sats" in t for t in texts) == 1, texts
    assert all(f"@{alice.username}" in t for t in texts)
    # alice's own welcome credit is told once too.
    assert len(received(telegram, alice)) == 1


async def _count(telegram: FakeTelegram, user: TgUser, count: int) -> bool:
    return len(received(telegram, user)) >= count


async def test_a_message_telegram_refused_is_retried_not_lost(
        own_vnode: Vnode, own_telegram: FakeTelegram, bot_redis: RedisServer) -> None:
    telegram = own_telegram
    runtime = BotRuntime(bot_settings(own_vnode, telegram, bot_redis.url))
    await runtime.start()
    try:
        carol = new_user("Carol")
        await started(telegram, carol)
        # Telegram's servers fail twice (502) on the notification: it comes again, once.
        telegram.fail_next("sendMessage", error_code=502, description="Bad Gateway",
                           retry_after=None, times=2)
        await funded(own_vnode, carol, 777)
        told = await telegram.wait_for(carol.id, lambda m: "777 sats" in (m.text or ""),
                                       timeout_s=20)
        assert "Received" in (told.text or "")
        assert len(received(telegram, carol)) == 1
    finally:
        await runtime.stop()


async def test_webhook_mode_verifies_signatures(
        own_vnode: Vnode, own_telegram: FakeTelegram, bot_redis: RedisServer) -> None:
    telegram = own_telegram
    port = free_port()
    async with httpx.AsyncClient(base_url=own_vnode.url, headers=bearer(ADMIN_KEY)) as admin:
        made = await admin.post("/admin/webhooks", json={
            "url": f"http://127.0.0.1:{port}/vnode/events"})
        assert made.status_code in (200, 201), made.text
        secret = made.json()["secret"]
    runtime = BotRuntime(bot_settings(
        own_vnode, telegram, bot_redis.url, bot_events="webhook", bot_webhook_port=port,
        bot_webhook_secret=secret, redis_stream_key="test:unused"))
    await runtime.start()
    try:
        dave, erin = new_user("Dave", "dave"), new_user("Erin")
        await started(telegram, dave)
        await started(telegram, erin)
        await funded(own_vnode, dave, 5000)
        await own_vnode.admin.transfer(dave.id, erin.id, amount_sats=1234, memo="via webhook")
        told = await telegram.wait_for(erin.id, lambda m: "Received" in (m.text or ""),
                                       timeout_s=20)
        assert "1,234 sats" in (told.text or "") and "via webhook" in (told.text or "")

        # A forged event (wrong secret) is refused and tells nobody.
        forged = (b'{"version":1,"id":"6f1c7a52-8f57-4f7a-9d55-3f0e7d3c9a11","type":'
                  b'"admin.credit","user_id":' + str(erin.id).encode() + b',"seq":99,'
                  b'"created_at":"2026-11-26T10:00:00Z","data":{"transaction_id":1,'
                  b'"direction":"in","asset_id":"BTC","amount_msat":99000000000,'
                  b'"reason":"free money","created_at":"2026-11-26T10:00:00Z"}}')
        async with httpx.AsyncClient() as client:
            url = f"http://127.0.0.1:{port}/vnode/events"
            refused = await client.post(url, content=forged, headers={
                SIGNATURE_HEADER: sign(b"not-the-secret", forged)})
            assert refused.status_code == 401
            unsigned = await client.post(url, content=forged)
            assert unsigned.status_code == 401
        assert not any("free money" in (m.text or "") for m in telegram.messages(erin.id))
    finally:
        await runtime.stop()


async def test_vnode_bot_command_runs_the_bot(own_vnode: Vnode, own_telegram: FakeTelegram,
                                              bot_redis: RedisServer, tmp_path: Path) -> None:
    telegram = own_telegram
    env = {k: v for k, v in os.environ.items() if not k.startswith("VNODE_")}
    env.update({"VNODE_BOT_TOKEN": BOT_TOKEN, "VNODE_BOT_API_URL": telegram.base_url,
                "VNODE_URL": own_vnode.url, "VNODE_API_KEY": own_vnode.spend_key,
                "VNODE_REDIS_URL": bot_redis.url, "VNODE_DATABASE_URL": own_vnode.database_url,
                "VNODE_REDIS_STREAM_KEY": own_vnode.stream_key})
    log = (tmp_path / "bot.log").open("wb")
    proc = subprocess.Popen([VNODE, "bot"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        frank = new_user("Frank")
        # The process imports all of vnode before it polls: on a loaded machine that alone
        # can outlast a message's usual 10 s wait, so the first answer gets longer.
        telegram.user_says(frank, "/start")
        await telegram.wait_for(frank.id, lambda m: "Your virtual node is ready" in (m.text or ""),
                                timeout_s=60)
        await funded(own_vnode, frank, 4200)
        told = await telegram.wait_for(frank.id, lambda m: "Received" in (m.text or ""),
                                       timeout_s=20)
        assert "4,200 sats" in (told.text or "")
    finally:
        proc.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(proc.wait, 20)
        log.close()
    output = (tmp_path / "bot.log").read_text()
    assert code == 0, output
    assert BOT_TOKEN not in output and own_vnode.spend_key not in output


async def test_profiles_record_first_and_last_seen(bot: BotRuntime, telegram: FakeTelegram,
                                                   db: asyncpg.Connection) -> None:
    gina = TgUser(id=new_user("Gina").id, first_name="Gina", username=None,
                  language_code="it")
    await started(telegram, gina)
    row = await db.fetchrow("SELECT * FROM bitmask.profiles WHERE user_id = $1", gina.id)
    assert row is not None and row["language"] == "it" and row["username"] is None
    assert row["first_seen"] <= row["last_seen"]
