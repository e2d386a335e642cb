"""Who a /send goes to: a @username, a Telegram id, a vn_ id, or the author of a replied
message. Only ids count: a username is looked up in the stored profiles (see profiles.py),
and trusted only while the profile was seen holding it recently: the bot cannot see a holder
rename away, so an old pointer may name someone the sender does not mean. The confirmation
shows the first name beside @username and vn_ id, the one thing the sender can check."""

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
    # A username only when it is current: told by Telegram, or seen recently.
    username: str | None
    # None when the bot has never seen this user (an id typed for a wallet opened by a tip).
    first_name: str | None
    # The id came from Telegram itself (a replied message's author): open their wallet if
    # they have none yet. A typed id is never given a wallet: a typo must not swallow money.
    create: bool = False

    @property
    def node_id(self) -> str:
        return f"vn_{self.user_id}"

    @property
    def label(self) -> str:
        """How the result names them ("Sent 5,000 sats to ...")."""
        return f"@{self.username}" if self.username else self.first_name or self.node_id


def looks_like_recipient(word: str) -> bool:
    return bool(_USERNAME.fullmatch(word) or _USER_ID.fullmatch(word))


async def resolve(word: str, ctx: BotContext) -> Recipient:
    fresh_days = ctx.settings.bot_username_fresh_days
    if (match := _USERNAME.fullmatch(word)) is not None:
        profile = await ctx.profiles.by_username(match[1])
        if profile is None:
            raise UserError(
                f"I don't know @{match[1]}: they have to send /start to this bot "
                "first (or use their Telegram id)."
            )
        if not profile.seen_within(fresh_days):
            # Its holder then may have renamed away and someone else holds it now; whose id
            # it was is not said, so that nobody pays it by copying it.
            raise UserError(
                f"I haven't seen @{match[1]} for over {fresh_days} days, so it "
                "may belong to someone else by now. Reply to one of their "
                "messages with /send, or use their Telegram id or vn_ id."
            )
        return await _existing(profile.user_id, profile.username, profile.first_name, ctx)
    if (match := _USER_ID.fullmatch(word)) is not None and int(match[1]) <= _MAX_ID:
        user_id = int(match[1])
        profile = await ctx.profiles.get(user_id)
        if profile is None:
            return await _existing(user_id, None, None, ctx)
        # The id is what the sender chose; an old username is not shown as theirs.
        username = profile.username if profile.seen_within(fresh_days) else None
        return await _existing(user_id, username, profile.first_name, ctx)
    raise UserError(
        f"'{word[:40]}' is not a recipient: use a @username, a Telegram id or a vn_ id."
    )


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
        raise UserError(
            "That message was posted by a channel or an anonymous admin: there is nobody to pay."
        )
    return reply.from_user


def from_telegram(user: User) -> Recipient:
    if user.is_bot or user.id == TELEGRAM_SERVICE_ID:
        raise UserError("Bots can't receive payments.")
    return Recipient(user.id, user.username, user.first_name, create=True)


async def _existing(
    user_id: int, username: str | None, first_name: str | None, ctx: BotContext
) -> Recipient:
    recipient = Recipient(user_id, username, first_name or None)
    try:
        await ctx.vnode.asset_balance(user_id)
    except VNodeError as exc:
        if exc.code == "unknown_user":
            raise UserError(
                f"{recipient.label} has no bitMaskRGB wallet yet: they need to "
                "send /start to this bot first."
            ) from None
        raise
    return recipient
