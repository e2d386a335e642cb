"""Each fault of /_sim/faults as a client sees it on the wire, and the payment's fate after."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.sim.support import Sim, sha256_hex

ZERO_PREIMAGE = "00" * 32


def _start(sim: Sim, fault: str, amt_msat: int = 5_000) -> tuple[str, str]:
    assert sim.ctl.faults(next_payment=fault)["next_payment"] == fault
    return sim.ctl.outside_invoice(amt_msat=amt_msat)


def test_fault_state_reads_back_and_applies_once(sim: Sim) -> None:
    assert sim.ctl.http.get("/faults").json() == {
        "routing_fee_msat": 0,
        "locked": False,
        "next_payment": None,
    }
    invoice, payment_hash = _start(sim, "fail")
    sim.rln.send(invoice)
    assert sim.ctl.http.get("/faults").json()["next_payment"] is None
    sim.rln.wait_payment(payment_hash, "Failed")
    second, second_hash = sim.ctl.outside_invoice(amt_msat=1_000)
    sim.rln.send(second)
    sim.rln.wait_payment(second_hash, "Succeeded")
    # null clears a fault set earlier
    sim.ctl.faults(next_payment="hold")
    assert sim.ctl.faults(next_payment=None)["next_payment"] is None


def test_fail_ends_failed_and_returns_the_liquidity(sim: Sim) -> None:
    sim.ctl.faults(routing_fee_msat=100)
    before = sim.rln.channel()["outbound_balance_msat"]
    invoice, payment_hash = _start(sim, "fail")
    assert sim.rln.send(invoice)["status"] == "Pending"
    payment = sim.rln.wait_payment(payment_hash, "Failed")
    assert payment["preimage"] is None
    assert sim.rln.channel()["outbound_balance_msat"] == before


@pytest.mark.parametrize("outcome", ["succeed", "fail"])
def test_hold_stays_pending_until_released(sim: Sim, outcome: str) -> None:
    invoice, payment_hash = _start(sim, "hold")
    sim.rln.send(invoice)
    assert sim.rln.payment(payment_hash)["status"] == "Pending"
    released = sim.ctl.post("/release", {"payment_hash": payment_hash, "outcome": outcome})
    assert released["status"] == ("Succeeded" if outcome == "succeed" else "Failed")
    assert sim.rln.payment(payment_hash)["status"] == released["status"]
    sim.ctl.post("/release", {"payment_hash": payment_hash, "outcome": outcome}, status=400)


def test_timeout_then_succeed(sim: Sim) -> None:
    invoice, payment_hash = _start(sim, "timeout_then_succeed")
    # The sim withholds the answer for 1 s (request_timeout_hang_s): the client gives up first.
    with pytest.raises(httpx.ReadTimeout):
        sim.rln.call("POST", "/sendpayment", {"invoice": invoice}, timeout=0.3)
    payment = sim.rln.wait_payment(payment_hash, "Succeeded")
    assert sha256_hex(payment["preimage"]) == payment_hash


def test_error_500_then_succeed(sim: Sim) -> None:
    invoice, payment_hash = _start(sim, "error_500_then_succeed")
    response = sim.rln.call("POST", "/sendpayment", {"invoice": invoice})
    assert response.status_code == 500
    assert response.json()["name"] == "Unexpected"  # not FailedPayment: the fate is unknown
    sim.rln.wait_payment(payment_hash, "Succeeded")


def test_drop_then_succeed_closes_the_connection_without_an_answer(sim: Sim) -> None:
    invoice, payment_hash = _start(sim, "drop_then_succeed")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        sim.rln.call("POST", "/sendpayment", {"invoice": invoice})
    sim.rln.wait_payment(payment_hash, "Succeeded")
    assert sim.rln.ok("GET", "/nodeinfo")["pubkey"] == sim.pubkey  # the server is fine


def test_stale_failed_then_succeed(make_sim: Callable[..., Sim]) -> None:
    # A longer settle delay, so the Pending after the stale answer is surely seen.
    sim: Sim = make_sim(settle_delay_s=0.5)
    invoice, payment_hash = _start(sim, "stale_failed_then_succeed")
    sent_at = int(time.time())
    assert sim.rln.send(invoice)["status"] == "Pending"
    stale = sim.rln.payment(payment_hash)
    assert (stale["status"], stale["preimage"]) == ("Failed", None)
    assert stale["created_at"] <= sent_at - 3600 + 1
    assert stale["updated_at"] <= sent_at - 3600 + 1
    seen = [sim.rln.payment(payment_hash)]
    assert seen[0]["status"] == "Pending" and seen[0]["created_at"] >= sent_at
    final = sim.rln.wait_payment(payment_hash, "Succeeded")
    assert sha256_hex(final["preimage"]) == payment_hash


def test_zero_preimage(sim: Sim) -> None:
    invoice, payment_hash = _start(sim, "zero_preimage")
    sim.rln.send(invoice)
    payment = sim.rln.wait_payment(payment_hash, "Succeeded")
    assert payment["preimage"] == ZERO_PREIMAGE
    assert sha256_hex(payment["preimage"]) != payment_hash


def test_wire_fault_applies_to_a_payment_refused_at_once(sim: Sim) -> None:
    sim.ctl.faults(next_payment="error_500_then_succeed")
    invoice = sim.rln.invoice(amt_msat=1_000)  # our own: refused at once
    assert sim.rln.call("POST", "/sendpayment", {"invoice": invoice}).status_code == 500
