"""Each fault of /_sim/faults as a client sees it on the wire, and the payment's fate after."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.contract.sim.support import ASSET, Sim, sha256_hex

ZERO_PREIMAGE = "00" * 32


def _start(sim: Sim, fault: str, amt_msat: int = 5_000) -> tuple[str, str]:
    assert sim.ctl.faults(next_payment=fault)["next_payment"] == fault
    return sim.ctl.outside_invoice(amt_msat=amt_msat)


def test_fault_state_reads_back_and_applies_once(sim: Sim) -> None:
    assert sim.ctl.http.get("/faults").json() == {
        "routing_fee_msat": 0,
        "locked": False,
        "next_payment": None,
        "next_payment_remaining": 0,
        "hostile": [],
        "hostile_served": {},
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


# ------------------------------------------------------------------ counts


def test_count_applies_a_payment_fault_to_the_next_n_payments(sim: Sim) -> None:
    state = sim.ctl.faults(next_payment="fail", count=3)
    assert (state["next_payment"], state["next_payment_remaining"]) == ("fail", 3)
    hashes = []
    for _ in range(4):
        invoice, payment_hash = sim.ctl.outside_invoice(amt_msat=1_000)
        sim.rln.send(invoice)
        hashes.append(payment_hash)
    for payment_hash in hashes[:3]:
        sim.rln.wait_payment(payment_hash, "Failed")
    sim.rln.wait_payment(hashes[3], "Succeeded")  # the fourth is past the count
    state = sim.ctl.http.get("/faults").json()
    assert (state["next_payment"], state["next_payment_remaining"]) == (None, 0)
    # null clears whatever is left of a count
    sim.ctl.faults(next_payment="hold", count=5)
    assert sim.ctl.faults(next_payment=None)["next_payment_remaining"] == 0


def test_hold_many_then_release_all(sim: Sim) -> None:
    """What the reconciler tests need: many payments held at the node, then all let go."""
    held = 100
    sim.ctl.faults(next_payment="hold", count=held)
    hashes = []
    for _ in range(held):
        invoice, payment_hash = sim.ctl.outside_invoice(amt_msat=1_000)
        sim.rln.http.post("/sendpayment", json={"invoice": invoice}).raise_for_status()
        hashes.append(payment_hash)
    statuses = {
        p["payment_hash"]: p["status"] for p in sim.rln.ok("GET", "/listpayments")["payments"]
    }
    assert {statuses[h] for h in hashes} == {"Pending"}
    assert sim.ctl.post("/release_all", {"outcome": "succeed"}) == {"released": held}
    statuses = {
        p["payment_hash"]: p["status"] for p in sim.rln.ok("GET", "/listpayments")["payments"]
    }
    assert {statuses[h] for h in hashes} == {"Succeeded"}
    assert sim.ctl.post("/release_all", {"outcome": "fail"}) == {"released": 0}


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"count": 2}, "count applies to next_payment or hostile"),
        ({"next_payment": "hold", "count": 0}, "greater than or equal to 1"),
        ({"next_payment": "hold", "count": "2"}, "valid integer"),
        ({"target": "ab" * 32}, "target and route filter a hostile fault"),
        ({"hostile": "short_preimage", "route": "/listtransfers"}, "cannot corrupt"),
        ({"hostile": "Weird"}, "hostile"),
        ({"hostile": "huge_amount", "route": "/nodeinfo"}, "route"),
    ],
)
def test_fault_requests_that_make_no_sense_are_refused(
    sim: Sim, body: dict[str, object], why: str
) -> None:
    answer = sim.ctl.post("/faults", body, status=400)
    assert answer["name"] == "InvalidRequest" and why in answer["error"], answer
    assert sim.ctl.http.get("/faults").json()["hostile"] == []


# ------------------------------------------------------------------ hostile answers
#
# The spec check of support.Rln (tests.contract.sim.support) would refuse these answers (that is the
# point), so they are read with the plain HTTP client.


def _paid(sim: Sim) -> tuple[str, dict[str, object]]:
    invoice, payment_hash = sim.ctl.outside_invoice(amt_msat=4_000)
    sim.rln.send(invoice)
    return payment_hash, sim.rln.wait_payment(payment_hash, "Succeeded")


def _get_payment(sim: Sim, payment_hash: str) -> dict[str, object]:
    response = sim.rln.http.post("/getpayment", json={"payment_hash": payment_hash})
    assert response.status_code == 200, response.text
    payment: dict[str, object] = response.json()["payment"]
    return payment


EXPECTED_PAYMENT_CHANGES: dict[str, Callable[[dict[str, object]], dict[str, object]]] = {
    "uppercase_preimage": lambda p: {"preimage": str(p["preimage"]).upper()},
    "short_preimage": lambda p: {"preimage": str(p["preimage"])[:62]},
    "non_hex_preimage": lambda p: {"preimage": "zz" + str(p["preimage"])[2:]},
    "unknown_status": lambda p: {"status": "Weird"},
    "huge_amount": lambda p: {"amt_msat": 2**70, "asset_amount": 2**64},
    "negative_amount": lambda p: {"amt_msat": -4_000},
    "wrong_types": lambda p: {
        "amt_msat": "4000",
        "updated_at": str(p["updated_at"]),
        "inbound": "false",
    },
}


@pytest.mark.parametrize("kind", sorted(EXPECTED_PAYMENT_CHANGES))
def test_hostile_getpayment_record(sim: Sim, kind: str) -> None:
    payment_hash, sound = _paid(sim)
    sim.ctl.faults(hostile=kind, target=payment_hash)
    assert _get_payment(sim, payment_hash) == sound | EXPECTED_PAYMENT_CHANGES[kind](sound)
    assert _get_payment(sim, payment_hash) == sound  # one record, then used up
    assert sim.ctl.http.get("/faults").json()["hostile_served"] == {kind: 1}


def test_hostile_shapes_without_a_fixed_value(sim: Sim) -> None:
    payment_hash, sound = _paid(sim)
    sim.ctl.faults(hostile="missing_fields", target=payment_hash)
    missing = _get_payment(sim, payment_hash)
    assert set(sound) - set(missing) == {"payment_hash", "status"}
    sim.ctl.faults(hostile="null_fields", target=payment_hash)
    nulls = _get_payment(sim, payment_hash)
    assert nulls == {k: (payment_hash if k == "payment_hash" else None) for k in sound}
    sim.ctl.faults(hostile="extra_fields", target=payment_hash)
    extra = _get_payment(sim, payment_hash)
    assert {k: extra[k] for k in sound} == sound and len(extra) > len(sound)


def test_preimage_kinds_wait_for_a_record_with_a_preimage(sim: Sim) -> None:
    sim.ctl.faults(next_payment="hold")
    invoice, payment_hash = sim.ctl.outside_invoice(amt_msat=1_000)
    sim.rln.send(invoice)
    sim.ctl.faults(hostile="uppercase_preimage", target=payment_hash)
    assert _get_payment(sim, payment_hash)["preimage"] is None  # Pending: nothing to corrupt
    assert sim.ctl.http.get("/faults").json()["hostile"][0]["remaining"] == 1
    sim.ctl.post("/release", {"payment_hash": payment_hash, "outcome": "succeed"})
    preimage = _get_payment(sim, payment_hash)["preimage"]
    assert isinstance(preimage, str) and preimage == preimage.upper()
    assert sim.ctl.http.get("/faults").json()["hostile"] == []


def test_hostile_listing_corrupts_only_its_target_and_route(sim: Sim) -> None:
    target, _ = _paid(sim)
    other, _ = _paid(sim)
    sim.ctl.faults(hostile="unknown_status", count=2, target=target, route="/listpayments")
    assert _get_payment(sim, target)["status"] == "Succeeded"  # another route: untouched
    for _ in range(2):
        listed = {
            p["payment_hash"]: p for p in sim.rln.http.get("/listpayments").json()["payments"]
        }
        assert (listed[target]["status"], listed[other]["status"]) == ("Weird", "Succeeded")
    listed = {p["payment_hash"]: p for p in sim.rln.http.get("/listpayments").json()["payments"]}
    assert listed[target]["status"] == "Succeeded"


def test_hostile_entries_queue_oldest_first(sim: Sim) -> None:
    payment_hash, sound = _paid(sim)
    sim.ctl.faults(hostile="unknown_status", target=payment_hash)
    state = sim.ctl.faults(hostile="huge_amount", count=2, target=payment_hash)
    assert [(e["kind"], e["remaining"]) for e in state["hostile"]] == [
        ("unknown_status", 1),
        ("huge_amount", 2),
    ]
    assert _get_payment(sim, payment_hash)["status"] == "Weird"
    assert _get_payment(sim, payment_hash)["amt_msat"] == 2**70
    assert sim.ctl.faults(hostile=None)["hostile"] == []  # null drops what is left
    assert _get_payment(sim, payment_hash) == sound


def test_hostile_inbound_record(sim: Sim) -> None:
    invoice = sim.rln.invoice(amt_msat=2_000)
    paid = sim.ctl.pay(invoice)
    sim.ctl.faults(hostile="short_preimage", target=paid["payment_hash"])
    listed = {p["payment_hash"]: p for p in sim.rln.http.get("/listpayments").json()["payments"]}
    record = listed[paid["payment_hash"]]
    assert record["inbound"] is True and record["preimage"] == paid["preimage"][:62]


EXPECTED_TRANSFER_CHANGES: dict[str, Callable[[dict[str, object]], dict[str, object]]] = {
    "unknown_status": lambda t: {"status": "Weird"},
    "huge_amount": lambda t: {"assignments": [{"type": "Fungible", "value": 2**64}]},
    "negative_amount": lambda t: {"assignments": [{"type": "Fungible", "value": -5}]},
    "wrong_types": lambda t: {
        "idx": str(t["idx"]),
        "updated_at": str(t["updated_at"]),
        "assignments": [{"type": "Fungible", "value": "250"}],
    },
}


@pytest.mark.parametrize("kind", sorted(EXPECTED_TRANSFER_CHANGES))
def test_hostile_transfer_record(sim: Sim, kind: str) -> None:
    body = {
        "min_confirmations": 1,
        "asset_id": ASSET,
        "expiration_timestamp": int(time.time()) + 3600,
        "witness": False,
        "transport_endpoints": ["rpc://127.0.0.1:3000/json-rpc"],
    }
    recipient_id = sim.rln.ok("POST", "/rgbinvoice", body)["recipient_id"]
    sim.ctl.post("/rgbsend", {"recipient_id": recipient_id, "asset_id": ASSET, "amount": 250})
    for _ in range(2):
        sim.rln.ok("POST", "/refreshtransfers", {"filter": [], "skip_sync": False})
    query = {"asset_filter": {"type": "Id", "value": ASSET}}
    (sound,) = sim.rln.ok("POST", "/listtransfers", query)["transfers"]
    # A preimage kind has nothing to corrupt in a transfer: refused for that route.
    sim.ctl.post("/faults", {"hostile": "uppercase_preimage", "route": "/listtransfers"}, 400)
    sim.ctl.faults(hostile=kind, target=recipient_id)
    (hostile,) = sim.rln.http.post("/listtransfers", json=query).json()["transfers"]
    assert hostile == sound | EXPECTED_TRANSFER_CHANGES[kind](sound)
    assert sim.rln.ok("POST", "/listtransfers", query)["transfers"] == [sound]
