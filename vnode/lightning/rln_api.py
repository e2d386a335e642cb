"""The RGB Lightning Node (RLN) REST API as pydantic models: the one statement of its wire format.

Both sides use these: the adapter (``rln.py``) validates every answer of the node with them, and
builds its request bodies from them; the simulated node (``vnode_sim``) parses requests with
them and checks each answer it serves against them before sending it. So the sim cannot drift
from what the adapter reads. Names and types follow the spec (``shared/specs``,
``rgb-lightning-node.openapi.yaml``, components/schemas).

Requests are read as the node's serde structs read them: integers are strict ``u64``/``u32``/
``u8`` (a negative, fractional, boolean or string number is refused), unknown fields are ignored.

Answers are read as hostile (docs/SECURITY.md, docs/NODE.md): an answer model holds the fields
of the spec's schema that vnode reads, each with the rule it must meet; the spec's other fields,
and fields the spec does not know, pass unread (``extra="ignore"``). The rules:

* amounts and counts are integers in 0..2**63-1 (``Amount``: what the ledger's bigint holds),
  except the fields of a decoded invoice, read whole as ``u64`` so that the adapter can refuse
  the invoice (not the node) when vnode cannot hold one;
* hashes are 64 hex digits (lower-cased), preimages exactly 64 lower-case hex digits (never
  repaired: a success whose proof had to be rewritten is not a valid success);
* text is at most 16 KiB and holds no control character;
* states, kinds and networks are the spec's enums; anything else is refused;
* a field vnode reads may be missing only where the spec allows null.

A ``ValidationError`` of an answer model is a malformed answer: the adapter raises
``NodeProtocolError``, never a refusal (docs/NODE.md, "Unknown outcomes").
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    model_validator,
)

from vnode.domain.ids import BTC as BTC_ASSET_ID
from vnode.domain.ids import parse_asset_id
from vnode.lightning.base import Network

# The ledger's amounts are PostgreSQL bigint: anything above cannot be booked.
I64_MAX: Final = 2**63 - 1
U64_MAX: Final = 2**64 - 1
# Longer than any invoice (bolt11.MAX_INVOICE_LENGTH) or identifier the node sends.
MAX_TEXT: Final = 16_384

# ------------------------------------------------------------------ field types

U64 = Annotated[StrictInt, Field(ge=0, le=U64_MAX)]
U32 = Annotated[StrictInt, Field(ge=0, le=2**32 - 1)]
U8 = Annotated[StrictInt, Field(ge=0, le=255)]
# An amount or count of an answer: u64 on the node, bigint in the ledger.
Amount = Annotated[StrictInt, Field(ge=0, le=I64_MAX)]
# No identifier the node sends holds a control character, and PostgreSQL text cannot hold NUL.
Text = Annotated[StrictStr, StringConstraints(max_length=MAX_TEXT, pattern=r"^[^\x00-\x1f\x7f]*$")]
# A payment hash, in either case as the node may send it; vnode keeps it lower-case.
Hash = Annotated[
    StrictStr, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$"), AfterValidator(str.lower)
]
# Exactly what the ledger stores (CHECK preimage ~ '^[0-9a-f]{64}$'): nothing is repaired.
Preimage = Annotated[StrictStr, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


def is_rgb_asset_id(value: str) -> bool:
    try:
        return parse_asset_id(value) != BTC_ASSET_ID  # the node names BTC by a null asset
    except ValueError:
        return False


def _rgb_asset_id(value: str) -> str:
    if not is_rgb_asset_id(value):
        raise ValueError("not an RGB asset id")
    return value


RgbAssetId = Annotated[Text, AfterValidator(_rgb_asset_id)]


class BitcoinNetwork(StrEnum):
    MAINNET = "Mainnet"
    TESTNET = "Testnet"
    TESTNET4 = "Testnet4"
    SIGNET = "Signet"
    SIGNET_CUSTOM = "SignetCustom"
    REGTEST = "Regtest"


# The BOLT 11 network each of the node's networks makes invoices for (what the adapter reads),
# and the name a node on each network gives it (what the sim answers).
NETWORK_OF: Final[dict[BitcoinNetwork, Network]] = {
    BitcoinNetwork.MAINNET: Network.BITCOIN,
    BitcoinNetwork.TESTNET: Network.TESTNET,
    BitcoinNetwork.TESTNET4: Network.TESTNET,
    BitcoinNetwork.SIGNET: Network.SIGNET,
    BitcoinNetwork.SIGNET_CUSTOM: Network.SIGNET,
    BitcoinNetwork.REGTEST: Network.REGTEST,
}
NODE_NETWORK: Final[dict[Network, BitcoinNetwork]] = {
    Network.BITCOIN: BitcoinNetwork.MAINNET,
    Network.TESTNET: BitcoinNetwork.TESTNET,
    Network.SIGNET: BitcoinNetwork.SIGNET,
    Network.REGTEST: BitcoinNetwork.REGTEST,
}


class HtlcStatus(StrEnum):
    PENDING = "Pending"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class TransferStatus(StrEnum):
    INITIATED = "Initiated"
    WAITING_COUNTERPARTY = "WaitingCounterparty"
    WAITING_SAFE_HEIGHT = "WaitingSafeHeight"
    WAITING_CONFIRMATIONS = "WaitingConfirmations"
    WAITING_BROADCAST = "WaitingBroadcast"
    SETTLED = "Settled"
    FAILED = "Failed"


class TransferKind(StrEnum):
    ISSUANCE = "Issuance"
    RECEIVE_BLIND = "ReceiveBlind"
    RECEIVE_WITNESS = "ReceiveWitness"
    SEND = "Send"
    INFLATION = "Inflation"
    BURN = "Burn"


INCOMING_KINDS: Final = frozenset({TransferKind.RECEIVE_BLIND, TransferKind.RECEIVE_WITNESS})


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# ------------------------------------------------------------------ assignments (both ways)


class AssignmentFungible(Model):
    type: Literal["Fungible"]
    value: U64


class AssignmentInflationRight(Model):
    type: Literal["InflationRight"]
    value: U64


class AssignmentNonFungible(Model):
    type: Literal["NonFungible"]


class AssignmentAny(Model):
    type: Literal["Any"]


# serde's adjacently tagged enum: Fungible and InflationRight carry a value, the others not.
Assignment = Annotated[
    AssignmentFungible | AssignmentInflationRight | AssignmentNonFungible | AssignmentAny,
    Field(discriminator="type"),
]

# ------------------------------------------------------------------ requests


class DecodeLNInvoiceRequest(Model):
    invoice: StrictStr


class LNInvoiceRequest(Model):
    amt_msat: U64 | None = None
    expiry_sec: U32
    asset_id: StrictStr | None = None
    asset_amount: U64 | None = None
    description: StrictStr | None = None
    description_hash: StrictStr | None = None


class SendPaymentRequest(Model):
    invoice: StrictStr
    amt_msat: U64 | None = None
    asset_id: StrictStr | None = None
    asset_amount: U64 | None = None


class GetPaymentRequest(Model):
    payment_hash: StrictStr


class InvoiceStatusRequest(Model):
    invoice: StrictStr


class RgbInvoiceRequest(Model):
    min_confirmations: U8
    asset_id: StrictStr | None = None
    assignment: Assignment | None = None
    expiration_timestamp: U64
    witness: StrictBool
    transport_endpoints: list[StrictStr]


class RefreshFilter(Model):
    status: Literal["WaitingCounterparty", "WaitingConfirmations"]
    incoming: StrictBool


class RefreshRequest(Model):
    asset_id: StrictStr | None = None
    filter: list[RefreshFilter]
    skip_sync: StrictBool


class AssetFilter(Model):
    type: Literal["AnyOrNone", "None", "Id"]
    value: StrictStr | None = None


class ListTransfersRequest(Model):
    asset_filter: AssetFilter
    txid: StrictStr | None = None


class BtcBalanceRequest(Model):
    skip_sync: StrictBool


class AssetBalanceRequest(Model):
    asset_id: StrictStr


class ListAssetsRequest(Model):
    filter_asset_schemas: list[Literal["Nia", "Uda", "Cfa", "Ifa"]]


class UnlockRequest(Model):
    password: StrictStr
    # The sim syncs nothing: the chain-sync settings are checked for presence only.
    ldk_chain_sync: dict[str, Any]
    indexer_url: StrictStr
    announce_addresses: list[StrictStr]
    announce_alias: StrictStr | None = None


def request_body(request: Model) -> dict[str, Any]:
    """The JSON body of a request: a field left None is omitted (the node reads a missing
    optional field as None; omitting them keeps requests minimal)."""
    return request.model_dump(mode="json", exclude_none=True)


# ------------------------------------------------------------------ answers (what vnode reads)


class NodeInfoResponse(Model):
    pubkey: Text


class NetworkInfoResponse(Model):
    network: BitcoinNetwork


class Channel(Model):
    is_usable: StrictBool
    outbound_balance_msat: Amount
    asset_id: RgbAssetId | None = None
    asset_local_amount: Amount | None = None


class ListChannelsResponse(Model):
    channels: list[Channel]


class DecodeLNInvoiceResponse(Model):
    # The invoice's own fields are u64: read whole, and refused by the adapter when vnode
    # cannot hold them (InvoiceRefused OutOfRange: the invoice is at fault, not the node).
    amt_msat: U64 | None = None
    expiry_sec: U64
    timestamp: U64
    # Checked by the adapter: a bad one refuses the invoice (InvalidAssetID).
    asset_id: Text | None = None
    asset_amount: U64 | None = None
    payment_hash: Hash
    payee_pubkey: Text | None = None
    network: BitcoinNetwork


class LNInvoiceResponse(Model):
    invoice: Text


class SendPaymentResponse(Model):
    # Any text: the adapter compares it (lower-cased) with the invoice's hash.
    payment_hash: Text | None = None
    status: HtlcStatus


class Payment(Model):
    payment_hash: Hash
    inbound: StrictBool
    status: HtlcStatus
    amt_msat: Amount | None = None
    asset_id: RgbAssetId | None = None
    asset_amount: Amount | None = None
    # The spec says string; the node sends null until the payment succeeds.
    preimage: Preimage | None = None
    updated_at: Amount


class GetPaymentResponse(Model):
    payment: Payment


class ListPaymentsResponse(Model):
    payments: list[Payment]


class RgbInvoiceResponse(Model):
    recipient_id: Text
    invoice: Text
    expiration_timestamp: Amount
    batch_transfer_idx: Amount


class Transfer(Model):
    idx: Amount
    status: TransferStatus
    kind: TransferKind
    assignments: list[Assignment]
    txid: Text | None = None
    recipient_id: Text | None = None
    receive_utxo: Text | None = None

    @model_validator(mode="after")
    def _received_fits(self) -> Transfer:
        # Each part is a u64 and their sum need not fit: what vnode books must.
        if self.received > I64_MAX:
            raise ValueError("the assignments add up to more than 2^63-1")
        return self

    @property
    def received(self) -> int:
        """Asset units the assignments hold (what arrived, not what was requested)."""
        return sum(a.value for a in self.assignments if isinstance(a, AssignmentFungible))

    @property
    def incoming(self) -> bool:
        return self.kind in INCOMING_KINDS


class ListTransfersResponse(Model):
    transfers: list[Transfer]
