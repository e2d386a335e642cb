"""Faults the control API can inject, and the state that holds them.

``next_payment`` applies to the next /sendpayment that records a payment, then clears. Its
wire effects (timeout, 500, dropped connection) apply whatever the payment's fate; its outcome
effects (fail, hold, stale answer, zero preimage) apply to payments that went in flight.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PaymentFault(StrEnum):
    # The payment ends Failed after the settle delay.
    FAIL = "fail"
    # The payment stays Pending until /_sim/release.
    HOLD = "hold"
    # /sendpayment records the payment and withholds its answer for request_timeout_hang_s
    # (the client times out); the payment succeeds meanwhile.
    TIMEOUT_THEN_SUCCEED = "timeout_then_succeed"
    # /sendpayment answers 500 Unexpected (not a final failure); the payment succeeds.
    ERROR_500_THEN_SUCCEED = "error_500_then_succeed"
    # /sendpayment closes the TCP connection without any HTTP answer; the payment succeeds.
    DROP_THEN_SUCCEED = "drop_then_succeed"
    # The first /getpayment for the hash answers a Failed record dated an hour before the
    # send (left over from an earlier attempt); later polls see Pending, then Succeeded.
    STALE_FAILED_THEN_SUCCEED = "stale_failed_then_succeed"
    # The payment reports Succeeded with preimage "00"*32, which does not hash to its hash.
    ZERO_PREIMAGE = "zero_preimage"


WIRE_FAULTS = frozenset(
    {
        PaymentFault.TIMEOUT_THEN_SUCCEED,
        PaymentFault.ERROR_500_THEN_SUCCEED,
        PaymentFault.DROP_THEN_SUCCEED,
    }
)


@dataclass
class FaultState:
    routing_fee_msat: int
    locked: bool = False
    next_payment: PaymentFault | None = None

    def take_next_payment(self) -> PaymentFault | None:
        fault, self.next_payment = self.next_payment, None
        return fault

    def as_json(self) -> dict[str, object]:
        return {
            "routing_fee_msat": self.routing_fee_msat,
            "locked": self.locked,
            "next_payment": None if self.next_payment is None else self.next_payment.value,
        }
