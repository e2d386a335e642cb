"""Response models: the shape of every answer of the money and ledger endpoints, declared once.

The server documents its answers with them (`responses={200: {"model": ...}}` in the routes and
`HotRoute.answer`), without validating or re-encoding a body: most bodies are built by the
money functions in SQL and sent as the bytes they are. `vnode.client` parses the same answers
with the same models, and tests/integration/api/test_response_models.py checks that real answers of
the running app fit them exactly, so the SQL, the document and the client cannot drift apart.

This module imports pydantic and nothing of the server (no FastAPI, no database): the client,
and the bot through it, import it alone. Models are frozen, and fields the service adds later
are ignored rather than refused, so an older client keeps working against a newer service.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from vnode.domain.ids import BTC


class Answer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class _OfNode(Answer):
    user_id: int
    node_id: str


class _Amounts(Answer):
    """An amount: `amount_msat` and `amount_sats` for BTC, `asset_amount` for an RGB asset."""

    amount_msat: int | None = None
    amount_sats: int | None = None
    asset_amount: int | None = None


class VirtualNode(_OfNode):
    pubkey: str
    created_at: datetime

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "user_id": 123456789,
                    "node_id": "vn_123456789",
                    "pubkey": "02" + "ab" * 32,
                    "created_at": "2026-11-26T10:00:00.000000Z",
                }
            ]
        },
    )


class BalanceAfter(Answer):
    """A balance after a move: msat/sats for BTC, `asset_amount` (units) for an RGB asset."""

    balance_msat: int | None = None
    balance_sats: int | None = None
    asset_amount: int | None = None


class Transfer(_Amounts):
    transfer_id: int
    status: str
    from_user_id: int
    from_node_id: str
    to_user_id: int
    to_node_id: str
    asset_id: str
    fee_msat: int
    memo: str | None = None
    created_at: datetime
    sender_balance: BalanceAfter

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "transfer_id": 42,
                    "status": "completed",
                    "from_user_id": 123456789,
                    "from_node_id": "vn_123456789",
                    "to_user_id": 987654321,
                    "to_node_id": "vn_987654321",
                    "asset_id": "BTC",
                    "amount_msat": 5000000,
                    "amount_sats": 5000,
                    "fee_msat": 0,
                    "memo": None,
                    "created_at": "2026-11-26T10:00:00.000000Z",
                    "sender_balance": {"balance_msat": 95000000, "balance_sats": 95000},
                }
            ]
        },
    )


class AdminMove(_OfNode, _Amounts):
    transaction_id: int
    kind: str
    asset_id: str
    reason: str
    created_at: datetime
    balance: BalanceAfter


class AssetBalance(Answer):
    """One asset's balance. BTC fills the `_msat`/`_sats` fields; an RGB asset fills
    `balance`/`pending`/`spendable` in its own units."""

    asset_id: str
    balance_msat: int | None = None
    pending_msat: int | None = None
    spendable_msat: int | None = None
    balance_sats: int | None = None
    pending_sats: int | None = None
    spendable_sats: int | None = None
    balance: int | None = None
    pending: int | None = None
    spendable: int | None = None

    @property
    def spendable_base_units(self) -> int:
        """What can be sent now, in the asset's base unit (msat for BTC)."""
        value = self.spendable_msat if self.asset_id == BTC else self.spendable
        return value or 0

    @property
    def settled_base_units(self) -> int:
        """Settled balance (spendable plus pending), in the asset's base unit (msat for BTC)."""
        value = self.balance_msat if self.asset_id == BTC else self.balance
        return value or 0


class UserAssetBalance(AssetBalance, _OfNode):
    pass


class Balances(_OfNode):
    balances: tuple[AssetBalance, ...]

    def get(self, asset_id: str = BTC) -> AssetBalance | None:
        return next((b for b in self.balances if b.asset_id == asset_id), None)


class HistoryEntry(_Amounts):
    id: int
    transaction_id: int
    kind: str
    direction: Literal["in", "out"]
    asset_id: str
    counterparty: str
    memo: str | None = None
    status: str
    created_at: datetime


class HistoryPage(_OfNode):
    transactions: tuple[HistoryEntry, ...]
    next_cursor: str | None = None


class Payment(_OfNode):
    """An outgoing payment. `pending` keeps amount plus fee reserve held; follow it with
    `POST /virtual_payment` or the events. `failed` was refunded."""

    payment_id: int
    payment_hash: str
    status: Literal["pending", "succeeded", "failed"]
    kind: str
    amount_msat: int
    amount_sats: int
    asset_id: str
    asset_amount: int | None = None
    fee_reserve_msat: int
    fee_msat: int | None = None
    preimage: str | None = None
    failure_reason: str | None = None
    created_at: datetime
    finished_at: datetime | None = None


