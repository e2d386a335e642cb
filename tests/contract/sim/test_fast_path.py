"""The payment routes' fast path (vnode_sim/fast_path.py) answers exactly as the full app does:
the same status and body for a payment, its record, and each refusal. The full app is made to
answer by arming a hostile fault aimed at a payment that never exists, which takes the fast
path out of the way without changing any answer compared here."""

from __future__ import annotations

from typing import Any

from tests.contract.sim.support import Sim
from vnode_sim.faults import FaultState

NOWHERE = "f" * 64  # the hostile fault's target: no payment has this hash


def answers(sim: Sim, invoice: str, payment_hash: str) -> list[tuple[int, Any]]:
    calls: list[tuple[str, Any, bool]] = [
        ("/sendpayment", {"invoice": invoice}, True),
        ("/getpayment", {"payment_hash": payment_hash}, True),
        ("/sendpayment", {"invoice": invoice}, True),  # 403 DuplicatePayment
        ("/getpayment", {"payment_hash": "ab" * 32}, True),  # 403 PaymentNotFound
        ("/getpayment", {"payment_hash": "not a hash"}, True),  # 400 InvalidPaymentHash
        ("/sendpayment", {"invoice": "lnbc1garbage"}, True),  # 400 InvalidInvoice
        ("/sendpayment", {"amt_msat": 5}, False),  # 400 InvalidRequest (the body)
        ("/getpayment", {"payment_hash": 7}, False),  # 400 InvalidRequest (a type)
    ]
    found = []
    for path, body, valid in calls:
        response = sim.rln.call("POST", path, body, body_is_valid=valid)
        answer = response.json()
        if path == "/getpayment" and response.status_code == 200:
            for own in ("payment_hash", "created_at", "updated_at"):  # each run's own
                answer["payment"].pop(own)
        if path == "/sendpayment" and response.status_code == 200:
            answer = {k: v for k, v in answer.items() if k == "status"}
        found.append((response.status_code, answer))
    return found


def plain(sim: Sim) -> bool:
    faults: FaultState = sim.server.node.faults
    return not faults.locked and faults.next_payment is None and not faults.hostile


def test_the_fast_path_answers_as_the_app(sim: Sim) -> None:
    first, first_hash = sim.ctl.outside_invoice(amt_msat=2000, expiry_sec=3600)
    second, second_hash = sim.ctl.outside_invoice(amt_msat=2000, expiry_sec=3600)
    assert plain(sim)
    fast = answers(sim, first, first_hash)
    sim.ctl.faults(hostile="uppercase_preimage", target=NOWHERE)
    assert not plain(sim)
    full = answers(sim, second, second_hash)
    assert fast == full
    statuses = [status for status, _ in fast]
    assert statuses == [200, 200, 403, 403, 400, 400, 400, 400]
    assert [a.get("name") for _, a in fast[2:]] == [
        "DuplicatePayment",
        "PaymentNotFound",
        "InvalidPaymentHash",
        "InvalidInvoice",
        "InvalidRequest",
        "InvalidRequest",
    ]


def test_a_locked_node_is_refused_by_the_app(sim: Sim) -> None:
    invoice, _ = sim.ctl.outside_invoice(amt_msat=2000, expiry_sec=3600)
    sim.ctl.faults(locked=True)
    sim.rln.refused("POST", "/sendpayment", {"invoice": invoice}, 403, "LockedNode")
    sim.ctl.faults(locked=False)
    assert sim.rln.send(invoice)["status"] == "Pending"
