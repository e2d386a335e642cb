"""The LndHub answers as pydantic models, for the OpenAPI document and the tests (the routes
send the bodies built in service.py as they are)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from vnode.lndhub.wire import CODE_MEANINGS


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Buffer(_Model):
    """Node's Buffer.toJSON(): the bytes of a hash."""

    type: Literal["Buffer"]
    data: list[int] = Field(min_length=32, max_length=32)


class LndHubErrorBody(_Model):
    error: Literal[True]
    code: int = Field(
        description="; ".join(f"{code}: {text}" for code, text in sorted(CODE_MEANINGS.items()))
    )
    message: str


class InTransit(LndHubErrorBody):
    """/payinvoice while the payment is in flight (code 9): not a failure, not paid yet."""

    payment_error: str
    payment_hash: Buffer


class Tokens(_Model):
    access_token: str
    refresh_token: str


class AddedInvoice(_Model):
    r_hash: Buffer
    payment_request: str
    pay_req: str
    add_index: str
    hash: str


class Route(_Model):
    total_amt: int
    total_fees: int
    total_amt_msat: int
    total_fees_msat: int


class DecodedInvoice(_Model):
    destination: str
    payment_hash: str
    num_satoshis: str
    num_msat: str
    timestamp: str
    expiry: str
    description: str
    description_hash: str
    fallback_addr: str
    cltv_expiry: str
    route_hints: list[object]


class Paid(_Model):
    payment_error: Literal[""]
    payment_preimage: str
    payment_hash: Buffer
    payment_route: Route
    pay_req: str
    decoded: DecodedInvoice
    num_satoshis: int
    description: str


class _Available(_Model):
    AvailableBalance: int  # LndHub's name


class Balance(_Model):
    BTC: _Available


class Tx(_Model):
    type: Literal["paid_invoice"]
    value: int = Field(description="sats, fee included")
    fee: int
    timestamp: int
    memo: str
    payment_hash: Buffer
    payment_preimage: str | None = None
    pay_req: str | None = None


class UserInvoice(_Model):
    r_hash: Buffer
    payment_hash: str
    payment_request: str
    pay_req: str
    description: str
    amt: int
    ispaid: bool
    expire_time: int = Field(description="seconds after `timestamp`")
    timestamp: int
    type: Literal["user_invoice"]
    add_index: str


class Info(_Model):
    identity_pubkey: str
    alias: str
    num_active_channels: int
    num_peers: int
    block_height: int
    synced_to_chain: bool
    testnet: bool
    chains: list[dict[str, str]]
    uris: list[str]
    version: str


class PaymentCheck(_Model):
    paid: bool
