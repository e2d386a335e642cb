"""Request bodies, typed as strictly as the node's serde structs.

The node deserialises amounts into u64 (u32, u8 where noted): a negative, fractional, boolean
or string-typed number fails deserialisation and the request is answered 400 InvalidRequest,
as our validation handler does. Unknown fields are ignored, as serde does by default.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    model_validator,
)

from vnode_sim.config import U64_MAX
from vnode_sim.faults import HostileKind, HostileRoute, PaymentFault, routes_of

U64 = Annotated[StrictInt, Field(ge=0, le=U64_MAX)]
U32 = Annotated[StrictInt, Field(ge=0, le=2**32 - 1)]
U8 = Annotated[StrictInt, Field(ge=0, le=255)]
NetworkName = Literal["bitcoin", "testnet", "signet", "regtest"]


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# ------------------------------------------------------------------ RGB Lightning Node


class DecodeLNInvoiceRequest(Body):
    invoice: StrictStr


class LNInvoiceRequest(Body):
    amt_msat: U64 | None = None
    expiry_sec: U32
    asset_id: StrictStr | None = None
    asset_amount: U64 | None = None
    description: StrictStr | None = None
    description_hash: StrictStr | None = None


class SendPaymentRequest(Body):
    invoice: StrictStr
    amt_msat: U64 | None = None
    asset_id: StrictStr | None = None
    asset_amount: U64 | None = None


class GetPaymentRequest(Body):
    payment_hash: StrictStr


class InvoiceStatusRequest(Body):
    invoice: StrictStr


class Assignment(Body):
    """serde's adjacently tagged enum: Fungible and InflationRight carry a value, the others not."""

    type: Literal["Fungible", "NonFungible", "InflationRight", "Any"]
    value: U64 | None = None

    @model_validator(mode="after")
    def _value_matches_type(self) -> Assignment:
        if (self.value is not None) != (self.type in ("Fungible", "InflationRight")):
            raise ValueError(f"assignment {self.type} with a wrong value")
        return self

    def as_json(self) -> dict[str, object]:
        if self.value is None:
            return {"type": self.type}
        return {"type": self.type, "value": self.value}


class RgbInvoiceRequest(Body):
    min_confirmations: U8
    asset_id: StrictStr | None = None
    assignment: Assignment | None = None
    expiration_timestamp: U64
    witness: StrictBool
    transport_endpoints: list[StrictStr]


class RefreshFilter(Body):
    status: Literal["WaitingCounterparty", "WaitingConfirmations"]
    incoming: StrictBool


class RefreshRequest(Body):
    asset_id: StrictStr | None = None
    filter: list[RefreshFilter]
    skip_sync: StrictBool


class AssetFilter(Body):
    type: Literal["AnyOrNone", "None", "Id"]
    value: StrictStr | None = None


class ListTransfersRequest(Body):
    asset_filter: AssetFilter
    txid: StrictStr | None = None


class BtcBalanceRequest(Body):
    skip_sync: StrictBool


class AssetBalanceRequest(Body):
    asset_id: StrictStr


class ListAssetsRequest(Body):
    filter_asset_schemas: list[Literal["Nia", "Uda", "Cfa", "Ifa"]]


class UnlockRequest(Body):
    password: StrictStr
    # The sim syncs nothing: the chain-sync settings are checked for presence only.
    ldk_chain_sync: dict[str, Any]
    indexer_url: StrictStr
    announce_addresses: list[StrictStr]
    announce_alias: StrictStr | None = None


# ------------------------------------------------------------------ control API (/_sim)


class SimPayRequest(Body):
    invoice: StrictStr
    amt_msat: U64 | None = None
    asset_amount: U64 | None = None


class SimInvoiceRequest(Body):
    amt_msat: U64 | None = None
    asset_id: StrictStr | None = None
    asset_amount: U64 | None = None
    description: StrictStr | None = None
    expiry_sec: U32 = 3600
    # Another network than the node's makes an invoice the node must refuse.
    network: NetworkName | None = None


# Enough for any test (a thousand held payments), small enough to refuse a typo'd exponent.
MAX_FAULT_COUNT = 1_000_000


class SimFaultsRequest(Body):
    """faults.py says what each fault does; absent fields leave the state as it is."""

    routing_fee_msat: U64 | None = None
    locked: StrictBool | None = None
    # null clears a pending fault.
    next_payment: PaymentFault | None = None
    # How many payments (next_payment) or records (hostile) the fault set here applies to.
    count: Annotated[StrictInt, Field(ge=1, le=MAX_FAULT_COUNT)] | None = None
    # Adds one hostile-answer entry; null drops every entry.
    hostile: HostileKind | None = None
    target: StrictStr | None = None
    route: HostileRoute | None = None

    @model_validator(mode="after")
    def _filters_need_their_fault(self) -> SimFaultsRequest:
        given = self.model_fields_set
        if "count" in given and self.next_payment is None and self.hostile is None:
            raise ValueError("count applies to next_payment or hostile; neither is set")
        if ("target" in given or "route" in given) and self.hostile is None:
            raise ValueError("target and route filter a hostile fault; none is set")
        if (
            self.hostile is not None
            and self.route is not None
            and self.route not in routes_of(self.hostile)
        ):
            raise ValueError(f"{self.hostile.value} cannot corrupt the answers of {self.route}")
        return self


class SimReleaseRequest(Body):
    payment_hash: StrictStr
    outcome: Literal["succeed", "fail"]


class SimReleaseAllRequest(Body):
    outcome: Literal["succeed", "fail"]


class SimRgbSendRequest(Body):
    recipient_id: StrictStr | None = None
    invoice: StrictStr | None = None
    asset_id: StrictStr
    amount: U64
