"""On-chain RGB receipts: /rgbinvoice, an outside wallet's send, /refreshtransfers."""

from __future__ import annotations

import time
from typing import Any

from tests.contract.sim.support import ASSET, Sim, poll

ENDPOINTS = ["rpc://127.0.0.1:3000/json-rpc"]


def _rgb_invoice(sim: Sim, **extra: Any) -> dict[str, Any]:
    body = {
        "min_confirmations": 1,
        "asset_id": ASSET,
        "expiration_timestamp": int(time.time()) + 3600,
        "witness": False,
        "transport_endpoints": ENDPOINTS,
    } | extra
    return sim.rln.ok("POST", "/rgbinvoice", body)


def _transfers(sim: Sim) -> list[dict[str, Any]]:
    body = {"asset_filter": {"type": "Id", "value": ASSET}}
    transfers: list[dict[str, Any]] = sim.rln.ok("POST", "/listtransfers", body)["transfers"]
    return transfers


def _refresh(sim: Sim) -> dict[str, Any]:
    refreshed: dict[str, Any] = sim.rln.ok(
        "POST", "/refreshtransfers", {"filter": [], "skip_sync": False}
    )["transfers"]
    return refreshed


def test_receive_settles_after_two_refreshes(sim: Sim) -> None:
    invoice = _rgb_invoice(sim)
    assert invoice["recipient_id"].startswith("bcrt:utxob:")
    idx = invoice["batch_transfer_idx"]
    (waiting,) = _transfers(sim)
    assert (waiting["idx"], waiting["status"], waiting["assignments"]) == (
        idx,
        "WaitingCounterparty",
        [],
    )
    assert waiting["kind"] == "ReceiveBlind" and waiting["txid"] is None

    sent = sim.ctl.post(
        "/rgbsend", {"recipient_id": invoice["recipient_id"], "asset_id": ASSET, "amount": 250}
    )
    assert sent["batch_transfer_idx"] == idx
    assert _transfers(sim)[0]["status"] == "WaitingCounterparty"  # seen at the next refresh

    assert _refresh(sim) == {str(idx): {"updated_status": "WaitingConfirmations", "failure": None}}
    (confirming,) = _transfers(sim)
    assert confirming["assignments"] == [{"type": "Fungible", "value": 250}]
    txid = confirming["txid"]
    assert len(txid) == 64 and confirming["receive_utxo"] == f"{txid}:1"
    balance = sim.rln.ok("POST", "/assetbalance", {"asset_id": ASSET})
    assert (balance["settled"], balance["future"]) == (0, 250)

    assert _refresh(sim) == {str(idx): {"updated_status": "Settled", "failure": None}}
    (settled,) = _transfers(sim)
    assert (settled["status"], settled["txid"]) == ("Settled", txid)
    assert _refresh(sim) == {}  # Settled is final
    balance = sim.rln.ok("POST", "/assetbalance", {"asset_id": ASSET})
    assert (balance["settled"], balance["spendable"]) == (250, 250)


def test_send_by_invoice_string_and_refusals(sim: Sim) -> None:
    invoice = _rgb_invoice(sim)
    body = {"invoice": invoice["invoice"], "asset_id": ASSET, "amount": 5}
    sim.ctl.post("/rgbsend", body)
    refused = sim.ctl.post("/rgbsend", body, status=400)
    assert refused["name"] == "RecipientIDAlreadyUsed"
    unknown = {"recipient_id": "bcrt:utxob:nothing", "asset_id": ASSET, "amount": 5}
    assert sim.ctl.post("/rgbsend", unknown, status=400)["name"] == "UnknownRecipient"


def test_unpaid_receipt_fails_on_refresh_after_expiry(sim: Sim) -> None:
    # +2: the node refuses an expiry that is not in the future by the time it reads it.
    invoice = _rgb_invoice(sim, expiration_timestamp=int(time.time()) + 2)
    idx = str(invoice["batch_transfer_idx"])
    # Until the expiry passes a refresh changes nothing; then the receipt fails.
    refreshed = poll(lambda: _refresh(sim), lambda r: idx in r, what="expired receipt")
    assert refreshed == {idx: {"updated_status": "Failed", "failure": None}}
    assert _transfers(sim)[0]["status"] == "Failed"
    late = {"recipient_id": invoice["recipient_id"], "asset_id": ASSET, "amount": 5}
    assert sim.ctl.post("/rgbsend", late, status=400)["name"] == "InvoiceExpired"


def test_rgb_invoice_refusals(sim: Sim) -> None:
    base = {
        "min_confirmations": 1,
        "expiration_timestamp": int(time.time()) + 3600,
        "witness": False,
        "transport_endpoints": ENDPOINTS,
    }
    sim.rln.refused("POST", "/rgbinvoice", base | {"asset_id": "x"}, 400, "InvalidAssetID")
    other = "rgb:" + "A" * 48
    sim.rln.refused("POST", "/rgbinvoice", base | {"asset_id": other}, 403, "UnknownContractId")
    past = base | {"expiration_timestamp": 1}
    sim.rln.refused("POST", "/rgbinvoice", past, 400, "InvalidExpiration")
