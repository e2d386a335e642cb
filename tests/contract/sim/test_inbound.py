"""An outside payer pays the node's invoices (/_sim/pay); the node reports what arrived."""

from __future__ import annotations

from tests.contract.sim.support import ASSET, ASSET_UNITS, RGB_MIN_MSAT, Sim, sha256_hex
from vnode.lightning import bolt11


def _hash(invoice: str) -> str:
    return bolt11.decode(invoice).payment_hash


def test_exact_payment_is_recorded_and_raises_liquidity(sim: Sim) -> None:
    before = sim.rln.channel()
    invoice = sim.rln.invoice(amt_msat=25_000, description="tip")
    paid = sim.ctl.pay(invoice)
    assert (paid["payment_hash"], paid["amt_msat"]) == (_hash(invoice), 25_000)

    payment = sim.rln.payment(_hash(invoice))
    assert (payment["inbound"], payment["status"], payment["amt_msat"]) == (
        True,
        "Succeeded",
        25_000,
    )
    assert payment["payee_pubkey"] == sim.pubkey and payment["description"] == "tip"
    assert sha256_hex(payment["preimage"]) == payment["payment_hash"]
    assert sim.rln.invoice_status(invoice) == "Succeeded"

    after = sim.rln.channel()
    assert after["outbound_balance_msat"] == before["outbound_balance_msat"] + 25_000
    assert after["inbound_balance_msat"] == before["inbound_balance_msat"] - 25_000
    listed = {p["payment_hash"]: p for p in sim.rln.ok("GET", "/listpayments")["payments"]}
    assert listed[_hash(invoice)] == payment


def test_overpayment_is_recorded_as_paid(sim: Sim) -> None:
    invoice = sim.rln.invoice(amt_msat=10_000)
    assert sim.ctl.pay(invoice, amt_msat=10_999)["amt_msat"] == 10_999
    assert sim.rln.payment(_hash(invoice))["amt_msat"] == 10_999


def test_underpayment_is_refused(sim: Sim) -> None:
    invoice = sim.rln.invoice(amt_msat=10_000)
    sim.ctl.pay_refused(invoice, "InvalidAmount", amt_msat=9_999)
    assert sim.rln.payment(_hash(invoice))["status"] == "Pending"


def test_amountless_invoice_needs_an_amount(sim: Sim) -> None:
    invoice = sim.rln.invoice()
    sim.ctl.pay_refused(invoice, "InvalidAmount")
    sim.ctl.pay(invoice, amt_msat=1_001)
    payment = sim.rln.payment(_hash(invoice))
    assert (payment["status"], payment["amt_msat"]) == ("Succeeded", 1_001)


def test_second_payment_is_refused(sim: Sim) -> None:
    invoice = sim.rln.invoice(amt_msat=1_000)
    sim.ctl.pay(invoice)
    sim.ctl.pay_refused(invoice, "InvoiceAlreadyPaid")


def test_expired_invoice_cannot_be_paid(sim: Sim) -> None:
    invoice = sim.rln.invoice(amt_msat=1_000, expiry_sec=0)
    sim.ctl.pay_refused(invoice, "InvoiceExpired")
    assert sim.rln.invoice_status(invoice) in ("Expired", "Failed")


def test_only_the_nodes_own_invoices_can_be_paid_in(sim: Sim) -> None:
    outside, _ = sim.ctl.outside_invoice(amt_msat=1_000)
    sim.ctl.pay_refused(outside, "UnknownInvoice")
    sim.ctl.pay_refused("lnbcrt1nonsense", "InvalidInvoice")


def test_rgb_payment_in_moves_the_asset_and_the_btc(sim: Sim) -> None:
    before = sim.rln.channel(ASSET)
    invoice = sim.rln.invoice(amt_msat=RGB_MIN_MSAT, asset_id=ASSET, asset_amount=7)
    sim.ctl.pay(invoice)
    payment = sim.rln.payment(_hash(invoice))
    assert (payment["asset_id"], payment["asset_amount"], payment["amt_msat"]) == (
        ASSET,
        7,
        RGB_MIN_MSAT,
    )
    after = sim.rln.channel(ASSET)
    assert after["asset_local_amount"] == ASSET_UNITS + 7
    assert after["asset_remote_amount"] == ASSET_UNITS - 7
    assert after["outbound_balance_msat"] == before["outbound_balance_msat"] + RGB_MIN_MSAT
    balance = sim.rln.ok("POST", "/assetbalance", {"asset_id": ASSET})
    assert (balance["offchain_outbound"], balance["offchain_inbound"]) == (
        ASSET_UNITS + 7,
        ASSET_UNITS - 7,
    )


def test_rgb_payment_in_needs_the_asset_amount_and_the_btc_minimum(sim: Sim) -> None:
    open_amount = sim.rln.invoice(amt_msat=RGB_MIN_MSAT, asset_id=ASSET)
    sim.ctl.pay_refused(open_amount, "IncompleteRGBInfo")
    sim.ctl.pay(open_amount, asset_amount=3)
    assert sim.rln.payment(_hash(open_amount))["asset_amount"] == 3


def test_locked_node_receives_nothing(sim: Sim) -> None:
    invoice = sim.rln.invoice(amt_msat=1_000)
    sim.ctl.faults(locked=True)
    sim.ctl.pay_refused(invoice, "NodeLocked")
