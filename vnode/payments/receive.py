"""Flow 3: invoices for users, and crediting what the node received, exactly once."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import asyncpg

from vnode.domain.ids import BTC, node_id
from vnode.errors import ApiError, ErrorCode
from vnode.keys import Signer
from vnode.ledger.calls import Outcome
from vnode.ledger.nodes import ensure_node
from vnode.lightning.base import (
    InvoiceRefused,
    LightningBackend,
    NodeError,
    PaymentOutcome,
    PaymentStatus,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InvoiceCommand:
    user_id: int
    amount_msat: int | None
    asset_id: str
    asset_amount: int | None
    description: str | None
    expiry_s: int


def _iso(unix_s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix_s))


async def create_invoice(pool: asyncpg.Pool, signer: Signer, backend: LightningBackend,
                         command: InvoiceCommand) -> dict[str, object]:
    """Ask the node for a BOLT 11 invoice and remember whose it is before handing it out."""
    await ensure_node(pool, signer, command.user_id)
    rgb = command.asset_id != BTC
    try:
        created = await backend.create_invoice(
            amount_msat=command.amount_msat, expiry_s=command.expiry_s,
            description=command.description, asset_id=command.asset_id if rgb else None,
            asset_amount=command.asset_amount)
    except InvoiceRefused as exc:
        raise ApiError(ErrorCode.INVALID_REQUEST, f"the node refused the invoice: {exc}") from None
    except NodeError as exc:
        raise ApiError(ErrorCode.NODE_UNAVAILABLE, str(exc)) from None
    await pool.execute(
        "INSERT INTO ln_invoices (payment_hash, user_id, invoice, asset_id, amount_msat, "
        "asset_amount, description, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, "
        "to_timestamp($8))",
        created.payment_hash, command.user_id, created.invoice, command.asset_id,
        command.amount_msat, command.asset_amount, command.description, float(created.expires_at))
    return {
        "invoice": created.invoice, "payment_hash": created.payment_hash,
        "expires_at": _iso(created.expires_at), "user_id": command.user_id,
        "node_id": node_id(command.user_id), "asset_id": command.asset_id,
        "amount_msat": command.amount_msat, "asset_amount": command.asset_amount,
        "description": command.description,
    }


async def credit_receipt(pool: asyncpg.Pool, status: PaymentStatus) -> Outcome:
    """Credit the invoice owner with what the node says it received; a repeat does nothing."""
    row = await pool.fetchrow(
        "SELECT status, body FROM vnode_receipt_credit($1, $2, $3)",
        status.payment_hash, status.amount_msat or 0, status.asset_amount)
    assert row is not None
    return Outcome(row["status"], row["body"])


class InvoiceWatcher:
    """Polls the node's inbound payments (the RGB Lightning Node pushes nothing) and credits
    each succeeded one once. The database's unique key is the real guard; the set only saves
    work between polls."""

    def __init__(self, pool: asyncpg.Pool, backend: LightningBackend) -> None:
        self.pool = pool
        self.backend = backend
        self._settled: set[str] = set()

    async def poll_once(self) -> int:
        credited = 0
        for payment in await self.backend.inbound_payments():
            if payment.outcome is not PaymentOutcome.SUCCEEDED:
                continue
            if payment.payment_hash in self._settled:
                continue
            outcome = await credit_receipt(self.pool, payment)
            if outcome.ok and outcome.json().get("credited"):
                credited += 1
                log.info("inbound payment credited", extra={
                    "payment_hash": payment.payment_hash, "amount_msat": payment.amount_msat})
            self._settled.add(payment.payment_hash)
        return credited


class RgbTransferWatcher:
    """Refreshes RGB transfers while RGB invoices are open and credits settled receipts."""

    def __init__(self, pool: asyncpg.Pool, backend: LightningBackend) -> None:
        self.pool = pool
        self.backend = backend

    async def poll_once(self) -> int:
        open_invoices = await self.pool.fetch(
            "SELECT recipient_id, asset_id FROM rgb_invoices WHERE status = 'open' "
            "AND expires_at > now() - interval '1 day'")
        if not open_invoices:
            return 0
        await self.backend.refresh_transfers()
        wanted = {row["recipient_id"] for row in open_invoices}
        credited = 0
        for asset_id in sorted({row["asset_id"] for row in open_invoices}):
            for transfer in await self.backend.list_transfers(asset_id):
                if (transfer.incoming and transfer.status == "Settled"
                        and transfer.recipient_id in wanted and transfer.amount > 0):
                    row = await self.pool.fetchrow(
                        "SELECT status, body FROM vnode_rgb_receipt_credit($1, $2, $3, $4)",
                        transfer.recipient_id, transfer.idx, transfer.amount,
                        transfer.receive_utxo)
                    assert row is not None
                    credited += 1 if Outcome(row["status"], row["body"]).json().get(
                        "credited") else 0
        return credited


async def create_rgb_invoice(pool: asyncpg.Pool, signer: Signer, backend: LightningBackend,
                             user_id: int, asset_id: str, duration_s: int) -> dict[str, object]:
    """An RGB on-chain invoice from the node, credited when the transfer settles."""
    await ensure_node(pool, signer, user_id)
    try:
        created = await backend.create_rgb_invoice(asset_id=asset_id, duration_s=duration_s,
                                                   min_confirmations=1)
    except InvoiceRefused as exc:
        raise ApiError(ErrorCode.INVALID_ASSET_ID, f"the node refused: {exc}") from None
    except NodeError as exc:
        raise ApiError(ErrorCode.NODE_UNAVAILABLE, str(exc)) from None
    await pool.execute(
        "INSERT INTO rgb_invoices (recipient_id, user_id, asset_id, invoice, expires_at) "
        "VALUES ($1, $2, $3, $4, to_timestamp($5))",
        created.recipient_id, user_id, asset_id, created.invoice, float(created.expires_at))
    return {
        "kind": "rgb_onchain", "invoice": created.invoice, "recipient_id": created.recipient_id,
        "expires_at": _iso(created.expires_at), "user_id": user_id, "node_id": node_id(user_id),
        "asset_id": asset_id, "batch_transfer_idx": created.batch_transfer_idx,
    }
