"""The master-node backend protocol: what vnode needs from a Lightning node, and nothing more.

One implementation per file (rln.py for the RGB Lightning Node REST API; vnode_sim/ is a simulated
RGB Lightning Node that rln.py talks to exactly like a real one). Results are typed values, a
payment outcome is one of four states (never bool | None), and node refusals are exceptions of
a few kinds that the payment code treats differently: only an explicit final FAILED ever
releases a user's money, every ambiguous answer keeps it pending.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # bolt11 imports Network from here
    from vnode.lightning.bolt11 import Invoice


class PaymentOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # final: the node says it will never succeed
    PENDING = "pending"  # in flight
    UNKNOWN = "unknown"  # the node does not know this payment (never sent, or lost)


class Network(StrEnum):
    """BOLT 11 network names (the invoice prefix decides which)."""

    BITCOIN = "bitcoin"
    TESTNET = "testnet"
    SIGNET = "signet"
    REGTEST = "regtest"


@dataclass(frozen=True)
class Capabilities:
    takes_fee_limit: bool  # the node enforces a maximum routing fee we pass
    reports_fee: bool  # the node tells what fee a payment actually cost
    pushes_inbound: bool  # the node pushes received payments (else vnode polls)
    rgb: bool  # the node carries RGB assets


@dataclass(frozen=True)
class NodeInfo:
    pubkey: str
    network: Network
    simulated: bool = False


@dataclass(frozen=True)
class NodeInvoice:
    """What the node reads in an invoice (the RGB fields only the node can decode)."""

    payment_hash: str
    amount_msat: int | None
    asset_id: str | None
    asset_amount: int | None
    expiry_s: int
    timestamp: int
    network: Network
    payee_pubkey: str | None


@dataclass(frozen=True)
class CreatedInvoice:
    invoice: str
    payment_hash: str
    expires_at: int  # unix seconds


@dataclass(frozen=True)
class PaymentStatus:
    payment_hash: str
    outcome: PaymentOutcome
    amount_msat: int | None = None
    asset_id: str | None = None
    asset_amount: int | None = None
    fee_msat: int | None = None  # None when the node does not report fees
    preimage: str | None = None
    updated_at: int = 0


@dataclass(frozen=True)
class RgbInvoice:
    invoice: str
    recipient_id: str
    expires_at: int
    batch_transfer_idx: int


@dataclass(frozen=True)
class RgbTransfer:
    idx: int
    recipient_id: str | None
    asset_id: str
    status: str  # the node's TransferStatus; "Settled" is final
    amount: int  # asset units received
    txid: str | None
    receive_utxo: str | None  # "txid:vout" of the coin that holds the asset
    incoming: bool


class NodeError(Exception):
    """A refusal or failure reported by the node, with its error name when it gave one."""

    def __init__(self, message: str, name: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.status = status


class NodeLocked(NodeError):
    """The node is locked or changing state: no money moves until it is unlocked."""


class NodeUnreachable(NodeError):
    """Timeout, dropped connection or 5xx: the outcome of the request is unknown."""


class DuplicatePayment(NodeError):
    """The node already has a pending or succeeded payment for this invoice."""


class PaymentNotFound(NodeError):
    """The node has no payment with this hash."""


class InvoiceRefused(NodeError):
    """The node refused the invoice or amount (validation): nothing was sent."""


class LightningBackend(Protocol):
    name: str
    capabilities: Capabilities

    async def node_info(self) -> NodeInfo: ...

    async def decode_invoice(self, invoice: str) -> NodeInvoice: ...

    async def create_invoice(
        self,
        *,
        amount_msat: int | None,
        expiry_s: int,
        description: str | None,
        asset_id: str | None = None,
        asset_amount: int | None = None,
        description_hash: str | None = None,
    ) -> CreatedInvoice:
        """An invoice of the node for `amount_msat` (None: any amount). `description_hash`
        (64 hex digits, instead of `description`) is committed as the invoice's `h` field, as
        LNURL-pay needs (LUD-06: SHA-256 of the metadata); the backend checks the invoice
        commits it, as it checks the amount."""
        ...

    async def pay_invoice(
        self,
        invoice: Invoice,
        *,
        amount_msat: int | None,
        fee_limit_msat: int,
        asset_id: str | None = None,
        asset_amount: int | None = None,
    ) -> PaymentStatus:
        """Start paying an invoice the payment path has read (and checked) already; its `text`
        is what the node is sent. Raises DuplicatePayment, InvoiceRefused, NodeLocked (nothing
        sent) or NodeUnreachable (unknown: maybe sent)."""
        ...

    async def payment_status(self, payment_hash: str, *, inbound: bool = False) -> PaymentStatus:
        """The node's view of a payment; outcome UNKNOWN when it has none."""
        ...

    async def inbound_payments(self) -> list[PaymentStatus]:
        """Every inbound payment the node knows (the RGB Lightning Node has no cursor)."""
        ...

    async def create_rgb_invoice(
        self, *, asset_id: str | None, duration_s: int, min_confirmations: int
    ) -> RgbInvoice: ...

    async def refresh_transfers(self) -> None: ...

    async def list_transfers(self, asset_id: str) -> list[RgbTransfer]: ...

    async def spendable_balances(self) -> dict[str, int]:
        """What the node can send now, per asset: BTC in msat, RGB assets in their units."""
        ...

    async def close(self) -> None: ...
