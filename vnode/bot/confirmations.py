"""Actions waiting for the user's Confirm, kept in Redis with an expiry.

Taking an action reads it, checks it against the presser, and deletes exactly the value it
checked (compare-and-delete in one Redis script), so of two taps on Confirm (or two bot
processes) exactly one gets it, and only its owner can. The action's token is also its
Idempotency-Key at vnode: even a retry after the service was unreachable moves the money once.
"""

from __future__ import annotations

import secrets
from typing import Literal, TypeAlias

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis

# An action whose outcome is unknown (vnode did not answer) is kept this long for "Try again".
ATTEMPTED_TTL_S = 86_400
_PREFIX = "bitmask:confirm:"
_OUTCOME = "bitmask:confirm-outcome:"
# Delete the action only if it is still the very value the caller read and checked; record
# what became of it in the same step.
_TAKE_IF_UNCHANGED = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return 1
"""
# Why a press got no action although one is waiting: it belongs to someone else, or it was
# sent once without an answer and so can no longer be cancelled (it may have gone through).
Refusal: TypeAlias = Literal["not_yours", "cannot_cancel"]


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
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text="Confirm", callback_data=ConfirmCallback(op="ok", token=token).pack()
                ),
                InlineKeyboardButton(
                    text="Cancel", callback_data=ConfirmCallback(op="no", token=token).pack()
                ),
            ]
        ]
    )


def retry_keyboard(token: str) -> InlineKeyboardMarkup:
    """After an unknown outcome: only trying again (same key) is offered, never Cancel."""
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text="Try again", callback_data=ConfirmCallback(op="ok", token=token).pack()
                ),
            ]
        ]
    )


class PendingActions:
    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self._take_if_unchanged = redis.register_script(_TAKE_IF_UNCHANGED)

    @staticmethod
    def new_token() -> str:
        return secrets.token_urlsafe(12)

    async def put(self, action: PendingAction, ttl_s: int | None = None) -> None:
        await self.redis.set(
            _PREFIX + action.token, action.model_dump_json(), ex=ttl_s or self.ttl_s
        )

    async def peek(self, token: str) -> PendingAction | None:
        """What waits under a token, to look at only: a press is judged by `take`, on the
        value it deletes, never on an earlier read."""
        raw = await self.redis.get(_PREFIX + token)
        return None if raw is None else PendingAction.model_validate_json(raw)

    async def take(
        self, token: str, presser_id: int, outcome: Literal["confirmed", "cancelled"]
    ) -> PendingAction | Refusal | None:
        """The action, for exactly one press by its owner; None when taken, cancelled or
        expired. What became of it is kept a while, so a late tap can be told instead of
        "expired".

        The owner is checked on the very value that is deleted, not on an earlier read: a
        press that read nothing while the owner's money call held the action, and comes back
        after the call put it back for "Try again", must not get it. A refused press leaves
        the action as it was, expiry included."""
        key = _PREFIX + token
        while True:
            raw = await self.redis.get(key)
            if raw is None:
                return None
            action = PendingAction.model_validate_json(raw)
            if action.user_id != presser_id:
                return "not_yours"
            if action.attempted and outcome == "cancelled":
                return "cannot_cancel"
            if await self._take_if_unchanged(
                keys=[key, _OUTCOME + token], args=[raw, outcome, self.ttl_s]
            ):
                return action
            # It changed between the read and the delete (put back after an unknown outcome,
            # or taken by another press): judge what is there now. Each round needs someone
            # else's write, so this ends.

    async def outcome(self, token: str) -> str | None:
        raw = await self.redis.get(_OUTCOME + token)
        return None if raw is None else raw.decode() if isinstance(raw, bytes) else raw
