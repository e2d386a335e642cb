"""One on-chain RGB receipt: an invoice /rgbinvoice made, and the transfer into it.

A receipt moves only when /refreshtransfers is called, as on the real node: an outside wallet's
send (/_sim/rgbsend) leaves it WaitingCounterparty, the next refresh takes it to
WaitingConfirmations (the transaction is broadcast), the one after to Settled (final). A receipt
that got nothing before its expiry fails on refresh.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from vnode.lightning.rln_api import TransferStatus


@dataclass
class RgbReceive:
    idx: int  # the batch transfer index /rgbinvoice answers; also the transfer's idx
    recipient_id: str
    invoice: str
    asset_id: str | None
    requested_assignment: dict[str, object]
    witness: bool
    expiration_timestamp: int
    transport_endpoints: list[str]
    created_at: int
    updated_at: int
    status: TransferStatus = TransferStatus.WAITING_COUNTERPARTY
    amount: int | None = None  # units an outside wallet sent; None until it sends
    txid: str | None = None
    vout: int = 0
    endpoints_used: set[str] = field(default_factory=set)
    sent_at: int | None = None

    @property
    def sent(self) -> bool:
        return self.amount is not None

    @property
    def receive_utxo(self) -> str | None:
        return None if self.txid is None else f"{self.txid}:{self.vout}"

    def advance(self, now: int) -> TransferStatus | None:
        """One refresh; the new status when it changed."""
        if self.status == TransferStatus.WAITING_COUNTERPARTY:
            if self.sent:
                # The consignment is validated and acknowledged: the node now knows the
                # transaction and the output that will hold the asset.
                self.status = TransferStatus.WAITING_CONFIRMATIONS
                self.txid = fake_txid(self.recipient_id)
                self.vout = 1
                self.endpoints_used = set(self.transport_endpoints[:1])
            elif now > self.expiration_timestamp:
                self.status = TransferStatus.FAILED
            else:
                return None
        elif self.status == TransferStatus.WAITING_CONFIRMATIONS:
            self.status = TransferStatus.SETTLED
        else:
            return None
        self.updated_at = now
        return self.status

    def as_json(self) -> dict[str, object]:
        return {
            "idx": self.idx,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "status": self.status.value,
            "requested_assignment": self.requested_assignment,
            # What arrived is known once the consignment was accepted (first refresh).
            "assignments": (
                [{"type": "Fungible", "value": self.amount}]
                if self.amount is not None and self.txid is not None
                else []
            ),
            "kind": "ReceiveWitness" if self.witness else "ReceiveBlind",
            "txid": self.txid,
            "recipient_id": self.recipient_id,
            "receive_utxo": self.receive_utxo,
            "change_utxo": None,
            "expiration_timestamp": self.expiration_timestamp,
            "transport_endpoints": [
                {"endpoint": e, "transport_type": "JsonRpc", "used": e in self.endpoints_used}
                for e in self.transport_endpoints
            ],
        }


def fake_txid(*parts: str) -> str:
    return hashlib.sha256("/".join(("vnode-sim-tx", *parts)).encode()).hexdigest()
