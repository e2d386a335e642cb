"""Flow 2: paying a Lightning invoice for a user.

An invoice vnode issued is settled inside the ledger. Any other goes reserve -> pay -> settle:
the reserve commits before the node is called, only a final FAILED refunds it, and anything
ambiguous stays pending for the reconciler.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from vnode.errors import ApiError, ErrorCode
from vnode.faults import crash_point
from vnode.ledger.calls import Idempotency, Outcome, call_money_function
from vnode.lightning.base import (
    DuplicatePayment,
    InvoiceRefused,
    LightningBackend,
    NodeError,
    NodeLocked,
    NodeUnreachable,
    PaymentOutcome,
)
from vnode.lightning.monitor import NodeMonitor
from vnode.payments import resolve
from vnode.payments.checks import (
    PayableInvoice,
    check_invoice,
    check_invoice_text,
    payable_amount,
)
from vnode.payments.policy import RGB_MIN_HTLC_MSAT, settings_reserve_msat
from vnode.settings import Settings

log = logging.getLogger(__name__)
_POLL_S = 0.05


@dataclass(frozen=True)
class PayCommand:
    user_id: int
    invoice: str
    amt_msat: int | None
    fee_limit_msat: int | None


@dataclass(frozen=True)
class _Rgb:
    asset_id: str | None
    asset_amount: int | None


class PaymentSender:
    def __init__(self, pool: asyncpg.Pool, backend: LightningBackend, monitor: NodeMonitor,
                 settings: Settings) -> None:
        self.pool = pool
        self.backend = backend
        self.monitor = monitor
        self.settings = settings

    async def pay(self, command: PayCommand, idempotency: Idempotency) -> Outcome:
        # The node's network and key, as last seen: enough to settle our own invoices while
        # the node is locked; an external payment below needs it ready.
        request = {"user": command.user_id, "invoice": command.invoice.strip(),
                   "amt_msat": command.amt_msat, "fee_limit_msat": command.fee_limit_msat}
        request_hash = idempotency.request_hash("sendpayment", request)
        # A retry with the key of an earlier attempt gets that attempt's answer first: the
        # invoice may have expired or the node be locked since, but the payment went ahead.
        replayed = await self._replay(idempotency, request_hash)
        if replayed is not None:
            return replayed
        info = self.monitor.status.info
        if info is None:
            raise ApiError(ErrorCode.NODE_UNAVAILABLE, "the master node has not been reached yet")
        payable = check_invoice(command.invoice, amt_msat=command.amt_msat, network=info.network,
                                max_payment_msat=self.settings.max_payment_msat,
                                expiry_horizon_s=self.settings.invoice_expiry_horizon_s)
        ours = await self.pool.fetchval(
            "SELECT true FROM ln_invoices WHERE payment_hash = $1", payable.payment_hash)
        if ours or payable.decoded.payee_pubkey == info.pubkey:
            # Our own node cannot pay itself: settle in the ledger (the SQL refuses a
            # substituted invoice text or an invoice vnode does not know).
            return await call_money_function(
                self.pool,
                "SELECT status, body FROM vnode_internal_pay($1, $2, $3, $4, $5, $6, $7)",
                command.user_id, payable.payment_hash, payable.invoice, command.amt_msat,
                idempotency.owner, idempotency.key, request_hash)
        self.monitor.require_ready()
        return await self._pay_external(command, payable, idempotency, request_hash)

    async def _replay(self, idempotency: Idempotency, request_hash: bytes) -> Outcome | None:
        """The stored answer of an earlier request with this key, brought up to date: a
        payment that was pending answers its state now."""
        if idempotency.key is None:
            return None
        row = await self.pool.fetchrow(
            "SELECT status, body::text AS body "
            "FROM vnode_idem_lookup($1, $2, 'sendpayment', $3)",
            idempotency.owner, idempotency.key, request_hash)
        if row is None:
            return None
        stored = Outcome(row["status"], row["body"])
        if stored.status != 202:
            return stored
        return await payment_outcome(self.pool, int(stored.json()["payment_id"]))  # type: ignore[call-overload]

    async def quote(self, invoice: str, amt_msat: int | None) -> dict[str, object]:
        """What paying `invoice` would cost, checked by the same rules as `pay`; moves nothing.
        For an amountless invoice without `amt_msat`, the amount and the reserve are null."""
        info = self.monitor.status.info
        if info is None:
            raise ApiError(ErrorCode.NODE_UNAVAILABLE, "the master node has not been reached yet")
        decoded = check_invoice_text(invoice, network=info.network,
                                     expiry_horizon_s=self.settings.invoice_expiry_horizon_s)
        amount = None
        if decoded.amount_msat is not None or amt_msat is not None:
            amount = payable_amount(decoded, amt_msat,
                                    max_payment_msat=self.settings.max_payment_msat)
        ours = await self.pool.fetchval(
            "SELECT true FROM ln_invoices WHERE payment_hash = $1", decoded.payment_hash)
        internal = bool(ours) or decoded.payee_pubkey == info.pubkey
        rgb = _Rgb(None, None)
        if not internal:
            self.monitor.require_ready()
            rgb = await self._rgb_fields(PayableInvoice(invoice.strip(), decoded, amount or 0),
                                         check_amount=amount is not None)
        reserve = None if amount is None else 0 if internal else self._reserve_for(amount, None)
        return {
            "payment_hash": decoded.payment_hash, "network": decoded.network,
            "invoice_amount_msat": decoded.amount_msat, "amount_msat": amount,
            "description": decoded.description,
            "expires_at": datetime.fromtimestamp(decoded.expires_at, UTC),
            "payee_pubkey": decoded.payee_pubkey, "internal": internal,
            "fee_reserve_msat": reserve,
            # What the reserve is for, so a payer sees why it is more than the fee will be.
            "fee_reserve_rule": None if internal else self._reserve_rule(),
            "total_msat": None if amount is None or reserve is None else amount + reserve,
            "asset_id": rgb.asset_id, "asset_amount": rgb.asset_amount,
        }

    async def _rgb_fields(self, payable: PayableInvoice, *, check_amount: bool = True) -> _Rgb:
        try:
            node_view = await self.backend.decode_invoice(payable.invoice)
        except InvoiceRefused as exc:
            raise ApiError(ErrorCode.INVALID_INVOICE, f"the node refused it: {exc}") from None
        except NodeError as exc:
            raise ApiError(ErrorCode.NODE_UNAVAILABLE, str(exc)) from None
        if node_view.payment_hash != payable.payment_hash:
            raise ApiError(ErrorCode.INVALID_INVOICE, "the node reads another payment hash")
        if node_view.asset_id is None:
            return _Rgb(None, None)
        if node_view.asset_amount is None or node_view.asset_amount <= 0:
            # (The adapter refuses 0 already; the ledger's CHECK would be a 500.)
            raise ApiError(ErrorCode.AMOUNT_REQUIRED, "the RGB invoice does not name an amount")
        if check_amount and payable.amount_msat < RGB_MIN_HTLC_MSAT:
            raise ApiError(ErrorCode.AMOUNT_MISMATCH,
                           f"an RGB payment carries at least {RGB_MIN_HTLC_MSAT} msat of BTC")
        return _Rgb(node_view.asset_id, node_view.asset_amount)

    def _reserve_rule(self) -> str:
        settings = self.settings
        rule = (f"{settings.fee_reserve_base_msat} msat + {settings.fee_reserve_ppm / 10_000:g}% "
                "of the amount")
        if settings.fee_reserve_min_msat:
            rule += f", at least {settings.fee_reserve_min_msat} msat"
        if self.backend.capabilities.reports_fee:
            return rule + "; held back for the routing fee, the unused part returned"
        # RLN reports no fee (docs/NODE.md): the whole reserve is the fee, known in advance.
        return rule + "; this node reports no fee, so the whole reserve is charged as the fee"

    def _reserve_for(self, amount_msat: int, fee_limit_msat: int | None) -> int:
        policy = settings_reserve_msat(self.settings, amount_msat)
        if fee_limit_msat is None:
            return policy
        if self.backend.capabilities.takes_fee_limit:
            return fee_limit_msat  # the node enforces it, so the user's limit is the reserve
        if fee_limit_msat < policy:
            raise ApiError(
                ErrorCode.FEE_LIMIT_TOO_LOW,
                f"this node cannot enforce a fee limit; the fee reserve is {policy} msat")
        return policy

    async def _pay_external(self, command: PayCommand, payable: PayableInvoice,
                            idempotency: Idempotency, request_hash: bytes) -> Outcome:
        rgb = await self._rgb_fields(payable)
        reserve = self._reserve_for(payable.amount_msat, command.fee_limit_msat)
        try:
            reserved = await call_money_function(
                self.pool,
                "SELECT status, body FROM vnode_payment_reserve("
                "$1, $2, $3, $4, $5, $6, $7, to_timestamp($8), $9, $10, $11)",
                command.user_id, payable.payment_hash, payable.invoice, payable.amount_msat,
                rgb.asset_id, rgb.asset_amount, reserve, payable.decoded.expires_at,
                idempotency.owner, idempotency.key, request_hash)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "ln_payments_one_live":
                raise
            # Another payer of the same invoice got there first (docs/design/LESSONS.md 3).
            raise ApiError(ErrorCode.PAYMENT_IN_PROGRESS) from None
        if not reserved.ok:
            return reserved
        payment_id = int(reserved.json()["payment_id"])  # type: ignore[call-overload]
        if await self._claim_send(payment_id):
            crash_point(self.settings.crash_points, "after_reserve")
            await self._send(payment_id, payable, command, rgb, reserve)
            crash_point(self.settings.crash_points, "after_pay")
        return await self.wait_final(payment_id, self.settings.payment_wait_s)

    async def _claim_send(self, payment_id: int) -> bool:
        """Only one caller sends a payment to the node (an idempotent replay does not)."""
        claimed = await self.pool.fetchval(
            "UPDATE ln_payments SET sent_at = now() WHERE id = $1 AND sent_at IS NULL "
            "AND status = 'pending' RETURNING id", payment_id)
        return claimed is not None

    async def _send(self, payment_id: int, payable: PayableInvoice, command: PayCommand,
                    rgb: _Rgb, reserve: int) -> None:
        try:
            status = await self.backend.pay_invoice(
                payable.invoice,
                amount_msat=command.amt_msat if payable.decoded.amount_msat is None else None,
                fee_limit_msat=reserve, asset_id=rgb.asset_id, asset_amount=rgb.asset_amount)
        except (InvoiceRefused, NodeLocked) as exc:
            # Refused before anything left the node: a final failure, refund now.
            await resolve.finish(self.pool, payment_id, PaymentOutcome.FAILED, None, None,
                                 f"refused by the node: {exc}")
            return
        except DuplicatePayment:
            log.warning("node already has a payment for this invoice; tracking it",
                        extra={"payment_hash": payable.payment_hash})
            return
        except (NodeUnreachable, NodeError) as exc:
            # Unreachable, or a refusal we cannot prove happened before sending: unknown, so
            # the reserve stays held and the reconciler asks the node until it knows.
            log.warning("payment outcome unknown after send; the reconciler will resolve it",
                        extra={"payment_hash": payable.payment_hash, "error": str(exc),
                               "node_error": exc.name})
            return
        pending = await resolve.pending_payment(self.pool, payment_id)
        if pending is not None:
            await resolve.apply_status(self.pool, pending, status,
                                       stale_skew_s=self.settings.stale_failure_skew_s)

    async def wait_final(self, payment_id: int, wait_s: float) -> Outcome:
        """Poll the node until the payment is final or `wait_s` passes; answer its state."""
        deadline = time.monotonic() + wait_s
        while True:
            pending = await resolve.pending_payment(self.pool, payment_id)
            if pending is None or time.monotonic() >= deadline:
                break
            await resolve.resolve(self.pool, self.backend, pending,
                                  stale_skew_s=self.settings.stale_failure_skew_s)
            if await resolve.pending_payment(self.pool, payment_id) is None:
                break
            await asyncio.sleep(_POLL_S)
        return await payment_outcome(self.pool, payment_id)


async def payment_outcome(pool: asyncpg.Pool, payment_id: int) -> Outcome:
    """The payment's current state: 200 when final, 202 while pending."""
    row = await pool.fetchrow(
        "SELECT p.status, vnode_payment_json(p) AS body FROM ln_payments p WHERE p.id = $1",
        payment_id)
    assert row is not None
    return Outcome(202 if row["status"] == "pending" else 200, row["body"])


async def find_payment(pool: asyncpg.Pool, user_id: int, payment_hash: str) -> Outcome | None:
    """The user's latest payment of this hash (a failed one may have been retried)."""
    payment_id = await pool.fetchval(
        "SELECT id FROM ln_payments WHERE user_id = $1 AND payment_hash = $2 "
        "ORDER BY id DESC LIMIT 1", user_id, payment_hash)
    return None if payment_id is None else await payment_outcome(pool, payment_id)
