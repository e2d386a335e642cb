"""Whatever a handler raises ends here: a short, friendly answer, never a stack trace."""

from __future__ import annotations

import logging
from html import escape

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import CallbackQuery, ErrorEvent

from vnode.bot import texts
from vnode.bot.context import UserError
from vnode.client import VNodeError, VNodeUnavailable

log = logging.getLogger(__name__)


async def on_error(event: ErrorEvent, bot: Bot) -> None:
    error = event.exception
    if isinstance(error, UserError):
        text = escape(str(error))
    elif isinstance(error, VNodeUnavailable):
        text = texts.UNREACHABLE
    elif isinstance(error, VNodeError):
        text = texts.refusal(error)
        if error.status >= 500:
            log.warning(
                "vnode answered %s",
                error.status,
                extra={"code": error.code, "request_id": error.request_id},
            )
    else:
        log.error("handler failed", exc_info=error)
        # After a tap, money may already have moved: never claim that nothing was sent.
        text = (
            texts.SOMETHING_WRONG_AFTER_TAP
            if event.update.callback_query
            else texts.SOMETHING_WRONG
        )
    await _tell(event, bot, text)


async def _tell(event: ErrorEvent, bot: Bot, text: str) -> None:
    update = event.update
    try:
        if update.message is not None:
            await update.message.reply(text)
        elif update.callback_query is not None:
            await _tell_tap(update.callback_query, bot, text)
    except TelegramAPIError as exc:
        log.warning("could not tell the user about an error: %s", exc)


async def _tell_tap(query: CallbackQuery, bot: Bot, text: str) -> None:
    """An alert when the press is still unanswered; once answered (or too old), a message."""
    try:
        await query.answer(text[:200], show_alert=True)
    except TelegramAPIError:
        chat_id = query.message.chat.id if query.message is not None else query.from_user.id
        await bot.send_message(chat_id, text)
