"""Actions waiting for the user's Confirm, kept in Redis with an expiry.

Taking an action is one GETDEL, so of two taps on Confirm (or two bot processes) exactly one
gets it. The action's token is also its Idempotency-Key at vnode: even a retry after the
service was unreachable moves the money once.
"""

from __future__ import annotations

import secrets
from typing import Literal

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis

# An action whose outcome is unknown (vnode did not answer) is kept this long for "Try again".
ATTEMPTED_TTL_S = 86_400
_PREFIX = "bitmask:confirm:"
_OUTCOME = "bitmask:confirm-outcome:"


class PendingAction(BaseModel):
    model_config = ConfigDict(frozen=True)

    token: str
    kind: Literal["transfer", "payment"]
    user_id: int
    chat_id: int
    amount_msat: int
    # transfer
    to_user_id: int | None = None
    to_label: str | None = None
    create_recipient: bool = False
    memo: str | None = None
    # payment
    invoice: str | None = None
    amt_msat: int | None = None
    payment_hash: str | None = None
    # Sent once without an answer: it may have gone through, so it can no longer be cancelled.
    attempted: bool = False

    @property
    def idempotency_key(self) -> str:
        return f"bitmask-{self.token}"

    def recipient(self) -> int:
        if self.kind != "transfer" or self.to_user_id is None:
            raise ValueError(f"action {self.token} is not a transfer")
        return self.to_user_id

    def payable(self) -> tuple[str, str]:
        """The invoice and its payment hash."""
        if self.kind != "payment" or self.invoice is None or self.payment_hash is None:
            raise ValueError(f"action {self.token} is not a payment")
        return self.invoice, self.payment_hash


class ConfirmCallback(CallbackData, prefix="cf"):
    op: Literal["ok", "no"]
    token: str


def confirm_keyboard(token: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[
        InlineKeyboardButton(text="Confirm",
                             callback_data=ConfirmCallback(op="ok", token=token).pack()),
        InlineKeyboardButton(text="Cancel",
                             callback_data=ConfirmCallback(op="no", token=token).pack()),
    ]])


def retry_keyboard(token: str) -> InlineKeyboardMarkup:
    """After an unknown outcome: only trying again (same key) is offered, never Cancel."""
    return InlineKeyboardMarkup(inline_keyboard=[[
        InlineKeyboardButton(text="Try again",
                             callback_data=ConfirmCallback(op="ok", token=token).pack()),
    ]])


class PendingActions:
    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self.redis = redis
        self.ttl_s = ttl_s

    @staticmethod
    def new_token() -> str:
        return secrets.token_urlsafe(12)

    async def put(self, action: PendingAction, ttl_s: int | None = None) -> None:
        await self.redis.set(_PREFIX + action.token, action.model_dump_json(),
                             ex=ttl_s or self.ttl_s)

    async def peek(self, token: str) -> PendingAction | None:
        raw = await self.redis.get(_PREFIX + token)
        return None if raw is None else PendingAction.model_validate_json(raw)

    async def take(self, token: str, outcome: Literal["confirmed", "cancelled"]
                   ) -> PendingAction | None:
        """The action, for exactly one caller; None when taken, cancelled or expired. What
        became of it is kept a while, so a late tap can be told instead of "expired"."""
        raw = await self.redis.getdel(_PREFIX + token)
        if raw is None:
            return None
        await self.redis.set(_OUTCOME + token, outcome, ex=self.ttl_s)
        return PendingAction.model_validate_json(raw)

    async def outcome(self, token: str) -> str | None:
        raw = await self.redis.get(_OUTCOME + token)
        return None if raw is None else raw.decode() if isinstance(raw, bytes) else raw
