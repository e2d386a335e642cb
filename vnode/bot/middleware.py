"""Per-update steps before any handler: remember who the user is, and keep them from
flooding the bot (and vnode behind it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, Message, TelegramObject, User

from vnode.bot import texts
from vnode.bot.context import BotContext
from vnode.bot.profiles import Seen

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


def _user_of(event: TelegramObject) -> User | None:
    if isinstance(event, Message | CallbackQuery):
        return event.from_user
    return None


def _storable(name: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL; nothing else in a name needs changing."""
    return None if name is None else name.replace("\x00", "")


class ProfileMiddleware(BaseMiddleware):
    """Every update refreshes the sender's profile (username, names, language, last seen)."""

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user = _user_of(event)
        ctx: BotContext = data["ctx"]
        if user is not None and not user.is_bot:
            await ctx.profiles.touch(
                Seen(
                    user.id,
                    user.username,
                    _storable(user.first_name) or "",
                    _storable(user.last_name),
                    user.language_code,
                )
            )
        return await handler(event, data)


class RateLimitMiddleware(BaseMiddleware):
    """At most `bot_rate_limit` updates per user per window (a Redis counter, shared by every
    bot process); past it, one "slow down" and then silence until the window ends."""

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user = _user_of(event)
        ctx: BotContext = data["ctx"]
        if user is None:
            return await handler(event, data)
        key = f"bitmask:rate:{user.id}"
        # A window that starts at the user's first update; MULTI makes the counter and its
        # expiry one step, so a crash can never leave a counter that never expires.
        pipe = ctx.redis.pipeline(transaction=True)
        pipe.set(key, 0, ex=ctx.settings.bot_rate_window_s, nx=True)
        pipe.incr(key)
        _, count = await pipe.execute()
        limit = ctx.settings.bot_rate_limit
        if count <= limit:
            return await handler(event, data)
        if count == limit + 1:
            if isinstance(event, Message):
                await event.reply(texts.SLOW_DOWN)
            elif isinstance(event, CallbackQuery):
                await event.answer(texts.SLOW_DOWN, show_alert=True)
        return None
