"""The bot's test rig: the real aiogram bot (in-process, or `vnode bot` as a process) against
a local stand-in for the Telegram Bot API (vnode/demo/bot_api.py), a real `vnode serve` on its own
simulated node over HTTP, a real redis-server and PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from harness.redis import RedisServer
from tests.bot.cutting_proxy import CuttingProxy
from tests.lightning_support import SimControl
from tests.support import ADMIN_KEY, ServeProcess, create_database, new_user_id, wait_until
from vnode.apikeys import Scope, create_key
from vnode.bot.runtime import BotRuntime
from vnode.bot.settings import BotSettings
from vnode.client import VNodeClient
from vnode.demo.bot_api import FakeTelegram, SentMessage, TgUser
from vnode.loopback import free_port_pair

BOT_TOKEN = "7000000001:" + "T" * 35
STREAM = "vnode:events"


@dataclass
class Vnode:
    """A running `vnode serve` with the sim beside it, and what the tests need to reach it."""

    serve: ServeProcess
    database_url: str
    spend_key: str
    admin: VNodeClient
    sim: SimControl
    stream_key: str = STREAM

    @property
    def url(self) -> str:
        return self.serve.url


@pytest.fixture(scope="session")
def bot_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("bot-redis"))
    server.start()
    yield server
    server.stop()


def serve_env(redis_url: str, stream_key: str = STREAM) -> dict[str, str]:
    return {
        "VNODE_REDIS_URL": redis_url,
        "VNODE_REDIS_STREAM_KEY": stream_key,
        "VNODE_RECONCILE_INTERVAL_S": "0.2",
        "VNODE_WATCH_INTERVAL_S": "0.1",
        "VNODE_PAYMENT_WAIT_S": "3",
        "VNODE_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
    }


async def start_vnode(
    pg_server: str,
    template_db: str,
    data_dir: Path,
    redis_url: str,
    stream_key: str = STREAM,
    *,
    public_url: bool = True,
) -> Vnode:
    database_url = await create_database(pg_server, template_db)
    conn = await asyncpg.connect(database_url)
    try:
        _, spend_key = await create_key(conn, "bitmask", Scope.SPEND)
    finally:
        await conn.close()
    # Lightning Addresses on, at the service's own loopback URL (plain http: loopback only).
    port = free_port_pair()
    env = serve_env(redis_url, stream_key)
    if public_url:
        env["VNODE_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    serve = ServeProcess(database_url, data_dir, extra_env=env, port=port)
    await serve.wait_ready()
    return Vnode(
        serve,
        database_url,
        spend_key,
        VNodeClient(serve.url, ADMIN_KEY),
        SimControl(f"http://127.0.0.1:{serve.port + 1}"),
        stream_key,
    )


@pytest.fixture(scope="session")
async def vnode(
    pg_server: str,
    template_db: str,
    bot_redis: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Vnode]:
    running = await start_vnode(
        pg_server, template_db, tmp_path_factory.mktemp("vnode"), bot_redis.url
    )
    yield running
    await running.admin.close()
    running.serve.stop()


@pytest.fixture(scope="session")
async def telegram() -> AsyncIterator[FakeTelegram]:
    fake = FakeTelegram(BOT_TOKEN)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def own_telegram() -> AsyncIterator[FakeTelegram]:
    """A Telegram of the test's own, for a bot of its own: two bots polling one Telegram
    would share its updates (the real one answers 409 Conflict)."""
    fake = FakeTelegram(BOT_TOKEN)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def own_vnode(
    pg_server: str, template_db: str, bot_redis: RedisServer, tmp_path: Path
) -> AsyncIterator[Vnode]:
    """A vnode of the test's own (its database, sim and event stream), which the test may
    stop and start again; its events reach only the test's own bot."""
    running = await start_vnode(
        pg_server,
        template_db,
        tmp_path / "vnode",
        bot_redis.url,
        stream_key=f"test:{secrets.token_hex(4)}",
    )
    yield running
    await running.admin.close()
    running.serve.stop()


def bot_settings(
    vnode: Vnode, telegram: FakeTelegram, redis_url: str, **overrides: Any
) -> BotSettings:
    values: dict[str, Any] = {
        "bot_token": BOT_TOKEN,
        "bot_api_url": telegram.base_url,
        "url": vnode.url,
        "api_key": vnode.spend_key,
        "redis_url": redis_url,
        "database_url": vnode.database_url,
        "redis_stream_key": vnode.stream_key,
    }
    values.update(overrides)
    return BotSettings(**values)


