"""Small helpers the handlers share."""

from __future__ import annotations

from aiogram.types import CallbackQuery, InaccessibleMessage, Message, User

from vnode.bot.context import UserError


def sender(message: Message) -> User:
    if message.from_user is None:  # channel posts: no person to pay or credit
        raise UserError("I only work with messages from people.")
    return message.from_user


def callback_message(query: CallbackQuery) -> Message | None:
    """The bot message a button sits on, when Telegram still lets us edit it."""
    message = query.message
    return None if message is None or isinstance(message, InaccessibleMessage) else message
