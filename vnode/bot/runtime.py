"""Putting the bot together and running it: `vnode bot`, or in-process in the tests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.fsm.storage.redis import RedisEventIsolation, RedisStorage
from aiogram.types import BotCommand
from redis.asyncio import Redis

from vnode.bot.confirmations import PendingActions
from vnode.bot.context import BotContext
from vnode.bot.handlers import routers
from vnode.bot.handlers.errors import on_error
from vnode.bot.inbox import StreamInbox, WebhookInbox
from vnode.bot.middleware import ProfileMiddleware, RateLimitMiddleware
from vnode.bot.notify import Notifier
from vnode.bot.payment_calls import PaymentCalls
from vnode.bot.profiles import ProfileStore, migrate_profiles
from vnode.bot.settings import DEFAULT_VNODE_URL, BotSettings, required
from vnode.bot.telegram import make_bot
from vnode.client import RetryPolicy, VNodeClient
from vnode.db.pool import create_pool
from vnode.runtime import StopSignals

log = logging.getLogger(__name__)
# A user waits in the chat: resend an unknown outcome for about 10 s (a planned switchover
# takes about 6 s), then say "don't know yet" with a Try again button (handlers/send.py).
CHAT_RETRY = RetryPolicy(attempts=5, base_s=0.25, cap_s=3.0, total_s=10.0)
COMMANDS = [
    BotCommand(command="start", description="Open your wallet"),
    BotCommand(command="balance", description="What you hold"),
    BotCommand(command="send", description="Send to a user, or pay an invoice"),
    BotCommand(command="pay", description="Pay a Lightning invoice"),
    BotCommand(command="receive", description="An invoice to get paid"),
    BotCommand(command="history", description="Recent transactions"),
    BotCommand(command="address", description="Your Lightning Address"),
    BotCommand(command="wallet", description="Connect BlueWallet, Zeus or Alby"),
    BotCommand(command="tip", description="Tip the author of a message (in groups)"),
    BotCommand(command="proof", description="Proof your balance is counted in what we owe"),
    BotCommand(command="help", description="How it works"),
]
# Conversation state (an invoice waiting for its amount) is dropped after this long.
_STATE_TTL_S = 900


def build_dispatcher(ctx: BotContext, storage: RedisStorage) -> Dispatcher:
    # One update at a time per user and chat (a Redis lock, so across bot processes too):
    # "/pay" and the amount typed next are handled in the order they were sent.
    # The lock outlives the slowest update: a money call retried to its end, plus flood waits.
    isolation = RedisEventIsolation(ctx.redis, lock_kwargs={"timeout": 180})
    dp = Dispatcher(storage=storage, events_isolation=isolation, ctx=ctx)
    for observer in (dp.message, dp.callback_query):
        observer.outer_middleware(RateLimitMiddleware())
        observer.outer_middleware(ProfileMiddleware())
    dp.include_routers(*routers())
    dp.errors.register(on_error)
    return dp


class BotRuntime:
    """The bot's parts, started and stopped together."""

    def __init__(self, settings: BotSettings) -> None:
        self.settings = settings
        self._stack = AsyncExitStack()
        self._tasks: list[asyncio.Task[None]] = []
        self.bot: Bot | None = None
        self.dispatcher: Dispatcher | None = None

    async def start(self) -> None:
        s = self.settings
        stack = self._stack
        pool = await create_pool(
            required(s.database_url, "VNODE_DATABASE_URL"),
            min_size=1,
            max_size=8,
            application_name="vnode-bot",
        )
        stack.push_async_callback(pool.close)
        async with pool.acquire() as conn:
            await migrate_profiles(conn)
        redis = Redis.from_url(required(s.redis_url, "VNODE_REDIS_URL"))
        stack.push_async_callback(redis.aclose)
        vnode = await stack.enter_async_context(
            VNodeClient(
                s.url or DEFAULT_VNODE_URL,
                required(s.api_key, "VNODE_API_KEY"),
                retry=CHAT_RETRY,
            )
        )
        bot = make_bot(required(s.bot_token, "VNODE_BOT_TOKEN"), s.bot_api_url)
        stack.push_async_callback(bot.session.close)
        profiles = ProfileStore(pool)
        payment_calls = PaymentCalls()
        ctx = BotContext(
            vnode, profiles, PendingActions(redis, s.bot_confirm_ttl_s), redis, s, payment_calls
        )
        storage = RedisStorage(redis, state_ttl=_STATE_TTL_S, data_ttl=_STATE_TTL_S)
        self.bot, self.dispatcher = bot, build_dispatcher(ctx, storage)
        notifier = Notifier(bot, profiles, s.bot_notify_max_age_s, payment_calls)
        await self._start_inbox(notifier, redis)
        await bot.delete_webhook(drop_pending_updates=False)
        await bot.set_my_commands(COMMANDS)
        self._spawn(
            self.dispatcher.start_polling(bot, handle_signals=False, close_bot_session=False)
        )

    async def _start_inbox(self, notifier: Notifier, redis: Redis) -> None:
        s = self.settings
        if s.bot_events == "webhook":
            if s.bot_webhook_secret is None:
                raise RuntimeError(
                    "VNODE_BOT_WEBHOOK_SECRET is required with VNODE_BOT_EVENTS=webhook"
                )
            inbox = WebhookInbox(
                s.bot_webhook_secret.get_secret_value().encode(),
                s.bot_webhook_window_s,
                s.bot_webhook_path,
                notifier.handle,
            )
            await inbox.start(s.bot_webhook_host, s.bot_webhook_port)
            self._stack.push_async_callback(inbox.stop)
            return
        stream = StreamInbox(
            redis, s.redis_stream_key, s.bot_consumer_group, s.bot_consumer_name, notifier.handle
        )
        await stream.ensure_group()
        self._spawn(stream.run())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.ensure_future(work))

    async def wait(self) -> None:
        """Until a part stops on its own (polling ends, or a task fails)."""
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()

    async def stop(self) -> None:
        if self.dispatcher is not None:
            with contextlib.suppress(RuntimeError):  # polling had not started
                await self.dispatcher.stop_polling()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self._stack.aclose()


async def run(settings: BotSettings, signals: StopSignals | None = None) -> None:
    """Run until a part stops, or a stop signal (SIGTERM, SIGINT, SIGHUP, SIGQUIT) arrives:
    then polling ends, the inbox stops and the connections close, in that order."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_stop() -> None:  # runs in the signal handler
        loop.call_soon_threadsafe(stop.set)

    runtime = BotRuntime(settings)
    with signals.serving(on_stop) if signals is not None else contextlib.nullcontext():
        try:
            await runtime.start()
            log.info("bitMaskRGB is running", extra={"events": settings.bot_events})
            stopped = asyncio.ensure_future(stop.wait())
            parts = asyncio.ensure_future(runtime.wait())
            await asyncio.wait((stopped, parts), return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if parts.done():
                parts.result()
            else:
                parts.cancel()
                log.info("bitMaskRGB stopping")
        finally:
            await runtime.stop()
