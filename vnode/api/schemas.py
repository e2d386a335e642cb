"""Request bodies. Field names are the brief's contract; units are in the names.

Validators raise PydanticCustomError with a catalogue code as the error type, which the error
handler turns into that code.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from vnode.domain.amounts import parse_amount, sats_to_msat
from vnode.domain.ids import BTC, parse_asset_id, parse_user_id
from vnode.errors import ErrorCode

MEMO_MAX_CHARS = 256
# Free text stored in PostgreSQL (which cannot hold NUL) and shown to people: no control
# characters but tab and newline. In the schema too, so clients and fuzzers know.
_CONTROL_CHARS = r"\x00-\x08\x0b-\x1f\x7f"
_CONTROL = re.compile(f"[{_CONTROL_CHARS}]")
NO_CONTROL_CHARS = f"^[^{_CONTROL_CHARS}]*$"


def _user_id(value: object) -> int:
    try:
        return parse_user_id(value)
    except ValueError as exc:
        raise PydanticCustomError(ErrorCode.INVALID_USER_ID.value, str(exc)) from None


def _asset_id(value: object) -> str:
    try:
        return parse_asset_id(value)
    except ValueError as exc:
        raise PydanticCustomError(ErrorCode.INVALID_ASSET_ID.value, str(exc)) from None


def _amount(unit: str) -> Any:
    def check(value: object) -> int | None:
        if value is None:
            return None
        try:
            return parse_amount(value, unit)
        except ValueError as exc:
            raise PydanticCustomError(ErrorCode.INVALID_AMOUNT.value, str(exc)) from None

    return BeforeValidator(check)


def _memo(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MEMO_MAX_CHARS or _CONTROL.search(value):
        raise PydanticCustomError(
            ErrorCode.INVALID_MEMO.value,
            f"a memo is a string of at most {MEMO_MAX_CHARS} characters without control characters",
        )
    return value


_AMOUNT_SCHEMA = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
UserId = Annotated[
    int,
    BeforeValidator(_user_id),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
                {"type": "string", "pattern": r"^(vn_)?[1-9][0-9]{0,18}$"},
            ],
            "description": "Telegram user id: a JSON integer, a decimal string, or the vn_ node id",
            "examples": [123456789, "123456789", "vn_123456789"],
        }
    ),
]
AssetId = Annotated[
    str,
    BeforeValidator(_asset_id),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^(BTC|rgb:[A-Za-z0-9_~!$-]{8,120})$",
            "description": "'BTC' or an RGB asset id",
            "default": BTC,
        }
    ),
]
AmountSats = Annotated[
    int | None,
    _amount("amount_sats"),
    WithJsonSchema({**_AMOUNT_SCHEMA, "description": "amount in whole satoshis (BTC only)"}),
]
AmountMsat = Annotated[
    int | None,
    _amount("amount_msat"),
    WithJsonSchema({**_AMOUNT_SCHEMA, "description": "amount in millisatoshis (BTC only)"}),
]
AssetAmount = Annotated[
    int | None,
    _amount("asset_amount"),
    WithJsonSchema(
        {**_AMOUNT_SCHEMA, "description": "amount in the RGB asset's own units (RGB assets only)"}
    ),
]
Memo = Annotated[
    str | None,
    BeforeValidator(_memo),
    WithJsonSchema({"type": "string", "maxLength": MEMO_MAX_CHARS}),
]


class _Body(BaseModel):
    # Unknown fields are refused: a misspelt amount field must not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class _AmountBody(_Body):
    """Exactly one amount: amount_sats or amount_msat for BTC, asset_amount for an RGB asset."""

    asset_id: AssetId = BTC
    amount_msat: AmountMsat = None
    asset_amount: AssetAmount = None

    def _sats(self) -> int | None:
        return None

    @model_validator(mode="after")
    def _one_amount(self) -> Self:
        given = [v for v in (self._sats(), self.amount_msat, self.asset_amount) if v is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                ErrorCode.AMOUNT_FIELDS.value, "give exactly one amount field"
            )
        if (self.asset_amount is None) != (self.asset_id == BTC):
            raise PydanticCustomError(
                ErrorCode.AMOUNT_FIELDS.value,
                "BTC amounts are amount_msat (or amount_sats); RGB amounts are asset_amount",
            )
        sats = self._sats()
        if sats is not None:
            try:
                sats_to_msat(sats)
            except ValueError as exc:
                raise PydanticCustomError(ErrorCode.INVALID_AMOUNT.value, str(exc)) from None
        return self

    @property
    def amount(self) -> int:
        """The amount in the asset's base unit (msat for BTC)."""
        sats = self._sats()
        if sats is not None:
            return sats_to_msat(sats)
        amount = self.amount_msat if self.amount_msat is not None else self.asset_amount
        assert amount is not None
        return amount


class TransferBody(_AmountBody):
    from_user_id: UserId
    to_user_id: UserId
    amount_sats: AmountSats = None
    memo: Memo = None

    def _sats(self) -> int | None:
        return self.amount_sats

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [{"from_user_id": 123456789, "to_user_id": 987654321, "amount_sats": 5000}]
        },
    )


