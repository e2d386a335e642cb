"""Flow 3: invoices for users, and crediting what the node received, exactly once."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import asyncpg

from vnode.domain.ids import BTC, node_id
from vnode.domain.timestamps import format_unix_timestamp
from vnode.errors import ApiError, ErrorCode
from vnode.keys import Signer
from vnode.ledger.nodes import ensure_node
from vnode.lightning.base import (
    LightningBackend,
    PaymentOutcome,
    PaymentStatus,
    RgbTransfer,
)
from vnode.lightning.monitor import NodeMonitor
from vnode.limits.store import receive_refusal
from vnode.metrics import Metrics
from vnode.payments import store
from vnode.payments.node_errors import node_refusals
from vnode.payments.policy import RGB_MIN_HTLC_MSAT
from vnode.settings import Settings
from vnode.workers.items import BoundedSet, ItemBackoff, ItemErrors, each_isolated

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InvoiceCommand:
    """A BOLT 11 invoice for a user: BTC, or an RGB asset carrying `amount_msat` of BTC
    (None: the node's minimum)."""

    user_id: int
    amount_msat: int | None
    asset_id: str
    asset_amount: int | None
    description: str | None
    expiry_s: int
    # LNURL-pay (vnode/lnurl/): the invoice commits to this hash (`h`) instead of `description`,
    # which then only names it in vnode's records; the address it was made through and the
    # payer's LUD-12 comment are kept with it.
    description_hash: str | None = None
    address_id: int | None = None
    comment: str | None = None


@dataclass(frozen=True)
class AssetInvoiceCommand:
    """An invoice to receive an asset: an RGB on-chain invoice, or for BTC an amountless
    BOLT 11 invoice, valid `duration_s`."""

    user_id: int
    asset_id: str
    duration_s: int


class InvoiceIssuer:
    """Flow 3's service: the receiving rules (the RGB minimum BTC, the expiry limit, the node
    ready) and then the node's invoice, remembered as the user's before it is handed out."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        signer: Signer,
        backend: LightningBackend,
        monitor: NodeMonitor,
        settings: Settings,
    ) -> None:
        self.pool = pool
        self.signer = signer
        self.backend = backend
        self.monitor = monitor
        self.settings = settings

    async def ln_invoice(self, command: InvoiceCommand) -> dict[str, object]:
        amount_msat = command.amount_msat
        if command.asset_id != BTC:
            amount_msat = RGB_MIN_HTLC_MSAT if amount_msat is None else amount_msat
            if amount_msat < RGB_MIN_HTLC_MSAT:
                raise ApiError(
                    ErrorCode.AMOUNT_MISMATCH,
                    f"an RGB invoice carries at least {RGB_MIN_HTLC_MSAT} msat of BTC",
                )
        self._check_expiry("expiry_sec", command.expiry_s)
        self.monitor.require_ready()
        return await self._create_ln(replace(command, amount_msat=amount_msat))

    async def asset_invoice(self, command: AssetInvoiceCommand) -> dict[str, object]:
        self._check_expiry("duration_seconds", command.duration_s)
        self.monitor.require_ready()
        if command.asset_id == BTC:
            created = await self._create_ln(
                InvoiceCommand(command.user_id, None, BTC, None, None, command.duration_s)
            )
            return {"kind": "bolt11", **created}
        return await self._create_rgb(command.user_id, command.asset_id, command.duration_s)

    def _check_expiry(self, field: str, seconds: int) -> None:
        if seconds > self.settings.invoice_expiry_max_s:
            raise ApiError(
                ErrorCode.INVALID_EXPIRY, f"{field} is at most {self.settings.invoice_expiry_max_s}"
            )

    async def _check_receive_limits(self, user_id: int, amount_msat: int | None) -> None:
        """Per-user receive limits (docs/LIMITS.md) refuse an invoice here, while a receipt can
        still be refused: once paid, a receipt is always credited. An amountless invoice is
        checked for 1 msat: refused only when nothing at all can be received now."""
        refusal = await receive_refusal(self.pool, user_id, amount_msat or 1)
        if refusal is not None:
            raise ApiError(ErrorCode.LIMIT_EXCEEDED, refusal.message, refusal.fields())

    async def _create_ln(self, command: InvoiceCommand) -> dict[str, object]:
        """Ask the node for a BOLT 11 invoice and remember whose it is before handing it out."""
        await self._check_receive_limits(command.user_id, command.amount_msat)
        await ensure_node(self.pool, self.signer, command.user_id)
        rgb = command.asset_id != BTC
        with node_refusals(ErrorCode.INVALID_REQUEST):
            created = await self.backend.create_invoice(
                amount_msat=command.amount_msat,
                expiry_s=command.expiry_s,
                description=None if command.description_hash else command.description,
                asset_id=command.asset_id if rgb else None,
                asset_amount=command.asset_amount,
                description_hash=command.description_hash,
            )
        await store.insert_ln_invoice(
            self.pool,
            created.payment_hash,
            command.user_id,
            created.invoice,
            command.asset_id,
            command.amount_msat,
            command.asset_amount,
            command.description,
            float(created.expires_at),
            address_id=command.address_id,
            comment=command.comment,
        )
        return {
            "invoice": created.invoice,
            "payment_hash": created.payment_hash,
            "expires_at": format_unix_timestamp(created.expires_at),
            "user_id": command.user_id,
            "node_id": node_id(command.user_id),
            "asset_id": command.asset_id,
            "amount_msat": command.amount_msat,
            "asset_amount": command.asset_amount,
            "description": command.description,
        }

    async def _create_rgb(self, user_id: int, asset_id: str, duration_s: int) -> dict[str, object]:
        """An RGB on-chain invoice from the node, credited when the transfer settles."""
        await ensure_node(self.pool, self.signer, user_id)
        with node_refusals(ErrorCode.INVALID_ASSET_ID):
            created = await self.backend.create_rgb_invoice(
                asset_id=asset_id, duration_s=duration_s, min_confirmations=1
            )
        await store.insert_rgb_invoice(
            self.pool,
            created.recipient_id,
            user_id,
            asset_id,
            created.invoice,
            float(created.expires_at),
        )
        return {
            "kind": "rgb_onchain",
            "invoice": created.invoice,
            "recipient_id": created.recipient_id,
            "expires_at": format_unix_timestamp(created.expires_at),
            "user_id": user_id,
            "node_id": node_id(user_id),
            "asset_id": asset_id,
            "batch_transfer_idx": created.batch_transfer_idx,
        }


async def credit_receipt(pool: asyncpg.Pool, status: PaymentStatus) -> store.ReceiptAnswer:
    """Credit the invoice owner with what the node says it received; a repeat does nothing.
    The node's asset is checked against the invoice's in the database (L9)."""
    return await store.credit_ln_receipt(
        pool, status.payment_hash, status.amount_msat or 0, status.asset_amount, status.asset_id
    )


class InvoiceWatcher:
    """Polls the node's inbound payments (the RGB Lightning Node pushes nothing) and credits
    each succeeded one once. The database's unique key is the real guard; the bounded set
    only saves work between polls. One payment that cannot be credited is reported and
    retried later without holding up the others (L8)."""

    def __init__(
        self, pool: asyncpg.Pool, backend: LightningBackend, metrics: Metrics | None = None
    ) -> None:
        self.pool = pool
        self.backend = backend
        self._settled = BoundedSet()
        self._backoff = ItemBackoff()
        self._errors = ItemErrors("invoice-watcher", metrics)

    async def poll_once(self) -> int:
        credited = 0

        async def credit(payment: PaymentStatus) -> None:
            nonlocal credited
            outcome = await credit_receipt(self.pool, payment)
            if outcome.credited:
                credited += 1
                log.info(
                    "inbound payment credited",
                    extra={
                        "payment_hash": payment.payment_hash,
                        "amount_msat": payment.amount_msat,
                    },
                )
            elif not outcome.ok:
                log.warning(
                    "inbound payment not credited",
                    extra={"payment_hash": payment.payment_hash, "code": outcome.code},
                )
            self._settled.add(payment.payment_hash)
            self._backoff.succeeded(payment.payment_hash)

        async def postpone(payment: PaymentStatus, _exc: BaseException) -> None:
            self._backoff.failed(payment.payment_hash)

        todo = [
            payment
            for payment in await self.backend.inbound_payments()
            if payment.outcome is PaymentOutcome.SUCCEEDED
            and payment.payment_hash not in self._settled
            and self._backoff.due(payment.payment_hash)
        ]
        await each_isolated(
            todo, credit, item_id=lambda p: p.payment_hash, errors=self._errors, on_error=postpone
        )
        return credited


# An RGB invoice nobody paid is closed once it expired this long ago and the node holds no
# transfer for it: then no sender can still start one. A transfer the node knows is watched
# until the node calls it final, however late that is (security review M6).
RGB_UNPAID_GRACE_S = 86_400
_RGB_FINAL_FAILED = "Failed"
_RGB_SETTLED = "Settled"


class RgbTransferWatcher:
    """Refreshes RGB transfers while RGB invoices are open, credits every settled receipt of
    an invoice vnode issued whenever it settles, and raises an alert for a settled incoming
    transfer that matches no invoice of vnode's."""

    def __init__(
        self, pool: asyncpg.Pool, backend: LightningBackend, metrics: Metrics | None = None
    ) -> None:
        self.pool = pool
        self.backend = backend
        self._backoff = ItemBackoff()
        self._errors = ItemErrors("rgb-transfer-watcher", metrics)

    async def poll_once(self) -> int:
        open_invoices = await store.open_rgb_invoices(self.pool)
        if not open_invoices:
            return 0
        await self.backend.refresh_transfers()
        credited = 0
        by_asset: dict[str, list[store.OpenRgbInvoice]] = {}
        for invoice in open_invoices:
            by_asset.setdefault(invoice.asset_id, []).append(invoice)

        async def watch_asset(asset_id: str) -> None:
            nonlocal credited
            transfers = await self.backend.list_transfers(asset_id)
            credited += await self._credit_settled(asset_id, transfers)
            await self._close_finished(by_asset[asset_id], transfers)

        await each_isolated(
            sorted(by_asset),
            watch_asset,
            item_id=lambda a: f"asset {a}",
            errors=self._errors,
            concurrency=4,
        )
        return credited

    async def _credit_settled(self, asset_id: str, transfers: list[RgbTransfer]) -> int:
        settled = [
            t
            for t in transfers
            if t.incoming
            and t.status == _RGB_SETTLED
            and t.recipient_id is not None
            and t.amount > 0
        ]
        if not settled:
            return 0
        ours = await store.rgb_invoices_credited(
            self.pool, [t.recipient_id for t in settled if t.recipient_id is not None]
        )
        credited = 0

        async def credit(transfer: RgbTransfer) -> None:
            nonlocal credited
            assert transfer.recipient_id is not None
            outcome = await store.credit_rgb_receipt(
                self.pool,
                transfer.recipient_id,
                transfer.idx,
                transfer.amount,
                transfer.receive_utxo,
                asset_id,
            )
            if outcome.credited:
                credited += 1
            self._backoff.succeeded(f"rgb {transfer.recipient_id}")

        async def postpone(transfer: RgbTransfer, _exc: BaseException) -> None:
            self._backoff.failed(f"rgb {transfer.recipient_id}")

        unmatched = [t for t in settled if t.recipient_id not in ours]
        for transfer in unmatched:
            await self._alert_unmatched(asset_id, transfer)
        todo = [
            t
            for t in settled
            if t.recipient_id is not None
            and ours.get(t.recipient_id) is False
            and self._backoff.due(f"rgb {t.recipient_id}")
        ]
        await each_isolated(
            todo,
            credit,
            item_id=lambda t: f"rgb {t.recipient_id}",
            errors=self._errors,
            on_error=postpone,
        )
        return credited

    async def _alert_unmatched(self, asset_id: str, transfer: RgbTransfer) -> None:
        # Assets arrived for no invoice vnode issued: nobody is credited, the operator is told.
        assert transfer.recipient_id is not None
        await store.alert_unmatched_rgb(
            self.pool,
            transfer.recipient_id,
            {
                "recipient_id": transfer.recipient_id,
                "asset_id": asset_id,
                "transfer_idx": transfer.idx,
                "asset_amount": transfer.amount,
                "txid": transfer.txid,
            },
        )

    async def _close_finished(
        self, invoices: list[store.OpenRgbInvoice], transfers: list[RgbTransfer]
    ) -> None:
        """Stop watching invoices that can never be credited: the node failed their transfer,
        or they expired long ago and the node holds no transfer for them."""
        statuses = {t.recipient_id: t.status for t in transfers if t.incoming}
        now = time.time()
        failed = [
            invoice.recipient_id
            for invoice in invoices
            if statuses.get(invoice.recipient_id) == _RGB_FINAL_FAILED
        ]
        unpaid = [
            invoice.recipient_id
            for invoice in invoices
            if invoice.recipient_id not in statuses and now - invoice.expires_s > RGB_UNPAID_GRACE_S
        ]
        if failed:
            await store.close_rgb_invoices(self.pool, failed, "failed")
        if unpaid:
            await store.close_rgb_invoices(self.pool, unpaid, "expired")
