"""/lninvoice and /decodelninvoice: real BOLT 11, signed by the node, RGB fields included."""

from __future__ import annotations

from collections.abc import Callable

from tests.contract.sim.support import ASSET, RGB_MIN_MSAT, Sim
from vnode.lightning import bolt11
from vnode_sim.invoices import RGB_ASSET_AMOUNT_TAG, RGB_ASSET_ID_TAG, read_rgb_tags


def test_btc_invoice_is_signed_by_the_node_and_decodes_alike(sim: Sim) -> None:
    invoice = sim.rln.invoice(amt_msat=12_345, description="coffee", expiry_sec=600)
    assert invoice.startswith("lnbcrt")
    ours = bolt11.decode(invoice, require_payment_secret=True)
    assert ours.payee_pubkey == sim.pubkey
    assert (ours.amount_msat, ours.description, ours.expiry_s) == (12_345, "coffee", 600)

    node = sim.rln.decode(invoice)
    assert node["payment_hash"] == ours.payment_hash
    assert node["payment_secret"] == ours.payment_secret
    assert (node["amt_msat"], node["expiry_sec"], node["timestamp"]) == (
        12_345,
        600,
        ours.timestamp,
    )
    assert (node["network"], node["description"]) == ("Regtest", "coffee")
    assert node["asset_id"] is None and node["asset_amount"] is None
    assert node["payee_pubkey"] is None  # like LDK: no `n` field, the key is recovered

    assert sim.rln.invoice_status(invoice) == "Pending"
    (row,) = sim.rln.ok("GET", "/listpayments")["payments"]
    assert (row["payment_hash"], row["inbound"], row["status"]) == (
        ours.payment_hash,
        True,
        "Pending",
    )
    assert row["preimage"] is None and row["amt_msat"] == 12_345


def test_amountless_invoice(sim: Sim) -> None:
    invoice = sim.rln.invoice()
    assert bolt11.decode(invoice).amount_msat is None
    assert sim.rln.decode(invoice)["amt_msat"] is None


def test_description_hash_invoice(sim: Sim) -> None:
    digest = "ab" * 32
    decoded = sim.rln.decode(sim.rln.invoice(amt_msat=1_000, description_hash=digest))
    assert (decoded["description"], decoded["description_hash"]) == (None, digest)
    sim.rln.refused(
        "POST",
        "/lninvoice",
        {"expiry_sec": 60, "description": "x", "description_hash": digest},
        400,
        "InvalidRequest",
    )
    sim.rln.refused(
        "POST",
        "/lninvoice",
        {"expiry_sec": 60, "description_hash": "zz"},
        400,
        "InvalidDescriptionHash",
    )


def test_rgb_invoice_carries_asset_in_tags_30_and_31(sim: Sim) -> None:
    invoice = sim.rln.invoice(amt_msat=RGB_MIN_MSAT, asset_id=ASSET, asset_amount=42)
    node = sim.rln.decode(invoice)
    assert (node["asset_id"], node["asset_amount"], node["amt_msat"]) == (ASSET, 42, RGB_MIN_MSAT)

    ours = bolt11.decode(invoice)
    assert {f.type for f in ours.extra_fields} == {RGB_ASSET_ID_TAG, RGB_ASSET_AMOUNT_TAG}
    (id_field,) = ours.extra_fields_of_type(RGB_ASSET_ID_TAG)
    (amount_field,) = ours.extra_fields_of_type(RGB_ASSET_AMOUNT_TAG)
    assert id_field.data_bytes() == ASSET.encode()
    assert amount_field.data_bytes() == (42).to_bytes(8, "big")
    assert read_rgb_tags(ours) == (ASSET, 42)


def test_rgb_invoice_may_omit_the_asset_amount(sim: Sim) -> None:
    node = sim.rln.decode(sim.rln.invoice(amt_msat=RGB_MIN_MSAT, asset_id=ASSET))
    assert (node["asset_id"], node["asset_amount"]) == (ASSET, None)


def test_rgb_invoice_needs_the_btc_minimum(sim: Sim) -> None:
    for amt in (RGB_MIN_MSAT - 1, None):
        body = {"expiry_sec": 60, "asset_id": ASSET, "asset_amount": 1, "amt_msat": amt}
        sim.rln.refused("POST", "/lninvoice", body, 400, "InvalidAmount")


def test_invoice_refusals(sim: Sim) -> None:
    sim.rln.refused(
        "POST",
        "/lninvoice",
        {"expiry_sec": 60, "amt_msat": RGB_MIN_MSAT, "asset_id": "usdt"},
        400,
        "InvalidAssetID",
    )
    sim.rln.refused(
        "POST", "/lninvoice", {"expiry_sec": 60, "asset_amount": 5}, 400, "IncompleteRGBInfo"
    )
    sim.rln.refused("POST", "/lninvoice", {"expiry_sec": 60, "amt_msat": 0}, 400, "InvalidAmount")
    sim.rln.refused(
        "POST", "/decodelninvoice", {"invoice": "lnbcrt1garbage"}, 400, "InvalidInvoice"
    )
    outside, _ = sim.ctl.outside_invoice(amt_msat=1_000)
    sim.rln.refused("POST", "/invoicestatus", {"invoice": outside}, 403, "UnknownLNInvoice")


def test_malformed_bodies_are_invalid_requests(sim: Sim) -> None:
    # The spec refuses these too...
    for body in (
        {"expiry_sec": 60, "amt_msat": 1.5},
        {"expiry_sec": 60, "amt_msat": True},
        {"expiry_sec": 60, "amt_msat": "1000"},
        {"amt_msat": 1000},
    ):
        sim.rln.refused("POST", "/lninvoice", body, 400, "InvalidRequest", body_is_valid=False)
    # ... but says only "integer" where the node deserialises a u64.
    body = {"expiry_sec": 60, "amt_msat": -1}
    sim.rln.refused("POST", "/lninvoice", body, 400, "InvalidRequest")


def test_expired_invoice_reads_expired_then_failed_once_listed(sim: Sim) -> None:
    invoice = sim.rln.invoice(amt_msat=5_000, expiry_sec=0)
    assert sim.rln.invoice_status(invoice) == "Expired"
    (row,) = sim.rln.ok("GET", "/listpayments")["payments"]
    assert row["status"] == "Failed"  # the node's listing rewrites expired invoices
    assert sim.rln.invoice_status(invoice) == "Failed"


def test_same_seed_same_node_key(make_sim: Callable[..., Sim]) -> None:
    first = make_sim(node_seed_hex="07" * 32)
    second = make_sim(node_seed_hex="07" * 32)
    other = make_sim()
    keys = [s.rln.ok("GET", "/nodeinfo")["pubkey"] for s in (first, second, other)]
    assert keys[0] == keys[1] != keys[2]