class AdminMoveBody(_AmountBody):
    user_id: UserId
    reason: Annotated[str, Field(min_length=1, max_length=MEMO_MAX_CHARS, pattern=NO_CONTROL_CHARS)]


class UserBody(_Body):
    user_id: UserId


class AddressBody(_Body):
    """Claim a Lightning Address. `name` is checked by vnode/lnurl/names.py (its own codes,
    invalid_address_name and address_reserved), so here it is only bounded."""

    user_id: UserId
    name: Annotated[str, Field(min_length=1, max_length=200, strict=True)]


class AssetBalanceBody(_Body):
    user_id: UserId
    asset_id: AssetId = BTC


class ProofBody(_Body):
    user_id: UserId
    asset_id: AssetId = BTC
    # None: the newest epoch of the asset.
    epoch: Annotated[int | None, Field(ge=1, le=2**63 - 1, strict=True)] = None


class HistoryBody(_Body):
    user_id: UserId
    limit: Annotated[int, Field(ge=1, le=200, strict=True)] = 20
    cursor: Annotated[str | None, Field(max_length=32)] = None


class ErrorDetail(BaseModel):
    code: str
    message: str
    # Only with limit_exceeded (docs/LIMITS.md): which limit refused, whose ("self" or
    # "recipient"), and, for the user's own, its figures in msat.
    limit: str | None = None
    party: str | None = None
    limit_msat: int | None = None
    used_msat: int | None = None
    amount_msat: int | None = None
    headroom_msat: int | None = None
    # Only with rate_limited: the seconds to wait, as in the Retry-After header.
    retry_after_s: int | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
    request_id: str | None = None


PaymentHash = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256")]
Invoice = Annotated[str, Field(min_length=1, max_length=7089, description="a BOLT 11 invoice")]


class SendPaymentBody(_Body):
    user_id: UserId
    invoice: Invoice
    amt_msat: AmountMsat = None
    fee_limit_msat: Annotated[int | None, Field(ge=0, lt=2**63, strict=True)] = None

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [{"user_id": "123456789", "invoice": "lnbc1000n1...", "amt_msat": 100000}]
        },
    )


class DecodeInvoiceBody(_Body):
    invoice: Invoice
    amt_msat: AmountMsat = None

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"examples": [{"invoice": "lnbc1000n1..."}]}
    )


class PaymentQueryBody(_Body):
    user_id: UserId
    payment_hash: PaymentHash


class LnInvoiceBody(_Body):
    user_id: UserId
    amt_msat: AmountMsat = None
    asset_id: AssetId = BTC
    asset_amount: AssetAmount = None
    description: Annotated[str | None, Field(max_length=639, pattern=NO_CONTROL_CHARS)] = None
    expiry_sec: Annotated[int, Field(ge=1, strict=True)] = 3600

    @model_validator(mode="after")
    def _asset_amount_only_for_rgb(self) -> Self:
        if self.asset_amount is not None and self.asset_id == BTC:
            raise PydanticCustomError(
                ErrorCode.AMOUNT_FIELDS.value, "asset_amount is for RGB assets; BTC uses amt_msat"
            )
        # An RGB invoice without an amount cannot be paid inside the ledger (nothing says how
        # many units move) and the node refuses to pay one out (amount_required): refused
        # when made, rather than a 500 for whoever tries to pay it (security review L6).
        if self.asset_amount is None and self.asset_id != BTC:
            raise PydanticCustomError(
                ErrorCode.AMOUNT_FIELDS.value, "an RGB invoice needs asset_amount"
            )
        return self


class RgbInvoiceBody(_Body):
    user_id: UserId
    asset_id: AssetId
    duration_seconds: Annotated[int, Field(ge=1, strict=True)] = 3600

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [{"user_id": "123456789", "asset_id": "BTC", "duration_seconds": 3600}]
        },
    )


# Per-user limits (issue 12, docs/LIMITS.md): msat of BTC; null clears the user's override
# (back to the server default); a field left out stays as it is.
LimitMsat = Annotated[
    int | None,
    Field(ge=0, lt=2**63, strict=True, description="msat; null: back to the server default"),
]


class LimitsBody(_Body):
    user_id: UserId
    send_max_msat: LimitMsat = None
    receive_max_msat: LimitMsat = None
    balance_max_msat: LimitMsat = None
    send_24h_msat: LimitMsat = None
    send_30d_msat: LimitMsat = None
    receive_24h_msat: LimitMsat = None
    receive_30d_msat: LimitMsat = None
    fee_max_msat: LimitMsat = None

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {"user_id": "123456789", "send_24h_msat": 100_000_000, "fee_max_msat": None}
            ]
        },
    )

    def changes(self) -> dict[str, int | None]:
        """The limits the request names (null included), and only those."""
        return {name: getattr(self, name) for name in self.model_fields_set if name != "user_id"}
