"""The node pays (/sendpayment): asynchronous, Pending then final, liquidity and refusals."""

from __future__ import annotations

from collections.abc import Callable

from tests.contract.sim.support import ASSET, ASSET_UNITS, RGB_MIN_MSAT, Sim, sha256_hex
from vnode.lightning import bolt11


def test_paying_an_outside_invoice_succeeds_with_a_true_preimage(sim: Sim) -> None:
    sim.ctl.faults(routing_fee_msat=1_234)
    before = sim.rln.channel()
    invoice, payment_hash = sim.ctl.outside_invoice(amt_msat=50_000, description="book")
    answer = sim.rln.send(invoice)
    assert answer["status"] == "Pending"
    assert answer["payment_hash"] == answer["payment_id"] == payment_hash
    assert answer["payment_secret"] == bolt11.decode(invoice).payment_secret

    payment = sim.rln.wait_payment(payment_hash, "Succeeded")
    assert sha256_hex(payment["preimage"]) == payment_hash
    assert (payment["inbound"], payment["amt_msat"]) == (False, 50_000)
    assert payment["payee_pubkey"] == bolt11.decode(invoice).payee_pubkey != sim.pubkey
    after = sim.rln.channel()
    assert after["outbound_balance_msat"] == before["outbound_balance_msat"] - 51_234
    assert after["inbound_balance_msat"] == before["inbound_balance_msat"] + 51_234


def test_pending_payment_has_no_preimage_and_locks_liquidity(sim: Sim) -> None:
    before = sim.rln.channel()["outbound_balance_msat"]
    sim.ctl.faults(next_payment="hold")
    invoice, payment_hash = sim.ctl.outside_invoice(amt_msat=8_000)
    sim.rln.send(invoice)
    payment = sim.rln.payment(payment_hash)
    assert (payment["status"], payment["preimage"]) == ("Pending", None)
    assert sim.rln.channel()["outbound_balance_msat"] == before - 8_000
    assert sim.rln.ok("GET", "/nodeinfo")["pending_outbound_payments_sat"] == 8


def test_amountless_outside_invoice_needs_amt_msat(sim: Sim) -> None:
    invoice, payment_hash = sim.ctl.outside_invoice()
    sim.rln.refused("POST", "/sendpayment", {"invoice": invoice}, 400, "InvalidAmount")
    sim.rln.send(invoice, amt_msat=4_321)
    assert sim.rln.wait_payment(payment_hash, "Succeeded")["amt_msat"] == 4_321


def test_amt_msat_must_match_a_fixed_amount(sim: Sim) -> None:
    invoice, _ = sim.ctl.outside_invoice(amt_msat=1_000)
    body = {"invoice": invoice, "amt_msat": 1_001}
    sim.rln.refused("POST", "/sendpayment", body, 400, "InvalidAmount")


def test_rgb_payment_out_moves_asset_and_btc(sim: Sim) -> None:
    before = sim.rln.channel(ASSET)
    invoice, payment_hash = sim.ctl.outside_invoice(
        amt_msat=RGB_MIN_MSAT, asset_id=ASSET, asset_amount=10
    )
    sim.rln.send(invoice)
    payment = sim.rln.wait_payment(payment_hash, "Succeeded")
    assert (payment["asset_id"], payment["asset_amount"]) == (ASSET, 10)
    after = sim.rln.channel(ASSET)
    assert after["asset_local_amount"] == ASSET_UNITS - 10
    assert after["outbound_balance_msat"] == before["outbound_balance_msat"] - RGB_MIN_MSAT


def test_rgb_payment_out_below_the_btc_minimum_is_refused(sim: Sim) -> None:
    invoice, _ = sim.ctl.outside_invoice(amt_msat=RGB_MIN_MSAT - 1, asset_id=ASSET, asset_amount=10)
    sim.rln.refused("POST", "/sendpayment", {"invoice": invoice}, 400, "InvalidAmount")


