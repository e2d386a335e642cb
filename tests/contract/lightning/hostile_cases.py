"""Hostile node answers as contract rows (run by test_rln_contract.py with the other rows).

Every kind of the sim's catalogue (vnode_sim/faults.py: the very functions the sim
serves them with) applied to a record of /getpayment, of /listpayments (inbound payments) and of
/listtransfers, plus the edges of the amount range, of the decoder's answer and of the JSON
itself. Each answer must become a value that is safe or a NodeProtocolError (MalformedAnswer);
in a listing, the bad item is left out and the others are returned.
"""

from __future__ import annotations

from typing import Any

from tests.contract.lightning.invoices import NOW, make_invoice
from tests.contract.lightning.rln_cases import (
    ASSET,
    GETPAYMENT,
    LIST_ASSET,
    OURS,
    OUT,
    PAID,
    PAID_Q,
    RECEIVED,
    RECEIVED_Q,
    Case,
    channel,
    decoded_answer,
    get,
    lookup,
    payment,
    post,
    status,
    transfer,
)
from tests.contract.lightning.server import Exchange
from vnode.domain.ids import BTC
from vnode.lightning.base import (
    InvoiceRefused,
    Network,
    NodeError,
    NodeInvoice,
    PaymentOutcome,
    RgbTransfer,
)
from vnode.lightning.rln import I64_MAX, MALFORMED_ANSWER, NodeProtocolError
from vnode_sim.faults import (
    PREIMAGE_KINDS,
    HostileKind,
    corrupt_payment,
    corrupt_transfer,
)

# The one kind that leaves a record valid: a reader ignores fields it does not know.
HARMLESS = frozenset({HostileKind.EXTRA_FIELDS})
FAR = make_invoice("expiry beyond 2^63-1", amount_msat=1_000_000, expiry_s=2**63)

PAID_RECORD = payment(PAID, "Succeeded", preimage=PAID.preimage, asset_id=ASSET, asset_amount=5)
PAID_STATUS = status(
    PAID,
    PaymentOutcome.SUCCEEDED,
    amount_msat=4_000_000,
    asset_id=ASSET,
    asset_amount=5,
    preimage=PAID.preimage,
    updated_at=NOW + 7,
)
RECEIVED_RECORD = payment(RECEIVED, "Succeeded", inbound=True, preimage=RECEIVED.preimage)
RECEIVED_STATUS = status(
    RECEIVED,
    PaymentOutcome.SUCCEEDED,
    amount_msat=2_000_000,
    preimage=RECEIVED.preimage,
    updated_at=NOW + 7,
)
OURS_RECORD = payment(OURS, "Pending", inbound=True)
OURS_STATUS = status(OURS, PaymentOutcome.PENDING, amount_msat=5_000_000, updated_at=NOW + 7)
SETTLED = transfer(
    2,
    "ReceiveBlind",
    "Settled",
    [100],
    requested=100,
    txid="bb" * 32,
    receive_utxo="bb" * 32 + ":1",
)
SETTLED_T = RgbTransfer(
    2, "bcrt:utxob:fixture-2", ASSET, "Settled", 100, "bb" * 32, "bb" * 32 + ":1", True
)
OTHER = transfer(
    5, "ReceiveWitness", "Settled", [7, 8], txid="dd" * 32, receive_utxo="dd" * 32 + ":2"
)
OTHER_T = RgbTransfer(
    5, "bcrt:utxob:fixture-5", ASSET, "Settled", 15, "dd" * 32, "dd" * 32 + ":2", True
)


def bad_payment(kind: HostileKind, record: dict[str, Any]) -> dict[str, Any]:
    bad = corrupt_payment(kind, record)
    assert bad is not None, kind
    return bad


def bad_transfer(kind: HostileKind, record: dict[str, Any]) -> dict[str, Any]:
    bad = corrupt_transfer(kind, record)
    assert bad is not None, kind
    return bad


def malformed(case_id: str, method: str, call: Any, *exchanges: Exchange) -> Case:
    return Case(
        case_id, method, call, exchanges, raises=NodeProtocolError, error_name=MALFORMED_ANSWER
    )


# fmt: off


