"""Lightning payments as the node records them, inbound and outbound."""

from __future__ import annotations

from dataclasses import dataclass, replace

from vnode.lightning.rln_api import HtlcStatus


@dataclass
class Payment:
    """One row of the node's inbound or outbound payment table, keyed by payment hash.

    An inbound row exists from the moment /lninvoice makes the invoice (Pending, with the
    invoice's amount); the node's own view has no fee, so ``fee_msat`` is sim bookkeeping.
    """

    payment_hash: str
    inbound: bool
    status: HtlcStatus
    amt_msat: int | None
    asset_id: str | None
    asset_amount: int | None
    created_at: int
    updated_at: int
    payee_pubkey: str
    description: str | None
    description_hash: str | None
    preimage: str | None = None  # null until the payment succeeds, as the node sends it
    expires_at: int | None = None
    fee_msat: int = 0
    attempt: int = 0  # outbound: which send this row belongs to (a retry replaces the row)

    def as_json(self) -> dict[str, object]:
        return {
            "amt_msat": self.amt_msat,
            "asset_amount": self.asset_amount,
            "asset_id": self.asset_id,
            "payment_hash": self.payment_hash,
            "inbound": self.inbound,
            "status": self.status.value,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "payee_pubkey": self.payee_pubkey,
            "preimage": self.preimage,
            "description": self.description,
            "description_hash": self.description_hash,
        }

    def stale_failure(self, age_s: int) -> Payment:
        """The row an earlier, failed attempt would have left, ``age_s`` before this one."""
        return replace(
            self,
            status=HtlcStatus.FAILED,
            created_at=self.created_at - age_s,
            updated_at=self.created_at - age_s,
            preimage=None,
        )
