"""The bot's event inbox (Redis Streams) stops when the bot stops, on a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any

import orjson
from redis.asyncio import Redis

from harness.redis import RedisServer
from vnode.bot.inbox import StreamInbox


async def test_the_inbox_stops_even_when_a_step_lost_the_cancel(bot_redis: RedisServer) -> None:
    """Python 3.11's asyncio.wait_for, which redis-py sends every command with, returns as usual
    when the cancel arrives just as the send finishes (vnode/cancelling.py); the loop read on
    and the bot's stop waited forever. Here the handler loses the cancel the same way, every
    time, so the test does not depend on that moment."""
    redis = Redis.from_url(bot_redis.url)
    stream = f"test:inbox:{secrets.token_hex(4)}"
    entered = asyncio.Event()
    handled: list[dict[str, Any]] = []

    async def loses_the_cancel(envelope: dict[str, Any]) -> None:
        entered.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()  # until cancelled
        handled.append(envelope)

    inbox = StreamInbox(redis, stream, "bot", "bot-1", loses_the_cancel)
    await inbox.ensure_group()
    run = asyncio.ensure_future(inbox.run())
    try:
        await redis.xadd(stream, {"envelope": orjson.dumps({"id": "e1"})})
        await asyncio.wait_for(entered.wait(), 10)
        run.cancel()
        done, _ = await asyncio.wait([run], timeout=10)
        assert done, "the inbox read on after it was cancelled"
        assert run.cancelled()
        assert handled == [{"id": "e1"}]
        # The event it handled was acknowledged before it stopped: not told twice after a restart.
        assert (await redis.xpending(stream, "bot"))["pending"] == 0
    finally:
        run.cancel()
        await asyncio.wait([run], timeout=10)
        await redis.delete(stream)
        await redis.aclose()