@pytest.fixture(scope="session")
async def bot(
    vnode: Vnode, telegram: FakeTelegram, bot_redis: RedisServer
) -> AsyncIterator[BotRuntime]:
    """The bot most conversations talk to, running for the whole session."""
    runtime = BotRuntime(bot_settings(vnode, telegram, bot_redis.url))
    await runtime.start()
    yield runtime
    await runtime.stop()


@pytest.fixture
async def proxy(vnode: Vnode) -> AsyncIterator[CuttingProxy]:
    """A proxy in front of the session's vnode that can lose its answers (cutting_proxy.py)."""
    cutting = CuttingProxy(vnode.serve.port)
    await cutting.start()
    yield cutting
    await cutting.stop()


@pytest.fixture
async def bot_behind_proxy(
    vnode: Vnode, own_telegram: FakeTelegram, bot_redis: RedisServer, proxy: CuttingProxy
) -> AsyncIterator[BotRuntime]:
    """A bot of the test's own that reaches vnode through `proxy` (it hears no events)."""
    runtime = BotRuntime(
        bot_settings(
            vnode, own_telegram, bot_redis.url, url=proxy.url, redis_stream_key="test:proxy"
        )
    )
    await runtime.start()
    yield runtime
    await runtime.stop()


@pytest.fixture
async def redis(bot_redis: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(bot_redis.url)
    yield client
    await client.aclose()


@pytest.fixture
async def db(vnode: Vnode) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(vnode.database_url)
    yield conn
    await conn.close()


def new_user(first_name: str, username: str | None = None) -> TgUser:
    """A Telegram user of the test's own (fresh id; a unique username when asked)."""
    name = f"{username}_{secrets.token_hex(3)}" if username else None
    return TgUser(id=new_user_id(), first_name=first_name, username=name)


async def started(telegram: FakeTelegram, user: TgUser) -> None:
    """The user sends /start and gets the welcome."""
    telegram.user_says(user, "/start")
    await telegram.wait_for(user.id, lambda m: "Your virtual node is ready" in (m.text or ""))


async def funded(
    vnode: Vnode, user: TgUser, sats: int, telegram: FakeTelegram | None = None
) -> None:
    """Credit the user; with `telegram`, also wait for the bot to say so, so that later
    waits in the chat are not answered by that message."""
    await vnode.admin.admin_credit(user.id, amount_msat=sats * 1000, reason="test funds")
    if telegram is not None:
        await telegram.wait_for(user.id, lambda m: "test funds" in (m.text or ""))


async def balance_msat(vnode: Vnode, user: TgUser) -> int:
    return (await vnode.admin.asset_balance(user.id)).balance_msat or 0


async def notified(db: asyncpg.Connection, user: TgUser, event_type: str, count: int = 1) -> None:
    """Wait until the bot has handled `count` events of that type for the user."""

    async def done() -> bool:
        seen = await db.fetchval(
            "SELECT count(*) FROM bitmask.notified WHERE user_id = $1 AND event_type = $2",
            user.id,
            event_type,
        )
        return bool(seen >= count)

    await wait_until(done, 20, f"{event_type} handled for {user.id}")


async def answered(telegram: FakeTelegram, fragment: str) -> dict[str, Any]:
    """Wait for a button press to be answered with a text containing `fragment`."""
    found: list[dict[str, Any]] = []

    async def seen() -> bool:
        found[:] = [a for a in telegram.callback_answers() if fragment in str(a.get("text"))]
        return bool(found)

    await wait_until(seen, 10, f"a callback answer with {fragment!r}")
    return found[-1]


async def two_users(
    telegram: FakeTelegram, vnode: Vnode, sats: int = 0, *, usernames: bool = False
) -> tuple[TgUser, TgUser]:
    """Alice and Bob, both started; Alice funded with `sats` (and told so)."""
    alice = new_user("Alice", "alice" if usernames else None)
    bob = new_user("Bob", "bob" if usernames else None)
    await started(telegram, alice)
    await started(telegram, bob)
    if sats:
        await funded(vnode, alice, sats, telegram)
    return alice, bob


def is_confirmation(message: SentMessage) -> bool:
    return [text for text, _ in message.buttons()] == ["Confirm", "Cancel"]


async def asks_to_confirm(
    telegram: FakeTelegram, user: TgUser, text: str, chat_id: int | None = None
) -> SentMessage:
    """The user says `text`; returns the Confirm / Cancel question it brings."""
    telegram.user_says(user, text)
    return await telegram.wait_for(user.id if chat_id is None else chat_id, is_confirmation)


def press(telegram: FakeTelegram, user: TgUser, message: SentMessage, button: str) -> str:
    """Tap a button by its label; returns the callback query's id."""
    return telegram.press(user, message, dict(message.buttons())[button])