def test_rgb_invoice_without_amount_takes_it_from_the_request(sim: Sim) -> None:
    invoice, payment_hash = sim.ctl.outside_invoice(amt_msat=RGB_MIN_MSAT, asset_id=ASSET)
    sim.rln.refused("POST", "/sendpayment", {"invoice": invoice}, 400, "IncompleteRGBInfo")
    sim.rln.send(invoice, asset_id=ASSET, asset_amount=4)
    assert sim.rln.wait_payment(payment_hash, "Succeeded")["asset_amount"] == 4


def test_the_node_cannot_pay_itself(sim: Sim) -> None:
    invoice = sim.rln.invoice(amt_msat=2_000)
    payment_hash = bolt11.decode(invoice).payment_hash
    before = sim.rln.channel()
    assert sim.rln.send(invoice)["status"] == "Failed"
    rows = [
        p
        for p in sim.rln.ok("GET", "/listpayments")["payments"]
        if p["payment_hash"] == payment_hash
    ]
    assert {(p["inbound"], p["status"]) for p in rows} == {(True, "Pending"), (False, "Failed")}
    assert sim.rln.channel() == before


def test_insufficient_liquidity_fails_at_once(make_sim: Callable[..., Sim]) -> None:
    sim: Sim = make_sim(btc_outbound_msat=10_000)
    invoice, payment_hash = sim.ctl.outside_invoice(amt_msat=10_001)
    assert sim.rln.send(invoice)["status"] == "Failed"
    assert sim.rln.payment(payment_hash)["status"] == "Failed"
    assert sim.rln.channel()["outbound_balance_msat"] == 10_000


def test_invoice_of_another_network_is_refused(sim: Sim) -> None:
    invoice, payment_hash = sim.ctl.outside_invoice(amt_msat=1_000, network="bitcoin")
    assert invoice.startswith("lnbc1") or invoice.startswith("lnbc10")
    sim.rln.refused("POST", "/sendpayment", {"invoice": invoice}, 400, "InvalidInvoice")
    sim.rln.refused("POST", "/getpayment", {"payment_hash": payment_hash}, 403, "PaymentNotFound")


def test_expired_invoice_is_refused(sim: Sim) -> None:
    invoice, _ = sim.ctl.outside_invoice(amt_msat=1_000, expiry_sec=0)
    sim.rln.refused("POST", "/sendpayment", {"invoice": invoice}, 400, "InvalidInvoice")


def test_unreadable_invoice_is_refused(sim: Sim) -> None:
    sim.rln.refused("POST", "/sendpayment", {"invoice": "lnbcrt1xyz"}, 400, "InvalidInvoice")


def test_duplicate_payment_while_pending_or_succeeded(sim: Sim) -> None:
    sim.ctl.faults(next_payment="hold")
    invoice, payment_hash = sim.ctl.outside_invoice(amt_msat=3_000)
    sim.rln.send(invoice)
    sim.rln.refused("POST", "/sendpayment", {"invoice": invoice}, 403, "DuplicatePayment")
    sim.ctl.post("/release", {"payment_hash": payment_hash, "outcome": "succeed"})
    assert sim.rln.payment(payment_hash)["status"] == "Succeeded"
    sim.rln.refused("POST", "/sendpayment", {"invoice": invoice}, 403, "DuplicatePayment")


def test_a_failed_payment_may_be_retried(sim: Sim) -> None:
    sim.ctl.faults(next_payment="fail")
    invoice, payment_hash = sim.ctl.outside_invoice(amt_msat=3_000)
    sim.rln.send(invoice)
    sim.rln.wait_payment(payment_hash, "Failed")
    assert sim.rln.send(invoice)["status"] == "Pending"
    assert sim.rln.wait_payment(payment_hash, "Succeeded")["preimage"] is not None


def test_unknown_payment_is_403_and_bad_hash_400(sim: Sim) -> None:
    sim.rln.refused("POST", "/getpayment", {"payment_hash": "ab" * 32}, 403, "PaymentNotFound")
    sim.rln.refused("POST", "/getpayment", {"payment_hash": "xyz"}, 400, "InvalidPaymentHash")
