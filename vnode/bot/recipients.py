"""Who a /send goes to: a @username, a Telegram id, a vn_ id, or the author of a replied
message. Only ids count: a username is looked up in the stored profiles (see profiles.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiogram.types import Message, User

from vnode.bot.context import BotContext, UserError
from vnode.client import VNodeError

_USERNAME = re.compile(r"@([A-Za-z0-9_]{4,32})", re.ASCII)
_USER_ID = re.compile(r"(?:vn_)?([1-9][0-9]{0,18})", re.ASCII)
_MAX_ID = 2**63 - 1


@dataclass(frozen=True)
class Recipient:
    user_id: int
    label: str
    # The id came from Telegram itself (a replied message's author): open their wallet if
    # they have none yet. A typed id is never given a wallet: a typo must not swallow money.
    create: bool = False

    @property
    def node_id(self) -> str:
        return f"vn_{self.user_id}"


def looks_like_recipient(word: str) -> bool:
    return bool(_USERNAME.fullmatch(word) or _USER_ID.fullmatch(word))


async def resolve(word: str, ctx: BotContext) -> Recipient:
    if (match := _USERNAME.fullmatch(word)) is not None:
        profile = await ctx.profiles.by_username(match[1])
        if profile is None:
            raise UserError(f"I don't know @{match[1]}: they have to send /start to this bot "
                            "first (or use their Telegram id).")
        return await _existing(profile.user_id, profile.label, ctx)
    if (match := _USER_ID.fullmatch(word)) is not None and int(match[1]) <= _MAX_ID:
        user_id = int(match[1])
        profile = await ctx.profiles.get(user_id)
        return await _existing(user_id, profile.label if profile else f"vn_{user_id}", ctx)
    raise UserError(f"'{word[:40]}' is not a recipient: use a @username, a Telegram id "
                    "or a vn_ id.")


# Telegram's own account: the author of channel posts forwarded into discussion groups.
TELEGRAM_SERVICE_ID = 777000


def replied_author(message: Message) -> User | None:
    """The person a reply answers, or None when the message is not a reply to a person's own
    message: a topic's first message (every topic message "replies" to it), a channel post
    or an anonymous admin (no person behind them), a bot."""
    reply = message.reply_to_message
    if reply is None or reply.forum_topic_created is not None:
        return None
    if reply.sender_chat is not None or reply.is_automatic_forward:
        raise UserError("That message was posted by a channel or an anonymous admin: there "
                        "is nobody to pay.")
    return reply.from_user


def from_telegram(user: User) -> Recipient:
    if user.is_bot or user.id == TELEGRAM_SERVICE_ID:
        raise UserError("Bots can't receive payments.")
    label = f"@{user.username}" if user.username else user.first_name
    return Recipient(user.id, label, create=True)


async def _existing(user_id: int, label: str, ctx: BotContext) -> Recipient:
    try:
        await ctx.vnode.asset_balance(user_id)
    except VNodeError as exc:
        if exc.code == "unknown_user":
            raise UserError(f"{label} has no bitMaskRGB wallet yet: they need to send /start "
                            "to this bot first.") from None
        raise
    return Recipient(user_id, label)
