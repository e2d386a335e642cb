"""The node's Lightning side: its invoices and payments, and the outside payee and payer.

Outbound payments answer Pending and settle in a background task after the configured delay
(or as the next-payment fault says). Liquidity moves in the channels the node passes in.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final, Literal

from coincurve import PrivateKey

from vnode.lightning import bolt11
from vnode.lightning.base import Network
from vnode.lightning.bolt11 import Invoice, InvoiceError
from vnode.lightning.rln_api import (
    NODE_NETWORK,
    HtlcStatus,
    LNInvoiceRequest,
    SendPaymentRequest,
)
from vnode_sim import errors
from vnode_sim.assets import is_asset_id
from vnode_sim.channels import Channel
from vnode_sim.faults import WIRE_FAULTS, FaultState, PaymentFault
from vnode_sim.invoices import IssuedInvoice, RgbTagError, issue_invoice, read_rgb_tags
from vnode_sim.models import SimInvoiceRequest, SimPayRequest
from vnode_sim.payments import Payment

# Every RGB Lightning payment carries at least this much BTC (the node's HTLC_MIN_MSAT).
RGB_HTLC_MIN_MSAT: Final = 3_000_000
# The stale record of stale_failed_then_succeed is dated this long before the real send.
STALE_AGE_S: Final = 3600
# ... and the payment settles once it was served, or after this long if nobody asks.
STALE_WAIT_S: Final = 5.0
ZERO_PREIMAGE: Final = "00" * 32
MAX_DESCRIPTION_BYTES: Final = 639
_HASH_RE: Final = re.compile(r"[0-9a-fA-F]{64}")

Ending = Literal["succeed", "fail", "zero_preimage"]
Spawn = Callable[[Coroutine[Any, Any, None]], None]


@dataclass
class OutsideInvoice:
    """An invoice of the outside payee the sim plays; ``paid`` once the node paid it."""

    issued: IssuedInvoice
    network: Network
    paid: bool = False


@dataclass(frozen=True)
class SendResult:
    body: dict[str, object]
    wire_fault: PaymentFault | None  # what the route must do to the answer on the wire


class PaymentEngine:
    def __init__(
        self,
        *,
        network: Network,
        node_key: PrivateKey,
        outside_key: PrivateKey,
        channels: list[Channel],
        faults: FaultState,
        settle_delay_s: float,
        clock: Callable[[], float],
        spawn: Spawn,
    ) -> None:
        self._network = network
        self._node_key = node_key
        self._outside_key = outside_key
        self.pubkey = node_key.public_key.format(compressed=True).hex()
        self.outside_pubkey = outside_key.public_key.format(compressed=True).hex()
        self._channels = channels
        self.faults = faults
        self._settle_delay_s = settle_delay_s
        self._clock = clock
        self._spawn = spawn
        self._our_invoices: dict[str, IssuedInvoice] = {}
        self._outside_invoices: dict[str, OutsideInvoice] = {}
        self._inbound: dict[str, Payment] = {}
        self._outbound: dict[str, Payment] = {}
        self._held: set[str] = set()
        self._stale: dict[str, asyncio.Event] = {}  # hash -> set once the stale row was served
        self._attempts = 0
        # How _parse reads each invoice the outside payee issued, read once when it was issued:
        # the same text always reads the same (a pure function), and decoding it again for each
        # payment was a large part of the sim's CPU per payment (bench/payments.py).
        self._issued_read: dict[str, tuple[Invoice, str | None, int | None]] = {}

    def now(self) -> int:
        return int(self._clock())

    def _channel_for(self, asset_id: str | None) -> Channel | None:
        for channel in self._channels:
            if channel.asset_id == asset_id:
                return channel
        return None

    def _parse(self, text: str) -> tuple[Invoice, str | None, int | None]:
        known = self._issued_read.get(text)
        if known is not None:
            return known
        try:
            # LDK refuses an invoice without a payment secret.
            invoice = bolt11.decode(text, require_payment_secret=True)
            asset_id, asset_amount = read_rgb_tags(invoice)
        except (InvoiceError, RgbTagError) as exc:
            raise errors.invalid_invoice(str(exc)) from None
        return invoice, asset_id, asset_amount

    # ------------------------------------------------------------------ invoices

    def decode_invoice(self, text: str) -> dict[str, object]:
        invoice, asset_id, asset_amount = self._parse(text)
        return {
            "amt_msat": invoice.amount_msat,
            "expiry_sec": invoice.expiry_s,
            "timestamp": invoice.timestamp,
            "asset_id": asset_id,
            "asset_amount": asset_amount,
            "description": invoice.description,
            "description_hash": invoice.description_hash,
            "payment_hash": invoice.payment_hash,
            "payment_secret": invoice.payment_secret,
            # Only an explicit `n` field, like the node: readers recover the key otherwise.
            "payee_pubkey": invoice.payee_pubkey if invoice.payee_pubkey_given else None,
            "network": NODE_NETWORK[invoice.network],
        }

    def create_invoice(self, req: LNInvoiceRequest) -> str:
        if req.asset_id is not None and not is_asset_id(req.asset_id):
            raise errors.invalid_asset_id(req.asset_id)
        if req.asset_id is not None and (req.amt_msat or 0) < RGB_HTLC_MIN_MSAT:
            raise errors.invalid_amount(
                f"amt_msat cannot be less than {RGB_HTLC_MIN_MSAT} when transferring an RGB asset"
            )
        if req.asset_amount is not None and req.asset_id is None:
            raise errors.incomplete_rgb_info()
        if req.amt_msat == 0 or req.asset_amount == 0:
            raise errors.invalid_amount("amounts must be positive")
        description = req.description or None
        if description is not None and req.description_hash is not None:
            raise errors.invalid_request("cannot provide both description and description_hash")
        if description is not None and len(description.encode()) > MAX_DESCRIPTION_BYTES:
            raise errors.RlnError(400, "InvalidDescription", "Invalid description: too long")
        if req.description_hash is not None and not _is_hash(req.description_hash):
            raise errors.invalid_description_hash(req.description_hash)
        now = self.now()
        issued = issue_invoice(
            private_key=self._node_key.secret,
            payee_pubkey=self.pubkey,
            network=self._network,
            now=now,
            amount_msat=req.amt_msat,
            expiry_s=req.expiry_sec,
            description=description,
            description_hash=(
                None if req.description_hash is None else req.description_hash.lower()
            ),
            asset_id=req.asset_id,
            asset_amount=req.asset_amount,
        )
        self._our_invoices[issued.payment_hash] = issued
        self._inbound[issued.payment_hash] = Payment(
            payment_hash=issued.payment_hash,
            inbound=True,
            status=HtlcStatus.PENDING,
            amt_msat=req.amt_msat,
            asset_id=req.asset_id,
            asset_amount=req.asset_amount,
            created_at=now,
            updated_at=now,
            payee_pubkey=self.pubkey,
            description=issued.description,
            description_hash=issued.description_hash,
            expires_at=issued.expires_at,
        )
        return issued.text

    def invoice_status(self, text: str) -> str:
        invoice, _, _ = self._parse(text)
        row = self._inbound.get(invoice.payment_hash)
        if row is None:
            raise errors.unknown_ln_invoice()
        if row.status == HtlcStatus.PENDING and invoice.is_expired(self._clock()):
            return "Expired"
        return row.status.value

    def _expire_inbound(self) -> None:
        # The node's listing rewrites unpaid expired invoices to Failed (and keeps them so).
        now = self.now()
        for row in self._inbound.values():
            if (
                row.status == HtlcStatus.PENDING
                and row.expires_at is not None
                and now >= row.expires_at
            ):
                row.status = HtlcStatus.FAILED
                row.updated_at = now

    # ------------------------------------------------------------------ payments (RLN)

    def list_payments(self) -> list[dict[str, object]]:
        self._expire_inbound()
        rows = [*self._inbound.values(), *self._outbound.values()]
        return [row.as_json() for row in rows]

    def get_payment(self, payment_hash: str) -> dict[str, object]:
        if not _is_hash(payment_hash):
            raise errors.invalid_payment_hash(payment_hash)
        key = payment_hash.lower()
        self._expire_inbound()
        served = self._stale.get(key)
        outbound = self._outbound.get(key)
        if served is not None and not served.is_set() and outbound is not None:
            served.set()
            return outbound.stale_failure(STALE_AGE_S).as_json()
        # The node looks at inbound payments first.
        row = self._inbound.get(key) or outbound
        if row is None:
            raise errors.payment_not_found(payment_hash)
        return row.as_json()

    def send_payment(self, req: SendPaymentRequest) -> SendResult:
        invoice, asset_id, asset_amount = self._parse(req.invoice)
        if invoice.network != self._network:
            raise errors.invalid_invoice(
                f"the invoice is for {invoice.network}, the node runs on {self._network}"
            )
        if invoice.is_expired(self._clock()):
            raise errors.invalid_invoice("the invoice has expired")
        amt_msat = self._amount_to_send(invoice, req.amt_msat)
        rgb = self._rgb_to_send(amt_msat, asset_id, asset_amount, req)

        payment_hash = invoice.payment_hash
        existing = self._outbound.get(payment_hash)
        if existing is not None and existing.status != HtlcStatus.FAILED:
            raise errors.duplicate_payment(existing.status.value)
        now = self.now()
        self._attempts += 1
        payment = Payment(
            payment_hash=payment_hash,
            inbound=False,
            status=HtlcStatus.PENDING,
            amt_msat=amt_msat,
            asset_id=None if rgb is None else rgb[0],
            asset_amount=None if rgb is None else rgb[1],
            created_at=now,
            updated_at=now,
            payee_pubkey=invoice.payee_pubkey,
            description=invoice.description,
            description_hash=invoice.description_hash,
            attempt=self._attempts,
        )
        # A retry after a failure replaces the earlier row, as on the node.
        self._outbound[payment_hash] = payment
        self._stale.pop(payment_hash, None)
        fault = self.faults.take_next_payment()
        if self._start_htlc(payment, invoice):
            self._schedule(payment, fault)
        else:
            # Refused at once (no route, no liquidity, our own invoice): HTTP 200 and Failed.
            payment.status = HtlcStatus.FAILED
        body: dict[str, object] = {
            "payment_id": payment_hash,
            "payment_hash": payment_hash,
            "payment_secret": invoice.payment_secret,
            "status": payment.status.value,
        }
        return SendResult(body, fault if fault in WIRE_FAULTS else None)

    def _amount_to_send(self, invoice: Invoice, amt_msat: int | None) -> int:
        if invoice.amount_msat is None:
            if amt_msat is None:
                raise errors.invalid_amount("need an amount for the given 0-value invoice")
            if amt_msat == 0:
                raise errors.invalid_amount("amt_msat must be positive")
            return amt_msat
        if amt_msat is not None and amt_msat != invoice.amount_msat:
            raise errors.invalid_amount(
                f"amount didn't match invoice value of {invoice.amount_msat}msat"
            )
        return invoice.amount_msat

    def _rgb_to_send(
        self,
        amt_msat: int,
        asset_id: str | None,
        asset_amount: int | None,
        req: SendPaymentRequest,
    ) -> tuple[str, int] | None:
        if asset_id is None:
            if asset_amount is not None:
                raise errors.invalid_invoice("invoice has an RGB amount but not an RGB contract ID")
            return None
        if amt_msat < RGB_HTLC_MIN_MSAT:
            raise errors.invalid_amount(
                f"amt_msat in invoice sending an RGB asset cannot be less than {RGB_HTLC_MIN_MSAT}"
            )
        if asset_amount is not None:
            return asset_id, asset_amount
        if req.asset_id is not None:
            if not is_asset_id(req.asset_id):
                raise errors.invalid_asset_id(req.asset_id)
            if req.asset_id != asset_id:
                raise errors.invalid_invoice(
                    "invoice RGB contract ID doesn't match the requested one"
                )
        if req.asset_amount is None:
            raise errors.incomplete_rgb_info()
        if req.asset_amount == 0:
            raise errors.invalid_amount("asset_amount must be positive")
        return asset_id, req.asset_amount

    def _start_htlc(self, payment: Payment, invoice: Invoice) -> bool:
        """Find a route and lock the liquidity; False when the node refuses at once."""
        if invoice.payee_pubkey == self.pubkey:
            return False  # a node cannot route to itself
        outside = self._outside_invoices.get(payment.payment_hash)
        if outside is None or outside.paid or outside.issued.payee_pubkey != invoice.payee_pubkey:
            return False  # nobody the sim knows would claim it: no route
        channel = self._channel_for(payment.asset_id)
        if channel is None:
            return False
        fee_msat = self.faults.routing_fee_msat
        need_msat = (payment.amt_msat or 0) + fee_msat
        need_units = payment.asset_amount or 0
        if channel.local_msat < need_msat or channel.asset_local < need_units:
            return False
        channel.local_msat -= need_msat
        channel.asset_local -= need_units
        payment.fee_msat = fee_msat
        return True

    def _schedule(self, payment: Payment, fault: PaymentFault | None) -> None:
        key, attempt = payment.payment_hash, payment.attempt
        if fault == PaymentFault.HOLD:
            self._held.add(key)
        elif fault == PaymentFault.FAIL:
            self._spawn(self._settle_later(key, attempt, "fail"))
        elif fault == PaymentFault.ZERO_PREIMAGE:
            self._spawn(self._settle_later(key, attempt, "zero_preimage"))
        elif fault == PaymentFault.STALE_FAILED_THEN_SUCCEED:
            served = asyncio.Event()
            self._stale[key] = served
            self._spawn(self._settle_later(key, attempt, "succeed", after=served))
        else:
            self._spawn(self._settle_later(key, attempt, "succeed"))

    async def _settle_later(
        self, key: str, attempt: int, ending: Ending, after: asyncio.Event | None = None
    ) -> None:
        if after is not None:
            # Pending must stay visible after the stale answer, so the delay starts then.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(after.wait(), STALE_WAIT_S)
        await asyncio.sleep(self._settle_delay_s)
        self._finish(key, attempt, ending)

    def _finish(self, key: str, attempt: int, ending: Ending) -> None:
        payment = self._outbound.get(key)
        if payment is None or payment.attempt != attempt or payment.status != HtlcStatus.PENDING:
            return
        channel = self._channel_for(payment.asset_id)
        assert channel is not None  # the send found it
        moved_msat = (payment.amt_msat or 0) + payment.fee_msat
        moved_units = payment.asset_amount or 0
        self._held.discard(key)
        payment.updated_at = self.now()
        if ending == "fail":
            channel.local_msat += moved_msat
            channel.asset_local += moved_units
            payment.status = HtlcStatus.FAILED
            return
        channel.remote_msat += moved_msat
        channel.asset_remote += moved_units
        outside = self._outside_invoices[key]
        outside.paid = True
        payment.status = HtlcStatus.SUCCEEDED
        payment.preimage = ZERO_PREIMAGE if ending == "zero_preimage" else outside.issued.preimage

    # ------------------------------------------------------------------ the outside world (/_sim)

    def outside_invoice(self, req: SimInvoiceRequest) -> dict[str, object]:
        if req.asset_id is not None and not is_asset_id(req.asset_id):
            raise errors.control_refusal("InvalidAssetID", f"not an asset id: {req.asset_id}")
        if req.asset_amount is not None and req.asset_id is None:
            raise errors.control_refusal("IncompleteRGBInfo", "asset_amount needs asset_id")
        if req.amt_msat == 0 or req.asset_amount == 0:
            raise errors.control_refusal("InvalidAmount", "amounts must be positive")
        network = req.network or self._network
        issued = issue_invoice(
            private_key=self._outside_key.secret,
            payee_pubkey=self.outside_pubkey,
            network=network,
            now=self.now(),
            amount_msat=req.amt_msat,
            expiry_s=req.expiry_sec,
            description=req.description,
            asset_id=req.asset_id,
            asset_amount=req.asset_amount,
        )
        self._outside_invoices[issued.payment_hash] = OutsideInvoice(issued, network)
        with contextlib.suppress(errors.RlnError):  # one the node would refuse is read each time
            self._issued_read[issued.text] = self._parse(issued.text)
        return {
            "invoice": issued.text,
            "payment_hash": issued.payment_hash,
            "payee_pubkey": self.outside_pubkey,
        }

    def outside_pay(self, req: SimPayRequest) -> dict[str, object]:
        """An outside payer pays one of the node's invoices; the node claims it at once."""
        refuse = errors.control_refusal
        try:
            invoice = bolt11.decode(req.invoice)
        except InvoiceError as exc:
            raise refuse("InvalidInvoice", f"Invalid invoice: {exc}") from None
        issued = self._our_invoices.get(invoice.payment_hash)
        if issued is None or invoice.payee_pubkey != self.pubkey:
            raise refuse("UnknownInvoice", "not an invoice of this node")
        if self.faults.locked:
            raise refuse("NodeLocked", "the node is locked and cannot receive")
        self._expire_inbound()
        row = self._inbound[invoice.payment_hash]
        if row.status == HtlcStatus.SUCCEEDED:
            raise refuse("InvoiceAlreadyPaid", "the invoice is already paid")
        if row.status == HtlcStatus.FAILED or self.now() >= issued.expires_at:
            raise refuse("InvoiceExpired", "the invoice has expired")

        if issued.amount_msat is None:
            if not req.amt_msat:
                raise refuse("InvalidAmount", "an amountless invoice needs a positive amt_msat")
            amt_msat = req.amt_msat
        else:
            amt_msat = issued.amount_msat if req.amt_msat is None else req.amt_msat
            if amt_msat < issued.amount_msat:
                raise refuse("InvalidAmount", f"the invoice asks {issued.amount_msat} msat")
        units = self._units_to_receive(issued, req.asset_amount, amt_msat)

        channel = self._channel_for(issued.asset_id)
        if channel is None:
            raise refuse("NoRoute", f"the node has no channel for {issued.asset_id}")
        if channel.remote_msat < amt_msat or channel.asset_remote < units:
            raise refuse("NoRoute", "the peer cannot send that much to the node")
        channel.remote_msat -= amt_msat
        channel.local_msat += amt_msat
        channel.asset_remote -= units
        channel.asset_local += units

        row.status = HtlcStatus.SUCCEEDED
        row.amt_msat = amt_msat  # what actually arrived, overpayment included
        row.asset_amount = units if issued.asset_id is not None else None
        row.preimage = issued.preimage
        row.updated_at = self.now()
        return {
            "payment_hash": issued.payment_hash,
            "amt_msat": amt_msat,
            "asset_id": issued.asset_id,
            "asset_amount": row.asset_amount,
            "preimage": issued.preimage,
        }

    def _units_to_receive(
        self, issued: IssuedInvoice, asset_amount: int | None, amt_msat: int
    ) -> int:
        refuse = errors.control_refusal
        if issued.asset_id is None:
            if asset_amount is not None:
                raise refuse("InvalidAmount", "the invoice carries no asset")
            return 0
        units = issued.asset_amount if asset_amount is None else asset_amount
        if not units:
            raise refuse("IncompleteRGBInfo", "an RGB invoice needs a positive asset_amount")
        if issued.asset_amount is not None and units < issued.asset_amount:
            raise refuse("InvalidAmount", f"the invoice asks {issued.asset_amount} units")
        if amt_msat < RGB_HTLC_MIN_MSAT:
            raise refuse(
                "InvalidAmount", f"an RGB payment carries at least {RGB_HTLC_MIN_MSAT} msat"
            )
        return units

    def release(self, payment_hash: str, outcome: Literal["succeed", "fail"]) -> dict[str, object]:
        key = payment_hash.lower()
        payment = self._outbound.get(key)
        if key not in self._held or payment is None:
            raise errors.control_refusal("NotHeld", "no held payment with this hash")
        self._finish(key, payment.attempt, outcome)
        return payment.as_json()

    def release_all(self, outcome: Literal["succeed", "fail"]) -> int:
        """Finish every held payment; how many there were."""
        held = sorted(self._held)
        for key in held:
            payment = self._outbound.get(key)
            if payment is not None:
                self._finish(key, payment.attempt, outcome)
        self._held.clear()
        return len(held)

    def pending_outbound_msat(self) -> int:
        return sum(
            p.amt_msat or 0 for p in self._outbound.values() if p.status == HtlcStatus.PENDING
        )

    def as_json(self) -> dict[str, object]:
        """Payments (with the sim-only fee and hold flag) and invoices, for /_sim/state."""
        return {
            "payments": [
                row.as_json() | {"fee_msat": row.fee_msat, "held": row.payment_hash in self._held}
                for row in [*self._inbound.values(), *self._outbound.values()]
            ],
            "invoices": [
                {
                    "invoice": issued.text,
                    "payment_hash": issued.payment_hash,
                    "ours": True,
                    "expires_at": issued.expires_at,
                }
                for issued in self._our_invoices.values()
            ]
            + [
                {
                    "invoice": o.issued.text,
                    "payment_hash": o.issued.payment_hash,
                    "ours": False,
                    "expires_at": o.issued.expires_at,
                    "paid": o.paid,
                }
                for o in self._outside_invoices.values()
            ],
        }


def _is_hash(value: str) -> bool:
    return _HASH_RE.fullmatch(value) is not None
