"""Whatever a handler raises ends here: a short, friendly answer, never a stack trace."""

from __future__ import annotations

import logging
from html import escape

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import ErrorEvent

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
            log.warning("vnode answered %s", error.status,
                        extra={"code": error.code, "request_id": error.request_id})
    else:
        log.error("handler failed", exc_info=error)
        # After a tap, money may already have moved: never claim that nothing was sent.
        text = texts.SOMETHING_WRONG_AFTER_TAP if event.update.callback_query \
            else texts.SOMETHING_WRONG
    await _tell(event, bot, text)


async def _tell(event: ErrorEvent, bot: Bot, text: str) -> None:
    update = event.update
    try:
        if update.message is not None:
            await update.message.reply(text)
        elif update.callback_query is not None:
            # An alert is the only answer a button press can show without a new message.
            await update.callback_query.answer(text[:200], show_alert=True)
    except TelegramAPIError as exc:
        log.warning("could not tell the user about an error: %s", exc)
