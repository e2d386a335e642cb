"""Telling users what happened: vnode's events, turned into one message each.

Each event is claimed in PostgreSQL (`bitmask.notified`, keyed by the event id) before its
message goes out, so redeliveries and restarts never notify twice. A message that could not
be sent for a passing reason (Telegram unreachable or flooding) gives its claim back and
the event comes again; one that can never be sent (the user blocked the bot) keeps it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNotFound,
)
from aiogram.types import ReplyParameters

from vnode.bot import texts
from vnode.bot.inbox import TryLater
from vnode.bot.payment_calls import PaymentCalls
from vnode.bot.profiles import ProfileStore

log = logging.getLogger(__name__)


class Notifier:
    def __init__(
        self, bot: Bot, profiles: ProfileStore, max_age_s: int, payment_calls: PaymentCalls
    ) -> None:
        self.bot = bot
        self.profiles = profiles
        self.payment_calls = payment_calls
        self.max_age = timedelta(seconds=max_age_s)  # older events are not told

    async def handle(self, envelope: dict[str, Any]) -> None:
        """Tell the event's user about it, once. Raises TryLater to be called again."""
        user_id, event_type = int(envelope["user_id"]), str(envelope["type"])
        if user_id <= 0 or self._too_old(envelope):
            return
        if not await self.profiles.claim_event(str(envelope["id"]), user_id, event_type):
            return  # told already
        try:
            await self._tell(user_id, event_type, envelope["data"])
        except (TelegramForbiddenError, TelegramBadRequest, TelegramNotFound) as exc:
            # For good: the user blocked the bot, never wrote to it, or the chat is gone.
            log.info("user %s cannot be told about %s: %s", user_id, event_type, exc)
        except (KeyError, TypeError, ValueError) as exc:
            log.error(
                "event %s of type %s unreadable, skipped: %r", envelope["id"], event_type, exc
            )
        except Exception as exc:
            # Passing (Telegram or the database unreachable, a flood limit...): give the claim
            # back, so the event, left unacknowledged, is told when it comes again.
            await self.profiles.release_event(str(envelope["id"]))
            raise TryLater(f"{type(exc).__name__}: {exc}") from exc

    def _too_old(self, envelope: dict[str, Any]) -> bool:
        created = datetime.fromisoformat(str(envelope["created_at"]).replace("Z", "+00:00"))
        return datetime.now(UTC) - created > self.max_age

    async def _tell(self, user_id: int, event_type: str, data: dict[str, Any]) -> None:
        if event_type in ("payment.succeeded", "payment.failed"):
            await self._payment_final(user_id, data)
            return
        text = await self.render(event_type, data)
        if text is not None:
            await self.bot.send_message(user_id, text)

    async def _payment_final(self, user_id: int, data: dict[str, Any]) -> None:
        """The end of a payment the bot started is told once, by its button's answer or by
        this event, whichever comes first; a payment made elsewhere is always told here."""
        payment_hash = str(data["payment_hash"])
        started_here = await self.profiles.knows_payment(payment_hash, user_id)
        if started_here:
            # Its button's call may not have answered yet: let that answer claim the telling.
            await self.payment_calls.answered(payment_hash, user_id)
        confirmation = await self.profiles.claim_final(payment_hash, user_id)
        if started_here and confirmation is None:
            return
        text = texts.payment_result(
            str(data["status"]),
            int(data["amount_msat"]),
            data.get("fee_msat"),
            data.get("failure_reason"),
        )
        if confirmation is None:
            await self.bot.send_message(user_id, text)
            return
        chat_id, message_id = confirmation
        try:
            # A reply to its confirmation; sent anyway if that message was deleted.
            await self.bot.send_message(
                chat_id,
                text,
                reply_parameters=ReplyParameters(
                    message_id=message_id, allow_sending_without_reply=True
                ),
            )
        except TelegramAPIError as exc:
            if not isinstance(exc, TelegramForbiddenError | TelegramBadRequest):
                await self.profiles.release_final(payment_hash, user_id)
            raise

    async def render(self, event_type: str, data: dict[str, Any]) -> str | None:
        """The message for an event, or None for events users are not told about (their own
        outgoing transfers, which the confirmation already answered; payment.pending)."""
        amount = texts.amount_of(
            str(data.get("asset_id", "BTC")), data.get("amount_msat"), data.get("asset_amount")
        )
        if event_type == "transfer.completed" and data.get("direction") == "in":
            who = await self._name(str(data.get("counterparty") or ""))
            memo = f"\nMemo: {escape(str(data['memo']))}" if data.get("memo") else ""
            return f"Received <b>{amount}</b> from {who}.{memo}"
        if event_type == "invoice.paid":
            payer = data.get("from_node_id")
            source = f"from {await self._name(str(payer))}" if payer else "from outside (Lightning)"
            # The payer's comment, when paid through the user's Lightning Address (LUD-12).
            said = f"\nComment: {escape(str(data['comment']))}" if data.get("comment") else ""
            return f"Received <b>{amount}</b> {source}: your invoice was paid.{said}"
        if event_type == "admin.credit":
            return f"Received <b>{amount}</b>: {escape(str(data.get('reason') or 'a credit'))}."
        if event_type == "admin.debit":
            return f"Debited {amount}: {escape(str(data.get('reason') or 'a correction'))}."
        if event_type == "rgb.transfer.settled":
            units = int(data["asset_amount"])
            label = escape(texts.asset_label(str(data["asset_id"])))
            return f"Received <b>{units:,} {label}</b> on-chain."
        return None

    async def _name(self, node_id: str) -> str:
        """A counterparty as the user knows them: @username when the bot has seen them."""
        # isdecimal and ASCII: "vn_²" is digits to isdigit() but not to int() (review L7).
        digits = node_id[3:]
        if node_id.startswith("vn_") and digits.isascii() and digits.isdecimal():
            profile = await self.profiles.get(int(digits))
            if profile is not None:
                return escape(profile.label)
        return f"<code>{escape(node_id)}</code>"