def per_kind(kind: HostileKind) -> list[Case]:
    harmless = kind in HARMLESS
    rows = [
        # /getpayment: the one record asked for is hostile.
        Case(f"hostile-getpayment-{kind}", "payment_status", lookup(PAID),
             (post(GETPAYMENT, PAID_Q, answer={"payment": bad_payment(kind, PAID_RECORD)},
                   conforms=False),),
             returns=PAID_STATUS)
        if harmless else
        malformed(f"hostile-getpayment-{kind}", "payment_status", lookup(PAID),
                  post(GETPAYMENT, PAID_Q, answer={"payment": bad_payment(kind, PAID_RECORD)},
                       conforms=False)),
        # /listpayments: an inbound payment is hostile, the others are still credited.
        Case(f"hostile-listpayments-{kind}", "inbound_payments", lambda b: b.inbound_payments(),
             (get("/listpayments", answer={"payments": [
                 bad_payment(kind, RECEIVED_RECORD), OURS_RECORD, PAID_RECORD]},
                  conforms=False),),
             returns=[RECEIVED_STATUS, OURS_STATUS] if harmless else [OURS_STATUS]),
        # The outbound record asked for is only in the list, and hostile: the node has it, so
        # it is not UNKNOWN (which would refund an expired invoice's payment).
        Case(f"hostile-other-direction-{kind}", "payment_status", lookup(RECEIVED),
             (post(GETPAYMENT, RECEIVED_Q, answer={"payment": RECEIVED_RECORD}),
              get("/listpayments", answer={"payments": [
                  RECEIVED_RECORD,
                  bad_payment(kind, payment(RECEIVED, "Succeeded", preimage=RECEIVED.preimage)),
              ]}, conforms=False)),
             **({"returns": status(RECEIVED, PaymentOutcome.SUCCEEDED, amount_msat=2_000_000,
                                   preimage=RECEIVED.preimage, updated_at=NOW + 7)}
                if harmless else
                {"raises": NodeProtocolError, "error_name": MALFORMED_ANSWER})),
    ]
    if kind not in PREIMAGE_KINDS:  # transfers carry no preimage
        rows.append(
            Case(f"hostile-listtransfers-{kind}", "list_transfers",
                 lambda b: b.list_transfers(ASSET),
                 (post("/listtransfers", LIST_ASSET, answer={"transfers": [
                     bad_transfer(kind, SETTLED), OTHER]}, conforms=False),),
                 returns=[SETTLED_T, OTHER_T] if harmless else [OTHER_T]))
    return rows


