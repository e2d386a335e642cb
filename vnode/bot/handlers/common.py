"""Small helpers the handlers share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from aiogram.types import CallbackQuery, InaccessibleMessage, Message, User

from vnode.bot import texts
from vnode.bot.context import UserError
from vnode.client import VNodeError


def sender(message: Message) -> User:
    """The person behind a command. Channel posts and anonymous admins (sender_chat set, and
    a shared placeholder user) are nobody's wallet."""
    if message.from_user is None or message.sender_chat is not None or message.from_user.is_bot:
        raise UserError("I only work with messages from people (not channels or anonymous admins).")
    return message.from_user


def callback_message(query: CallbackQuery) -> Message | None:
    """The bot message a button sits on, when Telegram still lets us edit it."""
    message = query.message
    return None if message is None or isinstance(message, InaccessibleMessage) else message


def private_only(message: Message) -> None:
    """Balances and history are not for a group's eyes."""
    if message.chat.type != "private":
        raise UserError(texts.PRIVATE_ONLY)


@contextmanager
def started_first() -> Iterator[None]:
    """Around a call about the sender: a user vnode does not know yet is asked to /start."""
    try:
        yield
    except VNodeError as exc:
        if exc.code == "unknown_user":
            raise UserError(texts.START_FIRST) from None
        raise
