"""Payments whose confirm button's call is in flight in this bot process.

A payment the bot started is told once: by the answer to its button, or, when that answer was
"pending", by its final event (vnode/bot/notify.py). Events reach the bot within milliseconds
of their commit (docs/adr/0030), so the final event can arrive while the call that finished
the payment has not answered yet; both would then tell the end. The notifier waits here for
that call's answer first. The wait is short: the event says the payment is final, so the call
ends within vnode's poll period. It is bounded all the same, and a payment started by another
bot process is not waited for: then the end may be told twice, never not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

# How long the notifier waits for a button's call to answer before telling the end itself.
ANSWER_WAIT_S = 5.0


class PaymentCalls:
    def __init__(self) -> None:
        self._calls: dict[tuple[str, int], asyncio.Event] = {}

    @contextlib.asynccontextmanager
    async def in_flight(self, payment_hash: str, user_id: int) -> AsyncIterator[None]:
        """Around a button's payment call and the recording of its answer."""
        key = (payment_hash, user_id)
        answered = asyncio.Event()
        self._calls[key] = answered
        try:
            yield
        finally:
            answered.set()
            if self._calls.get(key) is answered:
                del self._calls[key]

    async def answered(
        self, payment_hash: str, user_id: int, timeout_s: float = ANSWER_WAIT_S
    ) -> None:
        """Return once no call for this payment is in flight here, or after `timeout_s`."""
        answered = self._calls.get((payment_hash, user_id))
        if answered is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(answered.wait(), timeout_s)