class InvoiceQuote(Answer):
    """What paying an invoice would cost. `internal` invoices are settled inside vnode without
    a fee. Amount fields are null for an amountless invoice quoted without `amt_msat`."""

    payment_hash: str
    network: str
    invoice_amount_msat: int | None = None
    amount_msat: int | None = None
    description: str | None = None
    expires_at: datetime
    payee_pubkey: str
    internal: bool
    fee_reserve_msat: int | None = None
    fee_reserve_rule: str | None = None
    total_msat: int | None = None
    asset_id: str | None = None
    asset_amount: int | None = None


class _Invoice(_OfNode):
    invoice: str
    expires_at: datetime
    asset_id: str
    amount_msat: int | None = None
    asset_amount: int | None = None
    description: str | None = None


class LnInvoice(_Invoice):
    payment_hash: str


class RgbInvoice(_Invoice):
    """`kind` "bolt11" (BTC: an amountless Lightning invoice, the fields of `LnInvoice`) or
    "rgb_onchain" (an RGB asset: with `recipient_id` and `batch_transfer_idx`)."""

    kind: Literal["bolt11", "rgb_onchain"]
    payment_hash: str | None = None
    recipient_id: str | None = None
    batch_transfer_idx: int | None = None


class LightningAddress(_OfNode):
    """A user's Lightning Address (docs/LNURL.md): `address` (LUD-16) and the same as an LNURL
    (LUD-01, for a QR code), both leading a wallet to `url`."""

    name: str
    address: str
    lnurl: str
    url: str
    claimed_at: datetime

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "user_id": 123456789,
                    "node_id": "vn_123456789",
                    "name": "alice",
                    "address": "alice@pay.example.com",
                    "lnurl": "LNURL1DP68GURN8GHJ7URP0YHX27RPD4CXCEFWVDHK6TEWWAJKCMPDDD"
                    "HX7AMW9AKXUATJD3CZ7CTVD93K2ME3CYY",
                    "url": "https://pay.example.com/.well-known/lnurlp/alice",
                    "claimed_at": "2026-11-26T10:00:00.000000Z",
                }
            ]
        },
    )


class Readiness(Answer):
    """`/readyz`, for 200 (ready, degraded) and 503 (not ready) alike. Only `status` is there
    for everyone; the rest needs a read key."""

    status: str
    checks: dict[str, str] | None = None
    node: dict[str, Any] | None = None
    workers: dict[str, Any] | None = None
    warning: str | None = None
    solvency: dict[str, Any] | None = None

    @property
    def ready(self) -> bool:
        """Serving: a degraded service (a money worker behind) still answers requests."""
        return self.status in ("ready", "degraded")


def documented(answer: type[Answer]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for a 200 answer of this model. Documentation only: FastAPI neither
    validates nor re-encodes the Response a route returns, so the body's bytes stay as built."""
    return {200: {"model": answer}}


class LndHubAccount(Answer):
    """POST /virtual_lndhub_account: a user's LndHub credentials (issue 12). The password is
    shown only here; `url` is what BlueWallet, Zeus and Alby import (docs/WALLETS.md)."""

    user_id: int
    scope: Literal["spend", "invoice"]
    login: str
    password: str
    url: str


# Per-user limits (issue 12, docs/LIMITS.md). All msat of BTC; null: no limit (effective,
# defaults) or no override (overrides).
class LimitValues(Answer):
    send_max_msat: int | None = None
    receive_max_msat: int | None = None
    balance_max_msat: int | None = None
    send_24h_msat: int | None = None
    send_30d_msat: int | None = None
    receive_24h_msat: int | None = None
    receive_30d_msat: int | None = None
    fee_max_msat: int | None = None


class LimitUsage(Answer):
    """What the user used of the rolling windows, and holds (spendable + pending)."""

    sent_24h_msat: int
    sent_30d_msat: int
    received_24h_msat: int
    received_30d_msat: int
    balance_msat: int


class UserLimits(_OfNode):
    """A user's limits: `effective` (the override, else the server default, else null: off),
    the user's `overrides`, the server's `defaults`, the `usage` now, and the most one payment
    may send or receive now (null: unlimited; the balance aside for sending)."""

    effective: LimitValues
    overrides: LimitValues
    defaults: LimitValues
    usage: LimitUsage
    send_headroom_msat: int | None
    receive_headroom_msat: int | None

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "user_id": 123456789,
                    "node_id": "vn_123456789",
                    "effective": {"send_24h_msat": 100000000, "fee_max_msat": 5000000},
                    "overrides": {"send_24h_msat": 100000000},
                    "defaults": {"send_24h_msat": 50000000, "fee_max_msat": 5000000},
                    "usage": {
                        "sent_24h_msat": 2000000,
                        "sent_30d_msat": 9000000,
                        "received_24h_msat": 0,
                        "received_30d_msat": 1000000,
                        "balance_msat": 7000000,
                    },
                    "send_headroom_msat": 98000000,
                    "receive_headroom_msat": None,
                }
            ]
        },
    )


