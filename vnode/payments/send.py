"""Flow 2: paying a Lightning invoice for a user.

An invoice vnode issued is settled inside the ledger. Any other goes reserve -> pay -> settle:
the reserve commits before the node is called, only a final FAILED refunds it, and anything
ambiguous stays pending for the reconciler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import asyncpg

from vnode.errors import ApiError, ErrorCode
from vnode.faults import crash_point
from vnode.ledger.calls import Idempotency
from vnode.lightning import bolt11
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
from vnode.metrics import Metrics
from vnode.payments import resolve, store
from vnode.payments.checks import check_invoice_text, payable_amount
from vnode.payments.node_errors import node_refusals
from vnode.payments.policy import RGB_MIN_HTLC_MSAT, settings_reserve_msat
from vnode.payments.store import PaymentAnswer, PendingPayment
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
class InvoiceToPay:
    """An invoice read once: the strict local decode, the amount that would be paid, whether
    vnode settles it in the ledger and, for an external one, what the node reads in it (its
    RGB asset). Every later step of `pay` and `quote` takes what it needs from here."""

    decoded: bolt11.Invoice
    amount_msat: int | None  # None only for an amountless invoice quoted without an amount
    internal: bool
    asset_id: str | None = None
    asset_amount: int | None = None

    @property
    def payment_hash(self) -> str:
        return self.decoded.payment_hash

    @property
    def invoice(self) -> str:
        """The invoice text as it was read (trimmed): what is stored and sent."""
        return self.decoded.text


class PaymentSender:
    def __init__(
        self,
        pool: asyncpg.Pool,
        backend: LightningBackend,
        monitor: NodeMonitor,
        settings: Settings,
        metrics: Metrics,
    ) -> None:
        self.pool = pool
        self.backend = backend
        self.monitor = monitor
        self.settings = settings
        self._stages = metrics.payment_stages

    @contextlib.contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        """Time one stage of a payment request (Metrics.payment_stages), whatever its end."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self._stages.labels(name).observe(time.perf_counter() - started)

    async def pay(self, command: PayCommand, idempotency: Idempotency) -> PaymentAnswer:
        request = {
            "user": command.user_id,
            "invoice": command.invoice.strip(),
            "amt_msat": command.amt_msat,
            "fee_limit_msat": command.fee_limit_msat,
        }
        request_hash = idempotency.request_hash("sendpayment", request)
        # The one lookup of the key. A retry with the key of an earlier attempt gets that
        # attempt's answer first: the invoice may have expired or the node be locked since, but
        # the payment went ahead.
        replayed = await self._replay(idempotency, request_hash)
        if replayed is not None:
            return replayed
        try:
            return await self._pay_new(command, idempotency, request_hash)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "idempotency_keys_pkey":
                raise
            # A request with the same key raced this one and stored its answer first; all
            # this one did was rolled back. Answer as the first did.
            replayed = await self._replay(idempotency, request_hash)
            assert replayed is not None
            return replayed

    async def _pay_new(
        self, command: PayCommand, idempotency: Idempotency, request_hash: bytes
    ) -> PaymentAnswer:
        with self._stage("read_invoice"):
            target = await self._read_invoice(
                command.invoice, command.amt_msat, amount_required=True
            )
        if target.internal:
            # Our own node cannot pay itself: settle in the ledger (the SQL refuses a
            # substituted invoice text or an invoice vnode does not know).
            return await store.internal_pay(
                self.pool,
                command.user_id,
                target.payment_hash,
                target.invoice,
                command.amt_msat,
                idempotency,
                request_hash,
            )
        return await self._pay_external(command, target, idempotency, request_hash)

    async def _replay(self, idempotency: Idempotency, request_hash: bytes) -> PaymentAnswer | None:
        """The stored answer of an earlier request with this key, brought up to date: a
        payment that was pending answers its state now."""
        stored = await store.idempotent_answer(self.pool, idempotency, "sendpayment", request_hash)
        if stored is None or stored.code != "pending" or stored.payment_id is None:
            return stored
        return await store.payment_answer(self.pool, stored.payment_id)

    async def quote(self, invoice: str, amt_msat: int | None) -> dict[str, object]:
        """What paying `invoice` would cost, checked by the same rules as `pay`; moves nothing.
        For an amountless invoice without `amt_msat`, the amount and the reserve are null."""
        target = await self._read_invoice(invoice, amt_msat, amount_required=False)
        decoded, amount, internal = target.decoded, target.amount_msat, target.internal
        reserve = None if amount is None else 0 if internal else self._reserve_for(amount, None)
        return {
            "payment_hash": decoded.payment_hash,
            "network": decoded.network,
            "invoice_amount_msat": decoded.amount_msat,
            "amount_msat": amount,
            "description": decoded.description,
            "expires_at": datetime.fromtimestamp(decoded.expires_at, UTC),
            "payee_pubkey": decoded.payee_pubkey,
            "internal": internal,
            "fee_reserve_msat": reserve,
            # What the reserve is for, so a payer sees why it is more than the fee will be.
            "fee_reserve_rule": None if internal else self._reserve_rule(),
            "total_msat": None if amount is None or reserve is None else amount + reserve,
            "asset_id": target.asset_id,
            "asset_amount": target.asset_amount,
        }

    async def _read_invoice(
        self, invoice: str, amt_msat: int | None, *, amount_required: bool
    ) -> InvoiceToPay:
        """Every check of an invoice before paying it, each once and in this order: the node
        has been reached, the invoice text (decoded once, here), the amount, whether it is
        ours, the node ready (external only) and what the node reads in it (external only)."""
        # The node's network and key, as last seen: enough to settle our own invoices while
        # the node is locked; an external payment needs it ready.
        info = self.monitor.status.info
        if info is None:
            raise ApiError(ErrorCode.NODE_UNAVAILABLE, "the master node has not been reached yet")
        decoded = check_invoice_text(
            invoice, network=info.network, expiry_horizon_s=self.settings.invoice_expiry_horizon_s
        )
        amount = None
        if amount_required or decoded.amount_msat is not None or amt_msat is not None:
            amount = payable_amount(
                decoded, amt_msat, max_payment_msat=self.settings.max_payment_msat
            )
        if await self._is_ours(decoded, info.pubkey):
            return InvoiceToPay(decoded, amount, internal=True)
        self.monitor.require_ready()
        return await self._with_node_view(InvoiceToPay(decoded, amount, internal=False))

    async def _is_ours(self, decoded: bolt11.Invoice, node_pubkey: str) -> bool:
        """An invoice vnode issued, or any invoice of the master node: settled in the ledger."""
        return (
            await store.invoice_is_ours(self.pool, decoded.payment_hash)
            or decoded.payee_pubkey == node_pubkey
        )

    async def _with_node_view(self, target: InvoiceToPay) -> InvoiceToPay:
        """The node's reading of the invoice (the one place it is asked): it must agree on the
        payment hash, and it alone names the RGB asset and amount."""
        with node_refusals(ErrorCode.INVALID_INVOICE):
            node_view = await self.backend.decode_invoice(target.invoice)
        if node_view.payment_hash != target.payment_hash:
            raise ApiError(ErrorCode.INVALID_INVOICE, "the node reads another payment hash")
        if node_view.asset_id is None:
            return target
        if node_view.asset_amount is None or node_view.asset_amount <= 0:
            # (The adapter refuses 0 already; the ledger's CHECK would be a 500.)
            raise ApiError(ErrorCode.AMOUNT_REQUIRED, "the RGB invoice does not name an amount")
        if target.amount_msat is not None and target.amount_msat < RGB_MIN_HTLC_MSAT:
            raise ApiError(
                ErrorCode.AMOUNT_MISMATCH,
                f"an RGB payment carries at least {RGB_MIN_HTLC_MSAT} msat of BTC",
            )
        return replace(target, asset_id=node_view.asset_id, asset_amount=node_view.asset_amount)

    def _reserve_rule(self) -> str:
        settings = self.settings
        rule = (
            f"{settings.fee_reserve_base_msat} msat + {settings.fee_reserve_ppm / 10_000:g}% "
            "of the amount"
        )
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
                f"this node cannot enforce a fee limit; the fee reserve is {policy} msat",
            )
        return policy

    async def _pay_external(
        self,
        command: PayCommand,
        target: InvoiceToPay,
        idempotency: Idempotency,
        request_hash: bytes,
    ) -> PaymentAnswer:
        assert target.amount_msat is not None  # pay() requires an amount
        reserve = self._reserve_for(target.amount_msat, command.fee_limit_msat)
        try:
            with self._stage("reserve"):
                reserved = await store.reserve_payment(
                    self.pool,
                    command.user_id,
                    target.payment_hash,
                    target.invoice,
                    target.amount_msat,
                    target.asset_id,
                    target.asset_amount,
                    reserve,
                    target.decoded.expires_at,
                    idempotency,
                    request_hash,
                )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "ln_payments_one_live":
                raise
            # Another payer of the same invoice got there first (docs/design/LESSONS.md 3).
            raise ApiError(ErrorCode.PAYMENT_IN_PROGRESS) from None
        if reserved.pending is None:
            return reserved.answer
        # The payment is new and this request's alone (the reserve claimed it for sending; a
        # replay of the key answered before the reserve): send it once.
        payment_id = reserved.pending.id
        crash_point(self.settings.crash_points, "after_reserve")
        with self._stage("send"):
            answered_pending = await self._send(payment_id, target, command, reserve)
        crash_point(self.settings.crash_points, "after_pay")
        return await self.wait_final(
            payment_id,
            self.settings.payment_wait_s,
            just_sent=True,
            answered_pending=reserved.pending if answered_pending else None,
        )

    async def _send(
        self, payment_id: int, target: InvoiceToPay, command: PayCommand, reserve: int
    ) -> bool:
        """Send the payment and apply the node's answer; True when the node answered PENDING
        (nothing to apply: the payment is pending as the reserve left it)."""
        try:
            status = await self.backend.pay_invoice(
                target.decoded,
                amount_msat=command.amt_msat if target.decoded.amount_msat is None else None,
                fee_limit_msat=reserve,
                asset_id=target.asset_id,
                asset_amount=target.asset_amount,
            )
        except (InvoiceRefused, NodeLocked) as exc:
            # Refused before anything left the node: a final failure, refund now.
            await resolve.finish(
                self.pool,
                payment_id,
                PaymentOutcome.FAILED,
                None,
                None,
                f"refused by the node: {exc}",
            )
            return False
        except DuplicatePayment:
            log.warning(
                "node already has a payment for this invoice; tracking it",
                extra={"payment_hash": target.payment_hash},
            )
            return False
        except (NodeUnreachable, NodeError) as exc:
            # Unreachable, or a refusal we cannot prove happened before sending: unknown, so
            # the reserve stays held and the reconciler asks the node until it knows.
            log.warning(
                "payment outcome unknown after send; the reconciler will resolve it",
                extra={
                    "payment_hash": target.payment_hash,
                    "error": str(exc),
                    "node_error": exc.name,
                },
            )
            return False
        if status.outcome is PaymentOutcome.PENDING:
            # resolve.decide leaves a PENDING answer pending whatever the row says: reading
            # the row to apply it would be a query for nothing.
            return True
        pending = await store.pending_payment(self.pool, payment_id)
        if pending is not None:
            await resolve.apply_status(
                self.pool, pending, status, stale_skew_s=self.settings.stale_failure_skew_s
            )
        return False

    async def wait_final(
        self,
        payment_id: int,
        wait_s: float,
        *,
        just_sent: bool = False,
        answered_pending: PendingPayment | None = None,
    ) -> PaymentAnswer:
        """Poll the node until the payment is final or `wait_s` passes; answer its state.

        `just_sent`: the node answered the send a moment ago, so its first check waits a poll
        period instead of asking again at once (the answer would be the one just applied: a
        node call and two queries per payment for nothing; bench/payments.py).
        `answered_pending`: and that answer was PENDING; this is the payment as its reserve
        made it, so the first check after the wait asks the node without reading the row
        first (docs/adr/0031). Nothing is decided from it that the row could contradict: the
        node's answer is applied by vnode_payment_finish, which locks the row and leaves a
        payment the reconciler finished meanwhile as it is; a PENDING answer reads the row
        again as every later check does."""
        deadline = time.monotonic() + wait_s
        ask = not just_sent
        known: PendingPayment | None = None
        if answered_pending is not None and wait_s > 0:
            with self._stage("poll_sleep"):
                await asyncio.sleep(min(_POLL_S, wait_s))
            ask = True
            known = answered_pending
        while True:
            if known is None:
                with self._stage("read_row"):
                    pending = await store.pending_payment(self.pool, payment_id)
            else:
                pending, known = known, None
            if pending is None or time.monotonic() >= deadline:
                break
            if ask:
                with self._stage("check"):  # the node's status, applied
                    final = await resolve.resolve(
                        self.pool,
                        self.backend,
                        pending,
                        stale_skew_s=self.settings.stale_failure_skew_s,
                    )
                if final is not None:
                    # The money function's answer is the row as it finished (the same
                    # vnode_payment_json as payment_answer reads): no need to read it again.
                    return final
            ask = True
            with self._stage("poll_sleep"):
                await asyncio.sleep(_POLL_S)
        with self._stage("read_row"):
            return await store.payment_answer(self.pool, payment_id)


async def find_payment(pool: asyncpg.Pool, user_id: int, payment_hash: str) -> PaymentAnswer | None:
    """The user's latest payment of this hash (a failed one may have been retried)."""
    payment_id = await store.latest_payment_id(pool, user_id, payment_hash)
    return None if payment_id is None else await store.payment_answer(pool, payment_id)
