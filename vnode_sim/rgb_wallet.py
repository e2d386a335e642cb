"""The node's on-chain RGB wallet: receive invoices, incoming transfers, settled balances.

It serves /rgbinvoice, /refreshtransfers, /listtransfers and the outside wallet's /_sim/rgbsend.
The node only receives on-chain here: every transfer is incoming.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Final

from vnode.lightning.rln_api import (
    AssetFilter,
    RefreshRequest,
    RgbInvoiceRequest,
    TransferStatus,
)
from vnode_sim import errors
from vnode_sim.assets import is_asset_id
from vnode_sim.models import SimRgbSendRequest
from vnode_sim.rgb import RgbReceive

_RECIPIENT_PREFIX: Final = {"bitcoin": "bc", "testnet": "tb", "signet": "tb", "regtest": "bcrt"}
_PENDING: Final = (TransferStatus.WAITING_COUNTERPARTY, TransferStatus.WAITING_CONFIRMATIONS)


class RgbWallet:
    def __init__(self, network: str, seed: bytes, channel_assets: frozenset[str]) -> None:
        self._prefix = _RECIPIENT_PREFIX[network]
        self._seed = seed
        self._channel_assets = channel_assets
        self._receives: dict[int, RgbReceive] = {}
        self._settled: dict[str, int] = {}
        self._next_idx = 1

    # ------------------------------------------------------------------ assets

    @property
    def known_assets(self) -> set[str]:
        """Assets the node knows: in a channel, received on-chain, or named by an invoice."""
        seen = {r.asset_id for r in self._receives.values() if r.asset_id is not None}
        return set(self._channel_assets) | seen | set(self._settled)

    def check_asset(self, asset_id: str) -> None:
        if not is_asset_id(asset_id):
            raise errors.invalid_asset_id(asset_id)
        if asset_id not in self.known_assets:
            raise errors.unknown_contract_id()

    def settled(self, asset_id: str) -> int:
        return self._settled.get(asset_id, 0)

    def incoming(self, asset_id: str) -> int:
        """Units sent to the node and not settled yet (the wallet's "future" above "settled")."""
        return sum(
            r.amount or 0
            for r in self._receives.values()
            if r.asset_id == asset_id and r.status in _PENDING
        )

    # ------------------------------------------------------------------ RLN routes

    def create_invoice(self, req: RgbInvoiceRequest, now: int) -> dict[str, object]:
        if req.asset_id is not None:
            self.check_asset(req.asset_id)
        if req.expiration_timestamp <= now:
            raise errors.RlnError(400, "InvalidExpiration", "Invalid expiration")
        if not req.transport_endpoints:
            raise errors.RlnError(
                400, "InvalidTransportEndpoints", "Invalid transport endpoints: none given"
            )
        idx = self._next_idx
        self._next_idx += 1
        recipient_id = self._recipient_id(idx, witness=req.witness)
        contract = "~" if req.asset_id is None else req.asset_id.removeprefix("rgb:")
        receive = RgbReceive(
            idx=idx,
            recipient_id=recipient_id,
            invoice=(
                f"rgb:{contract}/~/~/{recipient_id}?expiry={req.expiration_timestamp}"
                f"&endpoints={','.join(req.transport_endpoints)}"
            ),
            asset_id=req.asset_id,
            requested_assignment=(
                {"type": "Any"} if req.assignment is None else req.assignment.model_dump()
            ),
            witness=req.witness,
            expiration_timestamp=req.expiration_timestamp,
            transport_endpoints=list(req.transport_endpoints),
            created_at=now,
            updated_at=now,
        )
        self._receives[idx] = receive
        return {
            "recipient_id": receive.recipient_id,
            "invoice": receive.invoice,
            "expiration_timestamp": receive.expiration_timestamp,
            "batch_transfer_idx": receive.idx,
        }

    def refresh_transfers(self, req: RefreshRequest, now: int) -> dict[str, object]:
        """Advance every matching receipt one step; answer what changed, by transfer idx."""
        if req.asset_id is not None:
            self.check_asset(req.asset_id)
        # Every receipt is incoming: a filter that asks for outgoing ones selects nothing.
        wanted = {TransferStatus(f.status) for f in req.filter if f.incoming}
        changed: dict[str, object] = {}
        for receive in self._receives.values():
            if req.asset_id is not None and receive.asset_id != req.asset_id:
                continue
            if req.filter and receive.status not in wanted:
                continue
            new = receive.advance(now)
            if new is None:
                continue
            changed[str(receive.idx)] = {"updated_status": new.value, "failure": None}
            if new == TransferStatus.SETTLED and receive.asset_id is not None:
                self._settled[receive.asset_id] = self.settled(receive.asset_id) + (
                    receive.amount or 0
                )
        return {"transfers": changed}

    def list_transfers(
        self, asset_filter: AssetFilter, txid: str | None
    ) -> list[dict[str, object]]:
        """Receipts of one asset (Id), of no asset yet (None), or all of them (AnyOrNone)."""
        if asset_filter.type == "Id":
            if asset_filter.value is None:
                raise errors.invalid_request("asset_filter Id needs a value")
            self.check_asset(asset_filter.value)
        return [
            r.as_json()
            for r in self._receives.values()
            if (asset_filter.type == "AnyOrNone" or r.asset_id == asset_filter.value)
            and (txid is None or r.txid == txid)
        ]

    # ------------------------------------------------------------------ the outside wallet

    def outside_send(self, req: SimRgbSendRequest, now: int) -> dict[str, object]:
        """An outside wallet sends assets to one of the node's invoices (seen at next refresh)."""
        refuse = errors.control_refusal
        if (req.recipient_id is None) == (req.invoice is None):
            raise refuse("InvalidRequest", "give exactly one of recipient_id, invoice")
        receive = self._find(recipient_id=req.recipient_id, invoice=req.invoice)
        if receive is None:
            raise refuse("UnknownRecipient", "no RGB invoice of this node matches")
        if not is_asset_id(req.asset_id):
            raise refuse("InvalidAssetID", f"not an asset id: {req.asset_id}")
        if receive.asset_id is not None and receive.asset_id != req.asset_id:
            raise refuse("AssetMismatch", f"the invoice is for {receive.asset_id}")
        if req.amount == 0:
            raise refuse("InvalidAmount", "amount must be positive")
        if receive.sent:
            raise refuse("RecipientIDAlreadyUsed", "this invoice already received a transfer")
        if receive.status != TransferStatus.WAITING_COUNTERPARTY or (
            now > receive.expiration_timestamp
        ):
            raise refuse("InvoiceExpired", "the RGB invoice has expired")
        receive.asset_id = req.asset_id
        receive.amount = req.amount
        receive.sent_at = now
        return {"recipient_id": receive.recipient_id, "batch_transfer_idx": receive.idx}

    def as_json(self) -> dict[str, object]:
        return {
            "settled": dict(self._settled),
            "transfers": [r.as_json() | {"asset_id": r.asset_id} for r in self._receives.values()],
        }

    # ------------------------------------------------------------------ helpers

    def _recipient_id(self, idx: int, *, witness: bool) -> str:
        # Shaped like rgb-lib's: network prefix, kind, Baid64-like chunks (blinded UTXO or
        # witness output); deterministic per node seed and index.
        digest = hashlib.sha256(self._seed + b"/rgb-receive/" + idx.to_bytes(4, "big")).digest()
        text = base64.urlsafe_b64encode(digest).decode().rstrip("=").replace("-", "~")
        chunks = "-".join(text[i : i + 7] for i in range(0, len(text), 7))
        return f"{self._prefix}:{'wvout' if witness else 'utxob'}:{chunks}"

    def _find(self, *, recipient_id: str | None, invoice: str | None) -> RgbReceive | None:
        for receive in self._receives.values():
            if receive.recipient_id == recipient_id or receive.invoice == invoice:
                return receive
        return None
