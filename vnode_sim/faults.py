"""Faults the control API can inject, and the state that holds them.

Set with ``POST /_sim/faults``; ``GET /_sim/faults`` reads them back. Two families:

**Payment faults** (``next_payment``) apply to the next /sendpayment that records a payment,
then clear. With ``"count": N`` (default 1) the fault applies to each of the next N such
payments (``{"next_payment": "hold", "count": 1000}`` holds a thousand in a row); ``null``
clears it whatever is left. Its wire effects (timeout, 500, dropped connection) apply whatever
the payment's fate; its outcome effects (fail, hold, stale answer, zero preimage) apply to
payments that went in flight.

**Hostile answers** (``hostile``) make the node serve records that break its own spec, as a
buggy or hostile node would. ``{"hostile": "<kind>", "count": N}`` corrupts the next N records
it applies to (default 1), one kind per record, in the order the routes serve them; each such
request adds one more entry (several may wait at once, the oldest applies first), and
``{"hostile": null}`` drops them all. Optional filters: ``"target"`` (only the records of this
payment hash, or of this RGB ``recipient_id``) and ``"route"`` (only answers of that route).
``GET /_sim/faults`` shows what is left (``hostile``) and how many records each kind corrupted
so far (``hostile_served``).

The routes: **payment records** are the ``payment`` of ``/getpayment`` and each item of
``/listpayments`` (inbound payments, ``inbound: true``, and outbound ones alike); **transfer
records** are the items of ``/listtransfers`` (RGB on-chain). Each kind, what it does, and
where it applies:

======================  ==================================================  ==================
kind                    what the record carries                             records
======================  ==================================================  ==================
uppercase_preimage      the preimage in upper-case hex                      payments with one
short_preimage          the preimage cut to 31 bytes (62 hex digits)        payments with one
non_hex_preimage        64 characters, not all hex (``zz`` + 62 digits)     payments with one
unknown_status          ``status: "Weird"``                                 payments, transfers
missing_fields          no ``payment_hash``/``status`` (transfers: no       payments, transfers
                        ``idx``/``status``)
huge_amount             ``amt_msat`` 2**70 and ``asset_amount`` 2**64       payments, transfers
                        (transfers: one Fungible assignment of 2**64)
negative_amount         ``amt_msat`` negative, ``asset_amount`` -1 when     payments, transfers
                        set (transfers: a Fungible assignment of -5)
null_fields             every field null but ``payment_hash``               payments, transfers
                        (transfers: but ``recipient_id``)
wrong_types             strings for numbers and the ``inbound`` boolean     payments, transfers
                        (transfers: ``idx``, ``updated_at``, the value)
extra_fields            the record plus fields the spec does not know       payments, transfers
======================  ==================================================  ==================

The preimage kinds wait for a record that carries a preimage (a Succeeded payment): an entry
is only used up by a record it could corrupt. ``extra_fields`` leaves a valid record valid:
a reader must ignore what it does not know.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final


class PaymentFault(StrEnum):
    # The payment ends Failed after the settle delay.
    FAIL = "fail"
    # The payment stays Pending until /_sim/release (or /_sim/release_all).
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


class HostileKind(StrEnum):
    UPPERCASE_PREIMAGE = "uppercase_preimage"
    SHORT_PREIMAGE = "short_preimage"
    NON_HEX_PREIMAGE = "non_hex_preimage"
    UNKNOWN_STATUS = "unknown_status"
    MISSING_FIELDS = "missing_fields"
    HUGE_AMOUNT = "huge_amount"
    NEGATIVE_AMOUNT = "negative_amount"
    NULL_FIELDS = "null_fields"
    WRONG_TYPES = "wrong_types"
    EXTRA_FIELDS = "extra_fields"


class HostileRoute(StrEnum):
    GETPAYMENT = "/getpayment"
    LISTPAYMENTS = "/listpayments"
    LISTTRANSFERS = "/listtransfers"


PAYMENT_ROUTES: Final = frozenset({HostileRoute.GETPAYMENT, HostileRoute.LISTPAYMENTS})
PREIMAGE_KINDS: Final = frozenset(
    {
        HostileKind.UPPERCASE_PREIMAGE,
        HostileKind.SHORT_PREIMAGE,
        HostileKind.NON_HEX_PREIMAGE,
    }
)
UNKNOWN_STATUS: Final = "Weird"
HUGE_MSAT: Final = 2**70
HUGE_UNITS: Final = 2**64
# Fields no version of the node sends; a reader must pass over them.
EXTRA_FIELDS: Final[dict[str, object]] = {
    "x_hostile_note": "a field the spec does not know",
    "x_hostile_nested": {"list": [1, "two", None], "big": HUGE_MSAT},
    "fee_msat": HUGE_MSAT,  # RLN reports no fee: a reader must not start trusting one
}

Record = dict[str, object]


def routes_of(kind: HostileKind) -> frozenset[HostileRoute]:
    """The routes whose records ``kind`` can corrupt."""
    return PAYMENT_ROUTES if kind in PREIMAGE_KINDS else frozenset(HostileRoute)


def corrupt_payment(kind: HostileKind, record: Record) -> Record | None:
    """A hostile copy of a payment record, or None when ``kind`` has nothing to corrupt in it."""
    bad = dict(record)
    preimage = record.get("preimage")
    if kind in PREIMAGE_KINDS:
        if not isinstance(preimage, str) or not preimage:
            return None
        if kind == HostileKind.UPPERCASE_PREIMAGE:
            bad["preimage"] = preimage.upper()
        elif kind == HostileKind.SHORT_PREIMAGE:
            bad["preimage"] = preimage[:62]
        else:
            bad["preimage"] = "zz" + preimage[2:]
    elif kind == HostileKind.UNKNOWN_STATUS:
        bad["status"] = UNKNOWN_STATUS
    elif kind == HostileKind.MISSING_FIELDS:
        bad.pop("payment_hash", None)
        bad.pop("status", None)
    elif kind == HostileKind.HUGE_AMOUNT:
        bad["amt_msat"] = HUGE_MSAT
        bad["asset_amount"] = HUGE_UNITS
    elif kind == HostileKind.NEGATIVE_AMOUNT:
        amount = record.get("amt_msat")
        bad["amt_msat"] = -(amount if isinstance(amount, int) and amount > 0 else 1000)
        if record.get("asset_amount") is not None:
            bad["asset_amount"] = -1
    elif kind == HostileKind.NULL_FIELDS:
        bad = {key: (value if key == "payment_hash" else None) for key, value in record.items()}
    elif kind == HostileKind.WRONG_TYPES:
        bad["amt_msat"] = str(record.get("amt_msat") or 1000)
        bad["updated_at"] = str(record.get("updated_at"))
        bad["inbound"] = str(record.get("inbound")).lower()
        if record.get("asset_amount") is not None:
            bad["asset_amount"] = str(record["asset_amount"])
    else:
        bad.update(copy.deepcopy(EXTRA_FIELDS))
    return bad


def corrupt_transfer(kind: HostileKind, record: Record) -> Record | None:
    """A hostile copy of an RGB transfer record, or None when ``kind`` does not apply."""
    bad = dict(record)
    if kind in PREIMAGE_KINDS:
        return None
    if kind == HostileKind.UNKNOWN_STATUS:
        bad["status"] = UNKNOWN_STATUS
    elif kind == HostileKind.MISSING_FIELDS:
        bad.pop("idx", None)
        bad.pop("status", None)
    elif kind == HostileKind.HUGE_AMOUNT:
        bad["assignments"] = [{"type": "Fungible", "value": HUGE_UNITS}]
    elif kind == HostileKind.NEGATIVE_AMOUNT:
        bad["assignments"] = [{"type": "Fungible", "value": -5}]
    elif kind == HostileKind.NULL_FIELDS:
        bad = {key: (value if key == "recipient_id" else None) for key, value in record.items()}
    elif kind == HostileKind.WRONG_TYPES:
        bad["idx"] = str(record.get("idx"))
        bad["updated_at"] = str(record.get("updated_at"))
        assignments = record.get("assignments")
        items = assignments if isinstance(assignments, list) else []
        values = [str(a["value"]) for a in items if isinstance(a, dict) and "value" in a]
        bad["assignments"] = [{"type": "Fungible", "value": v} for v in values or ["5"]]
    else:
        bad.update(copy.deepcopy(EXTRA_FIELDS))
    return bad


@dataclass
class HostileFault:
    kind: HostileKind
    remaining: int
    target: str | None = None  # a payment hash (payments) or a recipient_id (transfers)
    route: HostileRoute | None = None

    def matches(self, route: HostileRoute, record: Record) -> bool:
        if self.remaining <= 0 or route not in routes_of(self.kind):
            return False
        if self.route is not None and route != self.route:
            return False
        if self.target is None:
            return True
        key = record.get("recipient_id" if route == HostileRoute.LISTTRANSFERS else "payment_hash")
        return isinstance(key, str) and key.lower() == self.target.lower()

    def as_json(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "remaining": self.remaining,
            "target": self.target,
            "route": None if self.route is None else self.route.value,
        }


@dataclass
class FaultState:
    routing_fee_msat: int
    locked: bool = False
    next_payment: PaymentFault | None = None
    next_payment_remaining: int = 0
    hostile: list[HostileFault] = field(default_factory=list)
    hostile_served: Counter[str] = field(default_factory=Counter)

    def set_next_payment(self, fault: PaymentFault | None, count: int = 1) -> None:
        self.next_payment = fault
        self.next_payment_remaining = 0 if fault is None else count

    def take_next_payment(self) -> PaymentFault | None:
        fault = self.next_payment
        if fault is None:
            return None
        self.next_payment_remaining -= 1
        if self.next_payment_remaining <= 0:
            self.set_next_payment(None)
        return fault

    def add_hostile(
        self,
        kind: HostileKind,
        count: int = 1,
        *,
        target: str | None = None,
        route: HostileRoute | None = None,
    ) -> None:
        self.hostile.append(HostileFault(kind, count, target, route))

    def clear_hostile(self) -> None:
        self.hostile.clear()

    def serve(self, route: HostileRoute, records: list[Record]) -> list[Record]:
        """The records as the route answers them: each corrupted by the oldest entry that
        applies to it, if any (one kind per record)."""
        if not self.hostile:
            return records
        corrupt = corrupt_transfer if route == HostileRoute.LISTTRANSFERS else corrupt_payment
        served = []
        for record in records:
            for entry in self.hostile:
                if not entry.matches(route, record):
                    continue
                bad = corrupt(entry.kind, record)
                if bad is None:
                    continue
                entry.remaining -= 1
                self.hostile_served[entry.kind.value] += 1
                record = bad
                break
            served.append(record)
        self.hostile = [entry for entry in self.hostile if entry.remaining > 0]
        return served

    def as_json(self) -> dict[str, object]:
        return {
            "routing_fee_msat": self.routing_fee_msat,
            "locked": self.locked,
            "next_payment": None if self.next_payment is None else self.next_payment.value,
            "next_payment_remaining": self.next_payment_remaining,
            "hostile": [entry.as_json() for entry in self.hostile],
            "hostile_served": dict(sorted(self.hostile_served.items())),
        }
