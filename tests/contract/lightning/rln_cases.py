"""The RLN adapter's contract as a table: one row per call per scenario.

Each row gives the adapter call, the HTTP exchanges it must make (method, path, exact JSON
body) with the node's canned answers, and the result or the exception class it must produce.
Answers follow the real node: its error shape ``{"error", "code", "name"}`` and statuses
(shared/specs/README.md), and for 200s the spec's answer schemas (checked by the tests).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tests.contract.lightning.invoices import (
    NODE_KEY,
    NODE_PUBKEY,
    NOW,
    OUTSIDE_PUBKEY,
    FixtureInvoice,
    make_invoice,
)
from tests.contract.lightning.server import Exchange
from vnode.domain.ids import BTC
from vnode.lightning import bolt11
from vnode.lightning.base import (
    CreatedInvoice,
    DuplicatePayment,
    InvoiceRefused,
    Network,
    NodeError,
    NodeInfo,
    NodeInvoice,
    NodeLocked,
    NodeUnreachable,
    PaymentOutcome,
    PaymentStatus,
    RgbInvoice,
    RgbTransfer,
)
from vnode.lightning.rln import MALFORMED_ANSWER, RlnBackend

ASSET = "rgb:CJkb4YZw-jRiz2sk-~PARPio-wtVYI1c-XAEYCqO-wTfvRZ8"
OTHER_ASSET = "rgb:2dkSTbr-jFhznbPmo-TQafzswCN-av4gTsJjX-ttx6CNou5-M98k8Zd"
ENDPOINTS = ["rpc://127.0.0.1:3000/json-rpc"]

# Our node's invoices (what /lninvoice answers) and outside invoices we pay.
OURS = make_invoice("ours", amount_msat=5_000_000, key=NODE_KEY)
OURS_OPEN = make_invoice("ours, any amount", amount_msat=None, key=NODE_KEY, expiry_s=600)
OURS_RGB = make_invoice("ours, rgb", amount_msat=3_000_000, key=NODE_KEY)
OUT = make_invoice("outside", amount_msat=3_000_000)
OUT_OPEN = make_invoice("outside, any amount", amount_msat=None)
# Invoices whose payment is looked up by hash.
PAID = make_invoice("paid", amount_msat=4_000_000)
RECEIVED = make_invoice("received", amount_msat=2_000_000, key=NODE_KEY)
# LNURL-pay: an invoice committing to a description hash (LUD-06), and one committing to another.
METADATA_HASH = hashlib.sha256(b'[["text/plain","Payment to alice@pay.example.com"]]').hexdigest()
OURS_HASHED = make_invoice(
    "ours, hashed", amount_msat=5_000_000, key=NODE_KEY, description_hash=METADATA_HASH
)


@dataclass(frozen=True)
class Case:
    id: str
    method: str  # the LightningBackend method this row exercises
    call: Callable[[RlnBackend], Awaitable[object]]
    exchanges: tuple[Exchange, ...]
    returns: object = None
    raises: type[BaseException] | None = None
    error_name: str | None = None  # the exception's .name, when it matters


# ---------------------------------------------------------------------- canned answers


def error(status: int, name: str, text: str = "") -> dict[str, Any]:
    return {"error": text or name, "code": status, "name": name}


def node_info_answer(pubkey: str = NODE_PUBKEY) -> dict[str, Any]:
    return {
        "pubkey": pubkey,
        "num_channels": 2,
        "num_usable_channels": 2,
        "local_balance_sat": 30_000,
        "eventual_close_fees_sat": 892,
        "pending_outbound_payments_sat": 0,
        "num_peers": 1,
        "account_xpub_vanilla": "tpubVanillaFixture",
        "account_xpub_colored": "tpubColoredFixture",
        "max_media_upload_size_mb": 5,
        "rgb_htlc_min_msat": 3_000_000,
        "rgb_channel_capacity_min_sat": 30_010,
        "channel_capacity_min_sat": 5_506,
        "channel_capacity_max_sat": 16_777_215,
        "channel_asset_min_amount": 1,
        "channel_asset_max_amount": 18_446_744_073_709_551_615,
        "network_nodes": 2,
        "network_channels": 1,
    }


def decoded_answer(
    invoice: FixtureInvoice,
    *,
    asset_id: str | None = None,
    asset_amount: int | None = None,
    payee_pubkey: str | None = None,
    **override: Any,
) -> dict[str, Any]:
    answer = {
        "amt_msat": invoice.amount_msat,
        "expiry_sec": invoice.expiry_s,
        "timestamp": invoice.timestamp,
        "asset_id": asset_id,
        "asset_amount": asset_amount,
        "description": "vnode contract test",
        "description_hash": None,
        "payment_hash": invoice.payment_hash,
        "payment_secret": invoice.payment_secret,
        "payee_pubkey": payee_pubkey,
        "network": "Regtest",
    }
    answer.update(override)
    return answer


def payment(
    invoice: FixtureInvoice,
    status: str,
    *,
    inbound: bool = False,
    preimage: str | None = None,
    amt_msat: int | None = None,
    asset_id: str | None = None,
    asset_amount: int | None = None,
) -> dict[str, Any]:
    return {
        "amt_msat": amt_msat if amt_msat is not None else invoice.amount_msat,
        "asset_amount": asset_amount,
        "asset_id": asset_id,
        "payment_hash": invoice.payment_hash,
        "inbound": inbound,
        "status": status,
        "created_at": NOW,
        "updated_at": NOW + 7,
        "payee_pubkey": invoice.payee_pubkey,
        "preimage": preimage,
        "description": "vnode contract test",
        "description_hash": None,
    }


def channel(
    n: int,
    *,
    usable: bool,
    outbound_msat: int,
    asset_id: str | None = None,
    asset_local: int | None = None,
) -> dict[str, Any]:
    return {
        "channel_id": f"{n:064x}",
        "funding_txid": f"{n + 100:064x}",
        "peer_pubkey": OUTSIDE_PUBKEY,
        "peer_alias": None,
        "short_channel_id": 120_946_279_120_896 + n,
        "status": "Opened" if usable else "Opening",
        "ready": usable,
        "capacity_sat": 100_000,
        "local_balance_sat": outbound_msat // 1000,
        "outbound_balance_msat": outbound_msat,
        "inbound_balance_msat": 1_000_000,
        "next_outbound_htlc_limit_msat": outbound_msat,
        "next_outbound_htlc_minimum_msat": 1,
        "is_usable": usable,
        "public": True,
        "asset_id": asset_id,
        "asset_local_amount": asset_local,
        "asset_remote_amount": 0 if asset_id else None,
    }


def transfer(
    idx: int,
    kind: str,
    status: str,
    fungible: list[int],
    *,
    requested: int | None = None,
    txid: str | None = None,
    receive_utxo: str | None = None,
) -> dict[str, Any]:
    return {
        "idx": idx,
        "created_at": NOW,
        "updated_at": NOW + 60,
        "status": status,
        "requested_assignment": (
            {"type": "Fungible", "value": requested} if requested is not None else None
        ),
        "assignments": [{"type": "Fungible", "value": v} for v in fungible],
        "kind": kind,
        "txid": txid,
        "recipient_id": f"bcrt:utxob:fixture-{idx}" if kind.startswith("Receive") else None,
        "receive_utxo": receive_utxo,
        "change_utxo": None,
        "expiration_timestamp": NOW + 86_400,
        "transport_endpoints": [
            {"endpoint": ENDPOINTS[0], "transport_type": "JsonRpc", "used": True}
        ],
    }


# ---------------------------------------------------------------------- exchanges


def get(path: str, status: int = 200, answer: Any = None, **kw: Any) -> Exchange:
    return Exchange("GET", path, None, status, answer, **kw)


def post(path: str, request: Any, status: int = 200, answer: Any = None, **kw: Any) -> Exchange:
    return Exchange("POST", path, request, status, answer, **kw)


def send(invoice: str = OUT.text, **extra: Any) -> dict[str, Any]:
    return {"invoice": invoice, **extra}


def status(invoice: FixtureInvoice, outcome: PaymentOutcome, **kw: Any) -> PaymentStatus:
    return PaymentStatus(payment_hash=invoice.payment_hash, outcome=outcome, **kw)


def pay(invoice: FixtureInvoice = OUT, **kw: Any) -> Callable[[RlnBackend], Awaitable[object]]:
    kw.setdefault("amount_msat", None)
    return lambda b: b.pay_invoice(bolt11.decode(invoice.text), fee_limit_msat=30_000, **kw)


def lookup(
    invoice: FixtureInvoice, *, inbound: bool = False
) -> Callable[[RlnBackend], Awaitable[object]]:
    return lambda b: b.payment_status(invoice.payment_hash, inbound=inbound)


GETPAYMENT = "/getpayment"
PAID_Q = {"payment_hash": PAID.payment_hash}
RECEIVED_Q = {"payment_hash": RECEIVED.payment_hash}
WRONG_PREIMAGE = "00" * 32
REFRESH = {"filter": [], "skip_sync": False}
LIST_ASSET = {"asset_filter": {"type": "Id", "value": ASSET}}


def rgb_invoice_request(asset_id: str | None, duration_s: int) -> dict[str, Any]:
    request: dict[str, Any] = {
        "min_confirmations": 1,
        "expiration_timestamp": NOW + duration_s,
        "witness": False,
        "transport_endpoints": ENDPOINTS,
    }
    if asset_id is not None:
        request["asset_id"] = asset_id
    return request


RGB_INVOICE_ANSWER: dict[str, Any] = {
    "recipient_id": "bcrt:utxob:cbgHUJ4e-7QyKY4U-Jsj5AZw-oI0gxZh-7fxQY2_-tFFUAZN-4CgpX",
    "invoice": "rgb:~/~/~/bcrt:utxob:cbgHUJ4e-7QyKY4U-Jsj5AZw-oI0gxZh-7fxQY2_-tFFUAZN-4CgpX"
    f"?expiry={NOW + 86_400}&endpoints={ENDPOINTS[0]}",
    "expiration_timestamp": NOW + 86_400,
    "batch_transfer_idx": 4,
}


# The table is laid out by hand, one row per block, so that it reads as a table.
# fmt: off


# Every fault that makes an outcome unknowable, for one call that moves money.
def ambiguous(case_id: str, method: str, call: Any, path: str, request: Any) -> list[Case]:
    def row(suffix: str, exchange: Exchange, name: str | None = None) -> Case:
        return Case(
            f"{case_id}-{suffix}", method, call, (exchange,), raises=NodeUnreachable,
            error_name=name,
        )

    return [
        row("500-failedpayment", post(path, request, 500, error(500, "FailedPayment")),
            "FailedPayment"),
        row("503-network", post(path, request, 503, error(503, "Network")), "Network"),
        row("502-not-json", post(path, request, 502, raw=b"<html>502 Bad Gateway</html>")),
        row("200-not-json", post(path, request, 200, raw=b"OK", conforms=False),
            MALFORMED_ANSWER),
        row("404-not-json", post(path, request, 404, raw=b"<html>Not Found</html>")),
        row("timeout", post(path, request, kind="hang"), "ReadTimeout"),
        row("dropped", post(path, request, kind="drop"), "RemoteProtocolError"),
    ]


CASES: list[Case] = [
    # ------------------------------------------------------------------ node_info
    Case(
        "node_info", "node_info", lambda b: b.node_info(),
        (get("/nodeinfo", answer=node_info_answer()),
         get("/networkinfo", answer={"network": "Regtest", "height": 150})),
        returns=NodeInfo(pubkey=NODE_PUBKEY, network=Network.REGTEST),
    ),
    *[
        Case(
            f"node_info-{rln_name}", "node_info", lambda b: b.node_info(),
            (get("/nodeinfo", answer=node_info_answer()),
             get("/networkinfo", answer={"network": rln_name, "height": 805_434})),
            returns=NodeInfo(pubkey=NODE_PUBKEY, network=network),
        )
        for rln_name, network in [
            ("Mainnet", Network.BITCOIN),
            ("Testnet", Network.TESTNET),
            ("Testnet4", Network.TESTNET),
            ("Signet", Network.SIGNET),
            ("SignetCustom", Network.SIGNET),
        ]
    ],
    Case(
        "node_info-unknown-network", "node_info", lambda b: b.node_info(),
        (get("/nodeinfo", answer=node_info_answer()),
         get("/networkinfo", answer={"network": "Liquid", "height": 1}, conforms=False)),
        raises=NodeUnreachable, error_name=MALFORMED_ANSWER,
    ),
    Case(
        "node_info-locked", "node_info", lambda b: b.node_info(),
        (get("/nodeinfo", 403, error(403, "LockedNode", "Node is locked (hint: call unlock)")),),
        raises=NodeLocked, error_name="LockedNode",
    ),
    Case(
        "node_info-changing-state", "node_info", lambda b: b.node_info(),
        (get("/nodeinfo", 403, error(403, "ChangingState")),),
        raises=NodeLocked, error_name="ChangingState",
    ),
    Case(
        "node_info-401", "node_info", lambda b: b.node_info(),
        (get("/nodeinfo", 401, error(401, "Unauthorized", "Missing or invalid credentials")),),
        raises=NodeError, error_name="Unauthorized",
    ),
    Case(
        "node_info-401-plain-text", "node_info", lambda b: b.node_info(),
        (get("/nodeinfo", 401, raw=b"Unauthorized"),),
        raises=NodeError, error_name="Unauthorized",
    ),
    Case(
        "node_info-403-forbidden-token", "node_info", lambda b: b.node_info(),
        (get("/nodeinfo", 403, error(403, "Forbidden")),),
        raises=NodeError, error_name="Forbidden",
    ),
    Case(
        "node_info-503", "node_info", lambda b: b.node_info(),
        (get("/nodeinfo", 503, error(503, "Network")),),
        raises=NodeUnreachable, error_name="Network",
    ),
    Case(
        # A GET (a read) whose connection closes is sent once more on a new one (ADR 0028);
        # closed again, the node is unreachable.
        "node_info-dropped", "node_info", lambda b: b.node_info(),
        (get("/nodeinfo", kind="drop"), get("/nodeinfo", kind="drop")),
        raises=NodeUnreachable,
    ),
    # ------------------------------------------------------------------ decode_invoice
    Case(
        "decode_invoice", "decode_invoice", lambda b: b.decode_invoice(OUT.text),
        (post("/decodelninvoice", {"invoice": OUT.text}, answer=decoded_answer(OUT)),),
        returns=NodeInvoice(
            payment_hash=OUT.payment_hash, amount_msat=3_000_000, asset_id=None,
            asset_amount=None, expiry_s=3600, timestamp=NOW, network=Network.REGTEST,
            payee_pubkey=OUTSIDE_PUBKEY,  # recovered: the node reports only an explicit `n`
        ),
    ),
    Case(
        "decode_invoice-rgb", "decode_invoice", lambda b: b.decode_invoice(OUT.text),
        (post("/decodelninvoice", {"invoice": OUT.text}, answer=decoded_answer(
            OUT, asset_id=ASSET, asset_amount=42, payee_pubkey=OUTSIDE_PUBKEY)),),
        returns=NodeInvoice(
            payment_hash=OUT.payment_hash, amount_msat=3_000_000, asset_id=ASSET,
            asset_amount=42, expiry_s=3600, timestamp=NOW, network=Network.REGTEST,
            payee_pubkey=OUTSIDE_PUBKEY,
        ),
    ),
    Case(
        "decode_invoice-amountless", "decode_invoice", lambda b: b.decode_invoice(OUT_OPEN.text),
        (post("/decodelninvoice", {"invoice": OUT_OPEN.text},
              answer=decoded_answer(OUT_OPEN)),),
        returns=NodeInvoice(
            payment_hash=OUT_OPEN.payment_hash, amount_msat=None, asset_id=None,
            asset_amount=None, expiry_s=3600, timestamp=NOW, network=Network.REGTEST,
            payee_pubkey=OUTSIDE_PUBKEY,
        ),
    ),
    Case(
        "decode_invoice-invalid", "decode_invoice", lambda b: b.decode_invoice("lnbcrt1junk"),
        (post("/decodelninvoice", {"invoice": "lnbcrt1junk"}, 400,
              error(400, "InvalidInvoice", "Invalid invoice: Invalid bech32")),),
        raises=InvoiceRefused, error_name="InvalidInvoice",
    ),
    Case(
        # The node reads another amount than our decoder: refuse rather than pick one.
        "decode_invoice-disagreement", "decode_invoice", lambda b: b.decode_invoice(OUT.text),
        (post("/decodelninvoice", {"invoice": OUT.text},
              answer=decoded_answer(OUT, amt_msat=3_000_001)),),
        raises=InvoiceRefused, error_name="DecoderDisagreement",
    ),
    Case(
        # Uppercase-mixed text: LDK would read it, our strict decoder refuses mixed case.
        "decode_invoice-refused-locally", "decode_invoice",
        lambda b: b.decode_invoice(OUT.text[:10].upper() + OUT.text[10:]),
        (post("/decodelninvoice", {"invoice": OUT.text[:10].upper() + OUT.text[10:]},
              answer=decoded_answer(OUT)),),
        raises=InvoiceRefused, error_name="invalid_bech32",
    ),
    Case(
        "decode_invoice-500", "decode_invoice", lambda b: b.decode_invoice(OUT.text),
        (post("/decodelninvoice", {"invoice": OUT.text}, 500, error(500, "Unexpected")),),
        raises=NodeUnreachable,
    ),
    # ------------------------------------------------------------------ create_invoice
    Case(
        "create_invoice", "create_invoice",
        lambda b: b.create_invoice(amount_msat=5_000_000, expiry_s=3600, description="coffee"),
        (post("/lninvoice", {"amt_msat": 5_000_000, "expiry_sec": 3600, "description": "coffee"},
              answer={"invoice": OURS.text}),),
        returns=CreatedInvoice(OURS.text, OURS.payment_hash, NOW + 3600),
    ),
    Case(
        "create_invoice-amountless", "create_invoice",
        lambda b: b.create_invoice(amount_msat=None, expiry_s=600, description=None),
        (post("/lninvoice", {"expiry_sec": 600}, answer={"invoice": OURS_OPEN.text}),),
        returns=CreatedInvoice(OURS_OPEN.text, OURS_OPEN.payment_hash, NOW + 600),
    ),
    Case(
        "create_invoice-rgb", "create_invoice",
        lambda b: b.create_invoice(
            amount_msat=3_000_000, expiry_s=3600, description="tokens", asset_id=ASSET,
            asset_amount=42,
        ),
        (post("/lninvoice", {"amt_msat": 3_000_000, "expiry_sec": 3600, "asset_id": ASSET,
                             "asset_amount": 42, "description": "tokens"},
              answer={"invoice": OURS_RGB.text}),),
        returns=CreatedInvoice(OURS_RGB.text, OURS_RGB.payment_hash, NOW + 3600),
    ),
    Case(
        "create_invoice-description-hash", "create_invoice",
        lambda b: b.create_invoice(
            amount_msat=5_000_000, expiry_s=3600, description=None,
            description_hash=METADATA_HASH,
        ),
        (post("/lninvoice", {"amt_msat": 5_000_000, "expiry_sec": 3600,
                             "description_hash": METADATA_HASH},
              answer={"invoice": OURS_HASHED.text}),),
        returns=CreatedInvoice(OURS_HASHED.text, OURS_HASHED.payment_hash, NOW + 3600),
    ),
    Case(
        # The node made an invoice that does not commit to the hash asked: an LNURL wallet would
        # refuse it, so it is never handed out.
        "create_invoice-other-description-hash", "create_invoice",
        lambda b: b.create_invoice(
            amount_msat=5_000_000, expiry_s=3600, description=None,
            description_hash=METADATA_HASH,
        ),
        (post("/lninvoice", {"amt_msat": 5_000_000, "expiry_sec": 3600,
                             "description_hash": METADATA_HASH},
              answer={"invoice": OURS.text}),),
        raises=NodeError, error_name="InvoiceMismatch",
    ),
    Case(
        "create_invoice-other-amount", "create_invoice",
        lambda b: b.create_invoice(amount_msat=4_000_000, expiry_s=3600, description="x"),
        (post("/lninvoice", {"amt_msat": 4_000_000, "expiry_sec": 3600, "description": "x"},
              answer={"invoice": OURS.text}),),
        raises=NodeError, error_name="InvoiceMismatch",
    ),
    Case(
        "create_invoice-unreadable", "create_invoice",
        lambda b: b.create_invoice(amount_msat=5_000_000, expiry_s=3600, description="x"),
        (post("/lninvoice", {"amt_msat": 5_000_000, "expiry_sec": 3600, "description": "x"},
              answer={"invoice": "lnbcrt50u1notaninvoice"}),),
        raises=NodeError, error_name="UnreadableInvoice",
    ),
    Case(
        "create_invoice-invalid-asset", "create_invoice",
        lambda b: b.create_invoice(
            amount_msat=3_000_000, expiry_s=3600, description=None, asset_id="rgb:nope",
            asset_amount=1,
        ),
        (post("/lninvoice", {"amt_msat": 3_000_000, "expiry_sec": 3600, "asset_id": "rgb:nope",
                             "asset_amount": 1}, 400, error(400, "InvalidAssetID")),),
        raises=InvoiceRefused, error_name="InvalidAssetID",
    ),
    Case(
        "create_invoice-incomplete-rgb", "create_invoice",
        lambda b: b.create_invoice(
            amount_msat=3_000_000, expiry_s=3600, description=None, asset_amount=1,
        ),
        (post("/lninvoice", {"amt_msat": 3_000_000, "expiry_sec": 3600, "asset_amount": 1},
              400, error(400, "IncompleteRGBInfo")),),
        raises=InvoiceRefused, error_name="IncompleteRGBInfo",
    ),
    Case(
        "create_invoice-locked", "create_invoice",
        lambda b: b.create_invoice(amount_msat=None, expiry_s=600, description=None),
        (post("/lninvoice", {"expiry_sec": 600}, 403, error(403, "LockedNode")),),
        raises=NodeLocked,
    ),
    Case(
        "create_invoice-500", "create_invoice",
        lambda b: b.create_invoice(amount_msat=None, expiry_s=600, description=None),
        (post("/lninvoice", {"expiry_sec": 600}, 500, error(500, "FailedInvoiceCreation")),),
        raises=NodeUnreachable, error_name="FailedInvoiceCreation",
    ),
    # ------------------------------------------------------------------ pay_invoice
    Case(
        "pay_invoice-pending", "pay_invoice", pay(),
        (post("/sendpayment", send(), answer={
            "payment_id": OUT.payment_hash, "payment_hash": OUT.payment_hash,
            "payment_secret": OUT.payment_secret, "status": "Pending"}),),
        returns=status(OUT, PaymentOutcome.PENDING, amount_msat=3_000_000, updated_at=NOW),
    ),
    Case(
        # HTTP 200 with Failed: refused at once (no route...), final, nothing in flight.
        "pay_invoice-failed-at-once", "pay_invoice", pay(),
        (post("/sendpayment", send(), answer={
            "payment_id": OUT.payment_hash, "payment_hash": OUT.payment_hash,
            "payment_secret": OUT.payment_secret, "status": "Failed"}),),
        returns=status(OUT, PaymentOutcome.FAILED, amount_msat=3_000_000, updated_at=NOW),
    ),
    Case(
        "pay_invoice-succeeded", "pay_invoice", pay(),
        (post("/sendpayment", send(), answer={
            "payment_id": OUT.payment_hash, "payment_hash": None, "payment_secret": None,
            "status": "Succeeded"}),),
        # No preimage in /sendpayment's answer: the payment code polls payment_status.
        returns=status(OUT, PaymentOutcome.SUCCEEDED, amount_msat=3_000_000, updated_at=NOW),
    ),
    Case(
        "pay_invoice-amountless", "pay_invoice", pay(OUT_OPEN, amount_msat=7_000_000),
        (post("/sendpayment", send(OUT_OPEN.text, amt_msat=7_000_000), answer={
            "payment_id": OUT_OPEN.payment_hash, "payment_hash": OUT_OPEN.payment_hash,
            "payment_secret": OUT_OPEN.payment_secret, "status": "Pending"}),),
        returns=status(OUT_OPEN, PaymentOutcome.PENDING, amount_msat=7_000_000, updated_at=NOW),
    ),
    Case(
        "pay_invoice-rgb", "pay_invoice", pay(asset_id=ASSET, asset_amount=10),
        (post("/sendpayment", send(asset_id=ASSET, asset_amount=10), answer={
            "payment_id": OUT.payment_hash, "payment_hash": OUT.payment_hash,
            "payment_secret": OUT.payment_secret, "status": "Pending"}),),
        returns=status(OUT, PaymentOutcome.PENDING, amount_msat=3_000_000, asset_id=ASSET,
                       asset_amount=10, updated_at=NOW),
    ),
    Case(
        "pay_invoice-duplicate", "pay_invoice", pay(),
        (post("/sendpayment", send(), 403, error(
            403, "DuplicatePayment",
            "Another payment for this invoice is already in status Pending")),),
        raises=DuplicatePayment, error_name="DuplicatePayment",
    ),
    Case(
        "pay_invoice-locked", "pay_invoice", pay(),
        (post("/sendpayment", send(), 403, error(403, "LockedNode")),),
        raises=NodeLocked, error_name="LockedNode",
    ),
    Case(
        "pay_invoice-changing-state", "pay_invoice", pay(),
        (post("/sendpayment", send(), 403, error(403, "ChangingState")),),
        raises=NodeLocked, error_name="ChangingState",
    ),
    Case(
        "pay_invoice-invalid-invoice", "pay_invoice", pay(),
        (post("/sendpayment", send(), 400, error(400, "InvalidInvoice")),),
        raises=InvoiceRefused, error_name="InvalidInvoice",
    ),
    Case(
        "pay_invoice-invalid-amount", "pay_invoice", pay(amount_msat=1),
        (post("/sendpayment", send(amt_msat=1), 400, error(
            400, "InvalidAmount", "Invalid amount: amount didn't match invoice value")),),
        raises=InvoiceRefused, error_name="InvalidAmount",
    ),
    Case(
        "pay_invoice-incomplete-rgb", "pay_invoice", pay(asset_id=ASSET),
        (post("/sendpayment", send(asset_id=ASSET), 400, error(400, "IncompleteRGBInfo")),),
        raises=InvoiceRefused, error_name="IncompleteRGBInfo",
    ),
    Case(
        "pay_invoice-401", "pay_invoice", pay(),
        (post("/sendpayment", send(), 401, error(401, "Unauthorized")),),
        raises=NodeError, error_name="Unauthorized",
    ),
    Case(
        # A business refusal that is neither "nothing sent" class: a plain NodeError.
        "pay_invoice-insufficient-assets", "pay_invoice", pay(asset_id=ASSET, asset_amount=10),
        (post("/sendpayment", send(asset_id=ASSET, asset_amount=10), 403,
              error(403, "InsufficientAssets")),),
        raises=NodeError, error_name="InsufficientAssets",
    ),
    *ambiguous("pay_invoice", "pay_invoice", pay(), "/sendpayment", send()),
    Case(
        "pay_invoice-answer-for-another-hash", "pay_invoice", pay(),
        (post("/sendpayment", send(), answer={
            "payment_id": PAID.payment_hash, "payment_hash": PAID.payment_hash,
            "payment_secret": None, "status": "Pending"}),),
        raises=NodeUnreachable, error_name=MALFORMED_ANSWER,
    ),
    Case(
        "pay_invoice-unknown-status", "pay_invoice", pay(),
        (post("/sendpayment", send(), answer={
            "payment_id": OUT.payment_hash, "status": "Done"}, conforms=False),),
        raises=NodeUnreachable, error_name=MALFORMED_ANSWER,
    ),
    # ------------------------------------------------------------------ payment_status
    Case(
        "payment_status-pending", "payment_status", lookup(PAID),
        (post(GETPAYMENT, PAID_Q, answer={"payment": payment(PAID, "Pending")}),),
        returns=status(PAID, PaymentOutcome.PENDING, amount_msat=4_000_000, updated_at=NOW + 7),
    ),
    Case(
        "payment_status-succeeded", "payment_status", lookup(PAID),
        (post(GETPAYMENT, PAID_Q, answer={
            "payment": payment(PAID, "Succeeded", preimage=PAID.preimage)}),),
        returns=status(PAID, PaymentOutcome.SUCCEEDED, amount_msat=4_000_000,
                       preimage=PAID.preimage, updated_at=NOW + 7),
    ),
    Case(
        # Passed on as given: the payment code checks SHA-256(preimage) == hash and alerts.
        "payment_status-succeeded-wrong-preimage", "payment_status", lookup(PAID),
        (post(GETPAYMENT, PAID_Q, answer={
            "payment": payment(PAID, "Succeeded", preimage=WRONG_PREIMAGE)}),),
        returns=status(PAID, PaymentOutcome.SUCCEEDED, amount_msat=4_000_000,
                       preimage=WRONG_PREIMAGE, updated_at=NOW + 7),
    ),
    Case(
        "payment_status-succeeded-no-preimage", "payment_status", lookup(PAID),
        (post(GETPAYMENT, PAID_Q, answer={"payment": payment(PAID, "Succeeded")}),),
        returns=status(PAID, PaymentOutcome.SUCCEEDED, amount_msat=4_000_000,
                       updated_at=NOW + 7),
    ),
    Case(
        "payment_status-failed", "payment_status", lookup(PAID),
        (post(GETPAYMENT, PAID_Q, answer={"payment": payment(PAID, "Failed")}),),
        returns=status(PAID, PaymentOutcome.FAILED, amount_msat=4_000_000, updated_at=NOW + 7),
    ),
    Case(
        "payment_status-rgb", "payment_status", lookup(PAID),
        (post(GETPAYMENT, PAID_Q, answer={"payment": payment(
            PAID, "Succeeded", preimage=PAID.preimage, asset_id=ASSET, asset_amount=5)}),),
        returns=status(PAID, PaymentOutcome.SUCCEEDED, amount_msat=4_000_000, asset_id=ASSET,
                       asset_amount=5, preimage=PAID.preimage, updated_at=NOW + 7),
    ),
    Case(
        # Unknown to the node is 403 PaymentNotFound: UNKNOWN, never a failure.
        "payment_status-not-found", "payment_status", lookup(PAID),
        (post(GETPAYMENT, PAID_Q, 403, error(403, "PaymentNotFound")),),
        returns=status(PAID, PaymentOutcome.UNKNOWN, updated_at=NOW),
    ),
    Case(
        "payment_status-inbound", "payment_status", lookup(RECEIVED, inbound=True),
        (post(GETPAYMENT, RECEIVED_Q, answer={"payment": payment(
            RECEIVED, "Succeeded", inbound=True, preimage=RECEIVED.preimage,
            amt_msat=2_000_500)}),),
        returns=status(RECEIVED, PaymentOutcome.SUCCEEDED, amount_msat=2_000_500,
                       preimage=RECEIVED.preimage, updated_at=NOW + 7),
    ),
    Case(
        # /getpayment answers the inbound payment first; the outbound one is in the list.
        "payment_status-other-direction-then-list", "payment_status", lookup(RECEIVED),
        (post(GETPAYMENT, RECEIVED_Q, answer={"payment": payment(
            RECEIVED, "Succeeded", inbound=True, preimage=RECEIVED.preimage)}),
         get("/listpayments", answer={"payments": [
             payment(RECEIVED, "Succeeded", inbound=True, preimage=RECEIVED.preimage),
             payment(RECEIVED, "Pending"),
         ]})),
        returns=status(RECEIVED, PaymentOutcome.PENDING, amount_msat=2_000_000,
                       updated_at=NOW + 7),
    ),
    Case(
        "payment_status-other-direction-only", "payment_status", lookup(RECEIVED),
        (post(GETPAYMENT, RECEIVED_Q, answer={"payment": payment(
            RECEIVED, "Succeeded", inbound=True, preimage=RECEIVED.preimage)}),
         get("/listpayments", answer={"payments": [
             payment(RECEIVED, "Succeeded", inbound=True, preimage=RECEIVED.preimage)]})),
        returns=status(RECEIVED, PaymentOutcome.UNKNOWN, updated_at=NOW),
    ),
    Case(
        "payment_status-answer-for-another-hash", "payment_status", lookup(PAID),
        (post(GETPAYMENT, PAID_Q, answer={"payment": payment(OUT, "Failed")}),),
        raises=NodeUnreachable, error_name=MALFORMED_ANSWER,
    ),
    Case(
        "payment_status-unknown-status", "payment_status", lookup(PAID),
        (post(GETPAYMENT, PAID_Q, answer={"payment": {**payment(PAID, "Failed"),
                                                       "status": "Cancelled"}},
              conforms=False),),
        raises=NodeUnreachable, error_name=MALFORMED_ANSWER,
    ),
    Case(
        "payment_status-locked", "payment_status", lookup(PAID),
        (post(GETPAYMENT, PAID_Q, 403, error(403, "LockedNode")),),
        raises=NodeLocked,
    ),
    Case(
        "payment_status-bad-hash", "payment_status",
        lambda b: b.payment_status("ab" * 31), (), raises=ValueError,
    ),
    *ambiguous("payment_status", "payment_status", lookup(PAID), GETPAYMENT, PAID_Q),
    # ------------------------------------------------------------------ inbound_payments
    Case(
        "inbound_payments", "inbound_payments", lambda b: b.inbound_payments(),
        (get("/listpayments", answer={"payments": [
            payment(RECEIVED, "Succeeded", inbound=True, preimage=RECEIVED.preimage),
            payment(PAID, "Succeeded", preimage=PAID.preimage),
            payment(OURS, "Pending", inbound=True),
            payment(OURS_OPEN, "Failed", inbound=True, amt_msat=None),
        ]}),),
        returns=[
            status(RECEIVED, PaymentOutcome.SUCCEEDED, amount_msat=2_000_000,
                   preimage=RECEIVED.preimage, updated_at=NOW + 7),
            status(OURS, PaymentOutcome.PENDING, amount_msat=5_000_000, updated_at=NOW + 7),
            status(OURS_OPEN, PaymentOutcome.FAILED, updated_at=NOW + 7),
        ],
    ),
    Case(
        "inbound_payments-empty", "inbound_payments", lambda b: b.inbound_payments(),
        (get("/listpayments", answer={"payments": []}),), returns=[],
    ),
    Case(
        "inbound_payments-locked", "inbound_payments", lambda b: b.inbound_payments(),
        (get("/listpayments", 403, error(403, "LockedNode")),), raises=NodeLocked,
    ),
    Case(
        # One unreadable item is left out (and logged); the others are still used.
        "inbound_payments-amount-as-string", "inbound_payments", lambda b: b.inbound_payments(),
        (get("/listpayments", answer={"payments": [
            {**payment(RECEIVED, "Succeeded", inbound=True), "amt_msat": "2000000"},
            payment(OURS, "Pending", inbound=True)]},
             conforms=False),),
        returns=[status(OURS, PaymentOutcome.PENDING, amount_msat=5_000_000, updated_at=NOW + 7)],
    ),
    Case(
        "inbound_payments-not-a-list", "inbound_payments", lambda b: b.inbound_payments(),
        (get("/listpayments", answer={"payments": {"0": payment(OURS, "Pending", inbound=True)}},
             conforms=False),),
        raises=NodeUnreachable, error_name=MALFORMED_ANSWER,
    ),
    Case(
        "inbound_payments-timeout", "inbound_payments", lambda b: b.inbound_payments(),
        (get("/listpayments", kind="hang"),), raises=NodeUnreachable, error_name="ReadTimeout",
    ),
    # ------------------------------------------------------------------ create_rgb_invoice
    Case(
        "create_rgb_invoice", "create_rgb_invoice",
        lambda b: b.create_rgb_invoice(asset_id=ASSET, duration_s=86_400, min_confirmations=1),
        (post("/rgbinvoice", rgb_invoice_request(ASSET, 86_400), answer=RGB_INVOICE_ANSWER),),
        returns=RgbInvoice(
            invoice=RGB_INVOICE_ANSWER["invoice"],
            recipient_id=RGB_INVOICE_ANSWER["recipient_id"],
            expires_at=NOW + 86_400,
            batch_transfer_idx=4,
        ),
    ),
    Case(
        "create_rgb_invoice-any-asset", "create_rgb_invoice",
        lambda b: b.create_rgb_invoice(asset_id=None, duration_s=86_400, min_confirmations=1),
        (post("/rgbinvoice", rgb_invoice_request(None, 86_400), answer=RGB_INVOICE_ANSWER),),
        returns=RgbInvoice(
            invoice=RGB_INVOICE_ANSWER["invoice"],
            recipient_id=RGB_INVOICE_ANSWER["recipient_id"],
            expires_at=NOW + 86_400,
            batch_transfer_idx=4,
        ),
    ),
    Case(
        "create_rgb_invoice-invalid-asset", "create_rgb_invoice",
        lambda b: b.create_rgb_invoice(asset_id="rgb:x", duration_s=60, min_confirmations=1),
        (post("/rgbinvoice", rgb_invoice_request("rgb:x", 60), 400,
              error(400, "InvalidAssetID")),),
        raises=InvoiceRefused, error_name="InvalidAssetID",
    ),
    Case(
        "create_rgb_invoice-no-utxos", "create_rgb_invoice",
        lambda b: b.create_rgb_invoice(asset_id=ASSET, duration_s=60, min_confirmations=1),
        (post("/rgbinvoice", rgb_invoice_request(ASSET, 60), 403,
              error(403, "NoAvailableUtxos")),),
        raises=NodeError, error_name="NoAvailableUtxos",
    ),
    Case(
        "create_rgb_invoice-proxy-down", "create_rgb_invoice",
        lambda b: b.create_rgb_invoice(asset_id=ASSET, duration_s=60, min_confirmations=1),
        (post("/rgbinvoice", rgb_invoice_request(ASSET, 60), 503,
              error(503, "NoValidTransportEndpoint")),),
        raises=NodeUnreachable, error_name="NoValidTransportEndpoint",
    ),
    Case(
        "create_rgb_invoice-zero-duration", "create_rgb_invoice",
        lambda b: b.create_rgb_invoice(asset_id=ASSET, duration_s=0, min_confirmations=1),
        (), raises=ValueError,
    ),
    # ------------------------------------------------------------------ refresh_transfers
    Case(
        "refresh_transfers", "refresh_transfers", lambda b: b.refresh_transfers(),
        (post("/refreshtransfers", REFRESH, answer={"transfers": {
            "4": {"updated_status": "Settled", "failure": None}}}),),
        returns=None,
    ),
    Case(
        "refresh_transfers-indexer-down", "refresh_transfers", lambda b: b.refresh_transfers(),
        (post("/refreshtransfers", REFRESH, 503, error(503, "Network", "indexer err")),),
        raises=NodeUnreachable, error_name="Network",
    ),
    Case(
        "refresh_transfers-locked", "refresh_transfers", lambda b: b.refresh_transfers(),
        (post("/refreshtransfers", REFRESH, 403, error(403, "LockedNode")),),
        raises=NodeLocked,
    ),
    # ------------------------------------------------------------------ list_transfers
    Case(
        "list_transfers", "list_transfers", lambda b: b.list_transfers(ASSET),
        (post("/listtransfers", LIST_ASSET, answer={"transfers": [
            transfer(1, "Issuance", "Settled", [1000], txid="aa" * 32,
                     receive_utxo="aa" * 32 + ":0"),
            transfer(2, "ReceiveBlind", "Settled", [100], requested=100, txid="bb" * 32,
                     receive_utxo="bb" * 32 + ":1"),
            transfer(3, "ReceiveBlind", "WaitingCounterparty", [], requested=50),
            transfer(4, "Send", "WaitingConfirmations", [30], txid="cc" * 32),
            transfer(5, "ReceiveWitness", "Settled", [7, 8], txid="dd" * 32,
                     receive_utxo="dd" * 32 + ":2"),
        ]}),),
        returns=[
            RgbTransfer(1, None, ASSET, "Settled", 1000, "aa" * 32, "aa" * 32 + ":0", False),
            RgbTransfer(2, "bcrt:utxob:fixture-2", ASSET, "Settled", 100, "bb" * 32,
                        "bb" * 32 + ":1", True),
            # Nothing has arrived yet: the requested 50 is not an amount received.
            RgbTransfer(3, "bcrt:utxob:fixture-3", ASSET, "WaitingCounterparty", 0, None, None,
                        True),
            RgbTransfer(4, None, ASSET, "WaitingConfirmations", 30, "cc" * 32, None, False),
            RgbTransfer(5, "bcrt:utxob:fixture-5", ASSET, "Settled", 15, "dd" * 32,
                        "dd" * 32 + ":2", True),
        ],
    ),
    Case(
        "list_transfers-unknown-asset", "list_transfers", lambda b: b.list_transfers(ASSET),
        (post("/listtransfers", LIST_ASSET, 403, error(403, "UnknownContractId")),),
        raises=NodeError, error_name="UnknownContractId",
    ),
    Case(
        "list_transfers-dropped", "list_transfers", lambda b: b.list_transfers(ASSET),
        (post("/listtransfers", LIST_ASSET, kind="drop"),), raises=NodeUnreachable,
    ),
    # ------------------------------------------------------------------ spendable_balances
    Case(
        "spendable_balances", "spendable_balances", lambda b: b.spendable_balances(),
        (get("/listchannels", answer={"channels": [
            channel(1, usable=True, outbound_msat=10_000_000),
            channel(2, usable=False, outbound_msat=5_000_000),
            channel(3, usable=True, outbound_msat=3_000_000, asset_id=ASSET, asset_local=700),
            channel(4, usable=True, outbound_msat=4_000_000, asset_id=ASSET, asset_local=300),
            channel(5, usable=False, outbound_msat=9_000_000, asset_id=OTHER_ASSET,
                    asset_local=999),
        ]}),),
        returns={BTC: 17_000_000, ASSET: 1000},
    ),
    Case(
        "spendable_balances-no-channels", "spendable_balances", lambda b: b.spendable_balances(),
        (get("/listchannels", answer={"channels": []}),), returns={BTC: 0},
    ),
    Case(
        "spendable_balances-locked", "spendable_balances", lambda b: b.spendable_balances(),
        (get("/listchannels", 403, error(403, "LockedNode")),), raises=NodeLocked,
    ),
    Case(
        "spendable_balances-dropped", "spendable_balances", lambda b: b.spendable_balances(),
        (get("/listchannels", kind="drop"), get("/listchannels", kind="drop")),
        raises=NodeUnreachable,
    ),
]
# fmt: on
