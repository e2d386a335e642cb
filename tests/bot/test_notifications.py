"""Notifications: each vnode event tells its user once, from the Redis stream across bot
restarts and redeliveries, or from signed webhooks (Standard Webhooks: the receiver's checks,
the secret's two forms, rotation); and `vnode bot` as a real process."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from harness.redis import RedisServer
from tests.bot.conftest import (
    BOT_TOKEN,
    Vnode,
    bot_settings,
    funded,
    new_user,
    notified,
    started,
)
from tests.support import ADMIN_KEY, VNODE, bearer, free_port, wait_until
from vnode.bot.inbox import TryLater, WebhookInbox
from vnode.bot.notify import Notifier
from vnode.bot.payment_calls import PaymentCalls
from vnode.bot.profiles import ProfileStore
from vnode.bot.runtime import BotRuntime
from vnode.bot.telegram import make_bot
from vnode.demo.bot_api import FakeTelegram, SentMessage, TgUser
from vnode.domain.signing import SIGNATURE_HEADER, sign
from vnode.events.endpoints import new_secret
from vnode.events.webhooks import standard_headers


def received(telegram: FakeTelegram, user: TgUser) -> list[str]:
    return [m.text or "" for m in telegram.messages(user.id) if "Received" in (m.text or "")]


async def test_events_while_the_bot_is_down_are_told_once_after_restarts(
    own_vnode: Vnode, own_telegram: FakeTelegram, bot_redis: RedisServer
) -> None:
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
    for shown in ("1,000", "2,000", "3,000", "4,000"):
        assert sum(f"{shown} sats" in t for t in texts) == 1, texts
    assert all(f"@{alice.username}" in t for t in texts)
    # alice's own welcome credit is told once too.
    assert len(received(telegram, alice)) == 1


async def _count(telegram: FakeTelegram, user: TgUser, count: int) -> bool:
    return len(received(telegram, user)) >= count


async def test_a_message_telegram_refused_is_retried_not_lost(
    own_vnode: Vnode, own_telegram: FakeTelegram, bot_redis: RedisServer
) -> None:
    telegram = own_telegram
    runtime = BotRuntime(bot_settings(own_vnode, telegram, bot_redis.url))
    await runtime.start()
    try:
        carol = new_user("Carol")
        await started(telegram, carol)
        # Telegram's servers fail twice (502) on the notification: it comes again, once.
        telegram.fail_next(
            "sendMessage", error_code=502, description="Bad Gateway", retry_after=None, times=2
        )
        await funded(own_vnode, carol, 777)
        # A deadline, not a pause: the message usually comes in about 2 s (two back-offs of the
        # inbox), but it once took longer than 20 s on a machine loaded 5 deep.
        told = await telegram.wait_for(
            carol.id, lambda m: "777 sats" in (m.text or ""), timeout_s=60
        )
        assert "Received" in (told.text or "")
        assert len(received(telegram, carol)) == 1
    finally:
        await runtime.stop()


async def test_webhook_mode_verifies_signatures(
    own_vnode: Vnode, own_telegram: FakeTelegram, bot_redis: RedisServer
) -> None:
    telegram = own_telegram
    port = free_port()
    async with httpx.AsyncClient(base_url=own_vnode.url, headers=bearer(ADMIN_KEY)) as admin:
        made = await admin.post(
            "/admin/webhooks", json={"url": f"http://127.0.0.1:{port}/vnode/events"}
        )
        assert made.status_code in (200, 201), made.text
        secret = made.json()["secret"]
    runtime = BotRuntime(
        bot_settings(
            own_vnode,
            telegram,
            bot_redis.url,
            bot_events="webhook",
            bot_webhook_port=port,
            bot_webhook_secret=secret,
            redis_stream_key="test:unused",
        )
    )
    await runtime.start()
    try:
        dave, erin = new_user("Dave", "dave"), new_user("Erin")
        await started(telegram, dave)
        await started(telegram, erin)
        await funded(own_vnode, dave, 5000)
        await own_vnode.admin.transfer(dave.id, erin.id, amount_sats=1234, memo="via webhook")
        told = await telegram.wait_for(
            erin.id, lambda m: "Received" in (m.text or ""), timeout_s=20
        )
        assert "1,234 sats" in (told.text or "") and "via webhook" in (told.text or "")

        # A forged event (wrong secret) is refused and tells nobody.
        forged = (
            b'{"version":1,"id":"6f1c7a52-8f57-4f7a-9d55-3f0e7d3c9a11","type":'
            b'"admin.credit","user_id":' + str(erin.id).encode() + b',"seq":99,'
            b'"created_at":"2026-11-26T10:00:00Z","data":{"transaction_id":1,'
            b'"direction":"in","asset_id":"BTC","amount_msat":99000000000,'
            b'"reason":"free money","created_at":"2026-11-26T10:00:00Z"}}'
        )
        async with httpx.AsyncClient() as client:
            url = f"http://127.0.0.1:{port}/vnode/events"
            refused = await client.post(
                url,
                content=forged,
                headers=standard_headers(
                    "6f1c7a52-8f57-4f7a-9d55-3f0e7d3c9a11", forged, [new_secret()]
                ),
            )
            assert refused.status_code == 401
            legacy = await client.post(
                url, content=forged, headers={SIGNATURE_HEADER: sign(b"not-the-secret", forged)}
            )
            assert legacy.status_code == 401
            unsigned = await client.post(url, content=forged)
            assert unsigned.status_code == 401
        assert not any("free money" in (m.text or "") for m in telegram.messages(erin.id))
    finally:
        await runtime.stop()


async def test_webhook_mode_across_a_secret_rotation(
    own_vnode: Vnode, own_telegram: FakeTelegram, bot_redis: RedisServer
) -> None:
    """The bot keeps the old secret while vnode rotates it (deliveries carry both signatures),
    then moves to the new one within the grace period: no notification is lost."""
    telegram = own_telegram
    port = free_port()
    async with httpx.AsyncClient(base_url=own_vnode.url, headers=bearer(ADMIN_KEY)) as admin:
        made = await admin.post(
            "/admin/webhooks", json={"url": f"http://127.0.0.1:{port}/vnode/events"}
        )
        assert made.status_code == 201, made.text
        old = made.json()["secret"]
        rotated = await admin.post(f"/admin/webhooks/{made.json()['id']}/rotate")
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["secret"]
    hank, ivy = new_user("Hank", "hank"), new_user("Ivy")
    for secret, amount in ((old, 1111), (new, 2222)):
        runtime = BotRuntime(
            bot_settings(
                own_vnode,
                telegram,
                bot_redis.url,
                bot_events="webhook",
                bot_webhook_port=port,
                bot_webhook_secret=secret,
                redis_stream_key="test:unused",
            )
        )
        await runtime.start()
        try:
            if secret == old:
                await started(telegram, hank)
                await started(telegram, ivy)
                await funded(own_vnode, hank, 5000)
            await own_vnode.admin.transfer(hank.id, ivy.id, amount_sats=amount)
            told = await telegram.wait_for(ivy.id, _mentions(f"{amount:,} sats"), timeout_s=20)
            assert "Received" in (told.text or "")
        finally:
            await runtime.stop()


def _mentions(fragment: str) -> Callable[[SentMessage], bool]:
    return lambda message: fragment in (message.text or "")


# --- the webhook receiver on its own (no vnode, no Telegram) ---------------------------------

BODY = (
    b'{"version":1,"id":"0b6f2a8e-0d0c-4c3e-9f58-3d8f0f3c1a11","type":"admin.credit",'
    b'"user_id":7,"seq":1,"created_at":"2026-12-06T08:00:00Z","data":{}}'
)
EVENT_ID = "0b6f2a8e-0d0c-4c3e-9f58-3d8f0f3c1a11"


class Handled:
    def __init__(self) -> None:
        self.envelopes: list[dict[str, Any]] = []
        self.try_later = 0

    async def __call__(self, envelope: dict[str, Any]) -> None:
        if self.try_later:
            self.try_later -= 1
            raise TryLater("database away")
        self.envelopes.append(envelope)


@asynccontextmanager
async def inbox_client(
    secret: bytes, window_s: int = 300
) -> AsyncIterator[tuple[TestClient[Any, Any], Handled]]:
    handled = Handled()
    inbox = WebhookInbox(secret, window_s, "/vnode/events", handled)
    async with TestClient(TestServer(inbox.app())) as client:
        yield client, handled


async def post(
    client: TestClient[Any, Any], headers: dict[str, str], body: bytes = BODY
) -> tuple[int, str]:
    response = await client.post("/vnode/events", data=body, headers=headers)
    answer = await response.json()
    return response.status, answer.get("error", {}).get("code", "")


async def test_webhook_receiver_accepts_only_genuine_fresh_deliveries_once() -> None:
    secret = new_secret()
    # The bot gets its secret from VNODE_BOT_WEBHOOK_SECRET, as bytes (vnode/bot/runtime.py).
    async with inbox_client(secret.encode()) as (client, handled):
        genuine = standard_headers(EVENT_ID, BODY, [secret])
        assert await post(client, genuine) == (200, "")
        assert [e["id"] for e in handled.envelopes] == [EVENT_ID]
        # The same request again (captured and replayed): refused, not handled twice.
        assert await post(client, genuine) == (409, "replayed")
        # A tampered body, a wrong secret, a stale or future timestamp, a malformed one.
        now = int(time.time())
        tampered = BODY.replace(b'"user_id":7', b'"user_id":8')
        assert await post(
            client, standard_headers(EVENT_ID, BODY, [secret], now + 1), tampered
        ) == (401, "invalid_signature")
        assert await post(client, standard_headers(EVENT_ID, BODY, [new_secret()], now + 1)) == (
            401,
            "invalid_signature",
        )
        for when in (now - 301, now + 301, now - 86_400):
            assert await post(client, standard_headers(EVENT_ID, BODY, [secret], when)) == (
                401,
                "invalid_signature",
            )
        signed = standard_headers(EVENT_ID, BODY, [secret], now + 2)
        for timestamp in ("1.7e9", "", "nan", "\u0661" * 10):
            assert await post(client, {**signed, "webhook-timestamp": timestamp}) == (
                401,
                "invalid_signature",
            )
        assert await post(client, {**signed, "webhook-id": "another"}) == (401, "invalid_signature")
        assert await post(
            client, {k: v for k, v in signed.items() if k != "webhook-signature"}
        ) == (401, "invalid_signature")
        # Several signatures (a rotation): accepted when any of them is made with our secret.
        both = standard_headers(EVENT_ID, BODY, [new_secret(), secret], now + 3)
        assert await post(client, both) == (200, "")
        neither = standard_headers(EVENT_ID, BODY, [new_secret(), new_secret()], now + 4)
        assert await post(client, neither) == (401, "invalid_signature")
    assert len(handled.envelopes) == 2


async def test_webhook_receiver_retry_after_503_is_not_a_replay() -> None:
    secret = new_secret()
    async with inbox_client(secret.encode()) as (client, handled):
        handled.try_later = 1
        now = int(time.time())
        assert await post(client, standard_headers(EVENT_ID, BODY, [secret], now)) == (
            503,
            "unavailable",
        )
        # vnode signs every attempt anew (same webhook-id, a later timestamp).
        assert await post(client, standard_headers(EVENT_ID, BODY, [secret], now + 1)) == (200, "")
        assert [e["id"] for e in handled.envelopes] == [EVENT_ID]


@pytest.mark.parametrize("form", ["whsec", "legacy", "raw"])
async def test_webhook_receiver_takes_both_forms_of_the_secret(form: str) -> None:
    """`whsec_<base64>` (vnode's secrets now), `whsec_` + 43 URL-safe characters (the secret an
    endpoint made before was shown) and other text are each the key vnode signs with."""
    secret = {
        "whsec": new_secret(),
        "legacy": "whsec_" + secrets.token_urlsafe(32),
        "raw": "a secret of the operator's own",
    }[form]
    async with inbox_client(secret.encode()) as (client, handled):
        assert await post(client, standard_headers(EVENT_ID, BODY, [secret])) == (200, "")
        # A vnode from before the standard headers: the deprecated X-VNode-Signature alone.
        assert await post(client, {SIGNATURE_HEADER: sign(secret.encode(), BODY)}) == (200, "")
        assert await post(client, {SIGNATURE_HEADER: sign(b"not-the-secret", BODY)}) == (
            401,
            "invalid_signature",
        )
    assert len(handled.envelopes) == 2
    if form == "whsec":  # the standard form is base64 of the key, not the text
        key = base64.b64decode(secret.removeprefix("whsec_"))
        assert len(key) == 32


async def test_webhook_receiver_window_is_the_configured_one() -> None:
    secret = new_secret()
    async with inbox_client(secret.encode(), window_s=30) as (client, _):
        now = int(time.time())
        assert await post(client, standard_headers(EVENT_ID, BODY, [secret], now - 60)) == (
            401,
            "invalid_signature",
        )
        assert await post(client, standard_headers(EVENT_ID, BODY, [secret], now - 10)) == (200, "")


async def test_vnode_bot_command_runs_the_bot(
    own_vnode: Vnode, own_telegram: FakeTelegram, bot_redis: RedisServer, tmp_path: Path
) -> None:
    telegram = own_telegram
    env = {k: v for k, v in os.environ.items() if not k.startswith("VNODE_")}
    env.update(
        {
            "VNODE_BOT_TOKEN": BOT_TOKEN,
            "VNODE_BOT_API_URL": telegram.base_url,
            "VNODE_URL": own_vnode.url,
            "VNODE_API_KEY": own_vnode.spend_key,
            "VNODE_REDIS_URL": bot_redis.url,
            "VNODE_DATABASE_URL": own_vnode.database_url,
            "VNODE_REDIS_STREAM_KEY": own_vnode.stream_key,
        }
    )
    log = (tmp_path / "bot.log").open("wb")
    proc = subprocess.Popen([VNODE, "bot"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        frank = new_user("Frank")
        # The process imports all of vnode before it polls: on a loaded machine that alone
        # can outlast a message's usual 10 s wait, so the first answer gets longer.
        telegram.user_says(frank, "/start")
        await telegram.wait_for(
            frank.id, lambda m: "Your virtual node is ready" in (m.text or ""), timeout_s=60
        )
        await funded(own_vnode, frank, 4200)
        told = await telegram.wait_for(
            frank.id, lambda m: "Received" in (m.text or ""), timeout_s=20
        )
        assert "4,200 sats" in (told.text or "")
    finally:
        proc.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(proc.wait, 20)
        log.close()
    output = (tmp_path / "bot.log").read_text()
    assert code == 0, output
    assert BOT_TOKEN not in output and own_vnode.spend_key not in output


async def test_profiles_record_first_and_last_seen(
    bot: BotRuntime, telegram: FakeTelegram, db: asyncpg.Connection
) -> None:
    gina = TgUser(id=new_user("Gina").id, first_name="Gina", username=None, language_code="it")
    await started(telegram, gina)
    row = await db.fetchrow("SELECT * FROM bitmask.profiles WHERE user_id = $1", gina.id)
    assert row is not None and row["language"] == "it" and row["username"] is None
    assert row["first_seen"] <= row["last_seen"]


async def _payment_told_with_a_button_in_flight(
    telegram: FakeTelegram, vnode: Vnode, db: asyncpg.Connection, *, answer_was_final: bool
) -> list[SentMessage]:
    """A payment's final event reaches the notifier while the Confirm button's call for it is
    still in flight (events come within milliseconds of their commit, docs/adr/0030); the call
    then answers, final or pending. Returns the "Paid" messages the user got."""
    alice = new_user("Alice")
    await started(telegram, alice)
    confirmation = telegram.messages(alice.id)[-1]
    payment_hash = secrets.token_hex(32)
    pool = await asyncpg.create_pool(vnode.database_url, min_size=1, max_size=2)
    tg = make_bot(BOT_TOKEN, telegram.base_url)
    try:
        profiles = ProfileStore(pool)
        await profiles.remember_payment_message(
            payment_hash, alice.id, alice.id, confirmation.message_id
        )
        calls = PaymentCalls()
        notifier = Notifier(tg, profiles, 3600, calls)
        in_flight, answered = asyncio.Event(), asyncio.Event()

        async def button() -> None:  # as vnode/bot/handlers/send.py's send_payment does
            async with calls.in_flight(payment_hash, alice.id):
                in_flight.set()
                await answered.wait()
                if answer_was_final:
                    assert await profiles.claim_final(payment_hash, alice.id) is not None

        pressing = asyncio.create_task(button())
        await in_flight.wait()
        envelope = {
            "id": str(uuid.uuid4()),
            "user_id": alice.id,
            "type": "payment.succeeded",
            "created_at": datetime.now(UTC).isoformat(),
            "data": {
                "payment_hash": payment_hash,
                "status": "succeeded",
                "amount_msat": 2_000_000,
                "fee_msat": 0,
            },
        }
        telling = asyncio.create_task(notifier.handle(envelope))
        await notified(db, alice, "payment.succeeded")  # claimed; now it waits for the button
        answered.set()
        await asyncio.wait_for(asyncio.gather(pressing, telling), 10)
        return [m for m in telegram.messages(alice.id) if "Paid" in (m.text or "")]
    finally:
        await tg.session.close()
        await pool.close()


async def test_a_final_event_before_the_buttons_final_answer_is_not_told_twice(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode, db: asyncpg.Connection
) -> None:
    """The answer tells the end (the confirmation is edited, elsewhere); the event, which came
    first, waits for it and then tells nothing."""
    assert (
        await _payment_told_with_a_button_in_flight(telegram, vnode, db, answer_was_final=True)
        == []
    )


async def test_a_final_event_before_a_pending_answer_tells_the_end(
    bot: BotRuntime, telegram: FakeTelegram, vnode: Vnode, db: asyncpg.Connection
) -> None:
    """The answer said "in flight": the event, which waited for it, tells the end."""
    told = await _payment_told_with_a_button_in_flight(telegram, vnode, db, answer_was_final=False)
    assert [m.text for m in told] == ["Paid 2,000 sats."]