# Proofs of liabilities (issue 16, docs/PROOFS.md).
_EXAMPLE_STATEMENT: dict[str, Any] = {
    "asset_id": "BTC",
    "created_at": "2026-12-06T17:00:00.000000Z",
    "epoch": 42,
    "leaves": 1024,
    "ledger_position": 981234,
    "root": "5f" * 32,
    "total": 123456789000,
}


class ProofStatement(Answer):
    """The signed root statement of an epoch; its canonical JSON (sorted keys, no spaces) is
    what the operator's proof key signs (BIP340 over its SHA-256)."""

    asset_id: str
    epoch: int
    root: str
    total: int
    leaves: int
    created_at: str
    ledger_position: int


class ProofKey(Answer):
    """GET /proofs/key: the operator's proof key, x-only hex (BIP340)."""

    pubkey: str

    model_config = ConfigDict(
        frozen=True, extra="ignore", json_schema_extra={"examples": [{"pubkey": "a1" * 32}]}
    )


class ProofEpoch(Answer):
    """GET /proofs/{asset_id}/{epoch}: a signed statement; `pruned` once its tree (what serves
    users' inclusion proofs) is no longer kept."""

    statement: ProofStatement
    signature: str
    pruned: bool

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        json_schema_extra={
            "examples": [{"statement": _EXAMPLE_STATEMENT, "signature": "0b" * 64, "pruned": False}]
        },
    )


class ProofAsset(ProofEpoch):
    """An asset's newest epoch beside what the node could spend: owed (the signed total)
    against held; `node_spendable` is null while the node's balances are unknown."""

    owed: int
    node_spendable: int | None
    shortfall: int | None


class ProofsOverview(Answer):
    """GET /proofs: the proof key and, per asset, the newest signed statement with the
    solvency check ("owed X, held Y")."""

    pubkey: str
    node_checked_age_s: float | None
    assets: list[ProofAsset]

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "pubkey": "a1" * 32,
                    "node_checked_age_s": 1.5,
                    "assets": [
                        {
                            "statement": _EXAMPLE_STATEMENT,
                            "signature": "0b" * 64,
                            "pruned": False,
                            "owed": 123456789000,
                            "node_spendable": 150000000000,
                            "shortfall": 0,
                        }
                    ],
                }
            ]
        },
    )


class ProofStep(Answer):
    hash: str
    sum: int
    side: Literal["left", "right"]


class InclusionProof(Answer):
    """POST /virtual_proof: a user's inclusion proof, bottom-up; check it with
    `vnode proofs verify` or the standalone vnode/proofs/verifier.py."""

    statement: ProofStatement
    signature: str
    user_id: int
    balance: int
    salt: str
    path: list[ProofStep]

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "statement": {**_EXAMPLE_STATEMENT, "leaves": 2},
                    "signature": "0b" * 64,
                    "user_id": 123456789,
                    "balance": 21000,
                    "salt": "7e" * 32,
                    "path": [{"hash": "c4" * 32, "sum": 123456768000, "side": "right"}],
                }
            ]
        },
    )


class StatementBalance(Answer):
    asset_id: str
    balance: int  # settled: spendable plus pending
    spendable: int


class UserStatement(Answer):
    user_id: int
    node_id: str
    node_pubkey: str
    balances: list[StatementBalance]
    last_tx_id: int | None
    created_at: str


class BalanceStatement(Answer):
    """POST /virtual_statement: the user's balances, signed (BIP340 Schnorr over SHA-256 of the
    canonical statement) by the user's own node key, the x-only form of `node_pubkey`."""

    statement: UserStatement
    signature: str

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "statement": {
                        "user_id": 123456789,
                        "node_id": "vn_123456789",
                        "node_pubkey": "02" + "3b" * 32,
                        "balances": [
                            {"asset_id": "BTC", "balance": 21000000, "spendable": 21000000}
                        ],
                        "last_tx_id": 1234,
                        "created_at": "2026-12-06T17:00:00.000000Z",
                    },
                    "signature": "0b" * 64,
                }
            ]
        },
    )