HOSTILE_CASES: list[Case] = [
    *[row for kind in HostileKind for row in per_kind(kind)],
    # ------------------------------------------------------------------ the edges of the range
    Case("hostile-amount-at-i64-max", "payment_status", lookup(PAID),
         (post(GETPAYMENT, PAID_Q, answer={"payment": {
             **PAID_RECORD, "amt_msat": I64_MAX, "asset_amount": I64_MAX}}),),
         returns=status(PAID, PaymentOutcome.SUCCEEDED, amount_msat=I64_MAX, asset_id=ASSET,
                        asset_amount=I64_MAX, preimage=PAID.preimage, updated_at=NOW + 7)),
    malformed("hostile-amount-at-2^63", "payment_status", lookup(PAID),
              post(GETPAYMENT, PAID_Q, answer={"payment": {**PAID_RECORD, "amt_msat": 2**63}},
                   conforms=False)),
    malformed("hostile-asset-amount-at-2^63", "payment_status", lookup(PAID),
              post(GETPAYMENT, PAID_Q, answer={"payment": {
                  **PAID_RECORD, "asset_amount": 2**63}}, conforms=False)),
    malformed("hostile-updated-at-2^64", "payment_status", lookup(PAID),
              post(GETPAYMENT, PAID_Q, answer={"payment": {**PAID_RECORD, "updated_at": 2**64}},
                   conforms=False)),
    malformed("hostile-amount-float", "payment_status", lookup(PAID),
              post(GETPAYMENT, PAID_Q, answer={"payment": {**PAID_RECORD, "amt_msat": 1e3}},
                   conforms=False)),
    malformed("hostile-empty-preimage", "payment_status", lookup(PAID),
              post(GETPAYMENT, PAID_Q, answer={"payment": {**PAID_RECORD, "preimage": ""}},
                   conforms=False)),
    malformed("hostile-preimage-with-nul", "payment_status", lookup(PAID),
              post(GETPAYMENT, PAID_Q, answer={"payment": {
                  **PAID_RECORD, "preimage": PAID.preimage[:63] + "\x00"}}, conforms=False)),
    malformed("hostile-asset-id-not-rgb", "payment_status", lookup(PAID),
              post(GETPAYMENT, PAID_Q, answer={"payment": {**PAID_RECORD, "asset_id": "BTC"}},
                   conforms=False)),
    Case("hostile-transfers-sum-beyond-i64", "list_transfers", lambda b: b.list_transfers(ASSET),
         (post("/listtransfers", LIST_ASSET, answer={"transfers": [
             transfer(2, "ReceiveBlind", "Settled", [I64_MAX, 1]), OTHER]}, conforms=False),),
         returns=[OTHER_T]),
    Case("hostile-transfers-unknown-kind", "list_transfers", lambda b: b.list_transfers(ASSET),
         (post("/listtransfers", LIST_ASSET, answer={"transfers": [
             {**SETTLED, "kind": "Teleport"}, OTHER]}, conforms=False),),
         returns=[OTHER_T]),
    Case("hostile-transfers-item-not-an-object", "list_transfers",
         lambda b: b.list_transfers(ASSET),
         (post("/listtransfers", LIST_ASSET, answer={"transfers": [[1, 2], None, OTHER]},
               conforms=False),),
         returns=[OTHER_T]),
    # Another payment's record is bad but its hash is readable: ours is known to be absent.
    Case("hostile-other-direction-other-hash-bad", "payment_status", lookup(RECEIVED),
         (post(GETPAYMENT, RECEIVED_Q, answer={"payment": RECEIVED_RECORD}),
          get("/listpayments", answer={"payments": [
              RECEIVED_RECORD, bad_payment(HostileKind.HUGE_AMOUNT, payment(OUT, "Pending"))]},
              conforms=False)),
         returns=status(RECEIVED, PaymentOutcome.UNKNOWN, updated_at=NOW)),
    Case("hostile-channel-skipped", "spendable_balances", lambda b: b.spendable_balances(),
         (get("/listchannels", answer={"channels": [
             {**channel(1, usable=True, outbound_msat=10_000_000), "outbound_balance_msat": 2**64},
             channel(2, usable=True, outbound_msat=3_000_000, asset_id=ASSET, asset_local=700),
             {**channel(3, usable=True, outbound_msat=1), "is_usable": "true"},
         ]}, conforms=False),),
         returns={BTC: 3_000_000, ASSET: 700}),
    # ------------------------------------------------------------------ the decoder's answer
    Case("hostile-decode-asset-amount-u64-max", "decode_invoice",
         lambda b: b.decode_invoice(OUT.text),
         (post("/decodelninvoice", {"invoice": OUT.text}, answer=decoded_answer(
             OUT, asset_id=ASSET, asset_amount=2**64 - 1)),),
         raises=InvoiceRefused, error_name="OutOfRange"),
    Case("hostile-decode-expiry-beyond-i64", "decode_invoice",
         lambda b: b.decode_invoice(FAR.text),
         (post("/decodelninvoice", {"invoice": FAR.text}, answer=decoded_answer(FAR)),),
         raises=InvoiceRefused, error_name="OutOfRange"),
    malformed("hostile-decode-expiry-beyond-u64", "decode_invoice",
              lambda b: b.decode_invoice(OUT.text),
              post("/decodelninvoice", {"invoice": OUT.text},
                   answer=decoded_answer(OUT, expiry_sec=2**64), conforms=False)),
    malformed("hostile-decode-negative-asset-amount", "decode_invoice",
              lambda b: b.decode_invoice(OUT.text),
              post("/decodelninvoice", {"invoice": OUT.text},
                   answer=decoded_answer(OUT, asset_id=ASSET, asset_amount=-1), conforms=False)),
    Case("hostile-decode-zero-asset-amount", "decode_invoice",
         lambda b: b.decode_invoice(OUT.text),
         (post("/decodelninvoice", {"invoice": OUT.text}, answer=decoded_answer(
             OUT, asset_id=ASSET, asset_amount=0)),),
         raises=InvoiceRefused, error_name="InvalidAmount"),
    Case("hostile-decode-bad-asset-id", "decode_invoice", lambda b: b.decode_invoice(OUT.text),
         (post("/decodelninvoice", {"invoice": OUT.text}, answer=decoded_answer(
             OUT, asset_id="rgb:?", asset_amount=1)),),
         raises=InvoiceRefused, error_name="InvalidAssetID"),
    Case("hostile-decode-other-payee", "decode_invoice", lambda b: b.decode_invoice(OUT.text),
         (post("/decodelninvoice", {"invoice": OUT.text}, answer=decoded_answer(
             OUT, payee_pubkey=OURS.payee_pubkey)),),
         raises=InvoiceRefused, error_name="DecoderDisagreement"),
    Case("hostile-decode-extra-fields", "decode_invoice", lambda b: b.decode_invoice(OUT.text),
         (post("/decodelninvoice", {"invoice": OUT.text}, answer={
             **decoded_answer(OUT), "x_hostile": {"deep": [1, None]}}, conforms=False),),
         returns=NodeInvoice(
             payment_hash=OUT.payment_hash, amount_msat=3_000_000, asset_id=None,
             asset_amount=None, expiry_s=3600, timestamp=NOW, network=Network.REGTEST,
             payee_pubkey=OUT.payee_pubkey)),
    # ------------------------------------------------------------------ the JSON itself
    malformed("hostile-json-nested-too-deep", "inbound_payments",
              lambda b: b.inbound_payments(),
              get("/listpayments", raw=b"[" * 100_000 + b"]" * 100_000, conforms=False)),
    malformed("hostile-json-integer-of-5000-digits", "inbound_payments",
              lambda b: b.inbound_payments(),
              get("/listpayments", raw=b'{"payments": [{"amt_msat": 1' + b"0" * 5000 + b"}]}",
                  conforms=False)),
    Case("hostile-error-name-with-control-characters", "payment_status", lookup(PAID),
         (post(GETPAYMENT, PAID_Q, 403, {"error": "x\x00" * 1000, "code": 403,
                                         "name": "Payment\x00NotFound"}, conforms=False),),
         # Not PaymentNotFound (which would read as UNKNOWN): a name we cannot trust is none.
         raises=NodeError),
]
# fmt: on
