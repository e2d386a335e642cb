"""/history, a page at a time, with Newer / Older buttons.

Cursors are vnode's and can be long, so a button carries only a page number and a short key;
the cursors of that listing live in Redis for an hour.
"""

from __future__ import annotations

import contextlib
import secrets

import orjson
from aiogram import Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from vnode.bot import texts
from vnode.bot.context import BotContext, UserError
from vnode.bot.handlers.common import callback_message, private_only, sender
from vnode.client import VNodeError

_PREFIX = "bitmask:history:"
_KEEP_S = 3600


class HistoryCallback(CallbackData, prefix="hi"):
    key: str
    page: int


async def history(message: Message, ctx: BotContext) -> None:
    private_only(message)
    user = sender(message)
    key = secrets.token_urlsafe(9)
    await _save(ctx, key, user.id, [None])
    text, markup = await _page(ctx, key, user.id, [None], 0)
    await message.answer(text, reply_markup=markup)


async def turn(query: CallbackQuery, callback_data: HistoryCallback, ctx: BotContext) -> None:
    raw = await ctx.redis.get(_PREFIX + callback_data.key)
    message = callback_message(query)
    if raw is None or message is None:
        await query.answer("This list is too old: send /history again.")
        return
    owner, cursors = orjson.loads(raw)
    if owner != query.from_user.id:
        await query.answer(texts.NOT_YOURS, show_alert=True)
        return
    if not 0 <= callback_data.page < len(cursors):
        await query.answer()
        return
    text, markup = await _page(ctx, callback_data.key, owner, cursors, callback_data.page)
    await query.answer()
    with contextlib.suppress(TelegramBadRequest):  # "not modified": the same page, twice
        await message.edit_text(text, reply_markup=markup)


async def _page(
    ctx: BotContext, key: str, user_id: int, cursors: list[str | None], page: int
) -> tuple[str, InlineKeyboardMarkup | None]:
    try:
        listing = await ctx.vnode.history(
            user_id, limit=ctx.settings.bot_history_page, cursor=cursors[page]
        )
    except VNodeError as exc:
        if exc.code == "unknown_user":
            raise UserError(texts.START_FIRST) from None
        raise
    if listing.next_cursor is not None and len(cursors) == page + 1:
        cursors.append(listing.next_cursor)
        await _save(ctx, key, user_id, cursors)
    buttons = []
    if page > 0:
        buttons.append(
            InlineKeyboardButton(
                text="« Newer", callback_data=HistoryCallback(key=key, page=page - 1).pack()
            )
        )
    if listing.next_cursor is not None:
        buttons.append(
            InlineKeyboardButton(
                text="Older »", callback_data=HistoryCallback(key=key, page=page + 1).pack()
            )
        )
    markup = InlineKeyboardMarkup(inline_keyboard=[buttons]) if buttons else None
    return texts.history(list(listing.transactions), page), markup


async def _save(ctx: BotContext, key: str, user_id: int, cursors: list[str | None]) -> None:
    await ctx.redis.set(_PREFIX + key, orjson.dumps([user_id, cursors]), ex=_KEEP_S)


def make_router() -> Router:
    router = Router(name="history")
    router.message.register(history, Command("history"))
    router.callback_query.register(turn, HistoryCallback.filter())
    return router
