"""Flows 2 and 3 end to end: the HTTP API, the rln adapter, and the simulated node over HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import asyncpg
import httpx
import pytest

from tests.integration.api.test_api_transfer import balance, fund
from tests.lightning_support import SimControl, assert_audit_clean
from tests.support import RGB_ASSET, new_user_id, wait_until
from vnode.payments.policy import settings_reserve_msat
from vnode.settings import Settings
from vnode_sim import bolt11


@pytest.fixture
def sim(sim_node: str) -> SimControl:
    return SimControl(sim_node)


def reserve_for(amount_msat: int) -> int:
    """The default fee reserve (50 sat + 1%, security review M4)."""
    return settings_reserve_msat(Settings.model_construct(), amount_msat)


async def pay(
    client: httpx.AsyncClient, user_id: int, invoice: str, **extra: Any
) -> httpx.Response:
    return await client.post(
        "/virtual_sendpayment", json={"user_id": str(user_id), "invoice": invoice, **extra}
    )


async def payment_state(client: httpx.AsyncClient, user_id: int, payment_hash: str) -> str:
    response = await client.post(
        "/virtual_payment", json={"user_id": user_id, "payment_hash": payment_hash}
    )
    return str(response.json()["status"])


async def wait_payment(
    client: httpx.AsyncClient, user_id: int, payment_hash: str, status: str, timeout_s: float = 15
) -> None:
    async def done() -> bool:
        return await payment_state(client, user_id, payment_hash) == status

    await wait_until(done, timeout_s, f"payment {payment_hash[:8]} to be {status}")


async def assets(client: httpx.AsyncClient, user_id: int) -> dict[str, dict[str, int]]:
    body = (await client.post("/virtual_balances", json={"user_id": user_id})).json()
    return {b["asset_id"]: b for b in body["balances"]}


# --- Flow 2: paying out -------------------------------------------------------------------


async def test_external_payment_succeeds_and_charges_the_reserve(
    app_client: httpx.AsyncClient, sim: SimControl, shared_db: str
) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 1_000_000)
    invoice = await sim.invoice(100_000)
    response = await pay(app_client, alice, invoice)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded" and body["kind"] == "external"
    assert hashlib.sha256(bytes.fromhex(body["preimage"])).hexdigest() == body["payment_hash"]
    # RLN reports no fee: the documented policy charges the whole reserve, known in advance.
    assert body["fee_reserve_msat"] == body["fee_msat"] == reserve_for(100_000)
    assert await balance(app_client, alice) == 1_000_000 - 100_000 - reserve_for(100_000)
    history = (await app_client.post("/virtual_history", json={"user_id": alice})).json()
    assert history["transactions"][0]["status"] == "succeeded"
    await assert_audit_clean(shared_db)


async def test_insufficient_balance_for_amount_plus_reserve(
    app_client: httpx.AsyncClient, sim: SimControl
) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 105_000)  # covers the amount, not amount + reserve
    response = await pay(app_client, alice, await sim.invoice(100_000))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "insufficient_balance"
    assert await balance(app_client, alice) == 105_000


async def test_amountless_invoice_needs_an_amount(
    app_client: httpx.AsyncClient, sim: SimControl
) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 500_000)
    invoice = await sim.invoice()
    missing = await pay(app_client, alice, invoice)
    assert missing.status_code == 422
    assert missing.json()["error"]["code"] == "amount_required"
    paid = await pay(app_client, alice, invoice, amt_msat=20_000)
    assert paid.status_code == 200 and paid.json()["amount_msat"] == 20_000
    assert await balance(app_client, alice) == 500_000 - 20_000 - reserve_for(20_000)


async def test_amount_must_match_the_invoice(
    app_client: httpx.AsyncClient, sim: SimControl
) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 500_000)
    invoice = await sim.invoice(30_000)
    response = await pay(app_client, alice, invoice, amt_msat=30_001)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "amount_mismatch"
    same = await pay(app_client, alice, invoice, amt_msat=30_000)
    assert same.status_code == 200


def _foreign_invoice(network: str, *, timestamp: int | None = None, expiry_s: int = 3600) -> str:
    return bolt11.encode(
        network=network,  # type: ignore[arg-type]
        amount_msat=10_000,
        payment_hash=bytes(range(32)),
        payment_secret=bytes(32),
        timestamp=timestamp or int(time.time()),
        private_key=bytes([7] * 32),
        description="foreign",
        expiry_s=expiry_s,
    )


def _bad_checksum(invoice: str) -> str:
    # Another last character: replacing it with "q" left it unchanged once in 32 runs (the
    # invoice carries the time), and the test paid a valid invoice.
    return invoice[:-1] + ("p" if invoice.endswith("q") else "q")


@pytest.mark.parametrize(
    ("invoice", "code"),
    [
        (_foreign_invoice("bitcoin"), "wrong_network"),
        (_foreign_invoice("testnet"), "wrong_network"),
        (_foreign_invoice("regtest", timestamp=int(time.time()) - 7200), "invoice_expired"),
        ("lnbcrt1pnotaninvoice", "invalid_invoice"),
        (_bad_checksum(_foreign_invoice("regtest")), "invalid_invoice"),
    ],
)
async def test_bad_invoices_are_refused_without_change(
    app_client: httpx.AsyncClient, invoice: str, code: str
) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 100_000)
    response = await pay(app_client, alice, invoice)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    assert await balance(app_client, alice) == 100_000


async def test_fee_limit_below_the_reserve_is_refused(
    app_client: httpx.AsyncClient, sim: SimControl
) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 100_000)
    response = await pay(app_client, alice, await sim.invoice(1000), fee_limit_msat=5)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "fee_limit_too_low"
    ok = await pay(app_client, alice, await sim.invoice(1000), fee_limit_msat=60_000)
    assert ok.status_code == 200 and ok.json()["fee_msat"] == reserve_for(1000)


async def test_same_invoice_paid_at_once_by_two_users_debits_once(
    app_client: httpx.AsyncClient, sim: SimControl, shared_db: str
) -> None:
    alice, bob = new_user_id(), new_user_id()
    await fund(app_client, alice, 1_000_000)
    await fund(app_client, bob, 1_000_000)
    invoice = await sim.invoice(50_000)
    answers = await asyncio.gather(*(pay(app_client, payer, invoice) for payer in [alice, bob] * 5))
    winners = [a for a in answers if a.status_code in (200, 202)]
    assert len(winners) == 1, [a.text for a in answers]
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 409} <= {
        "payment_in_progress",
        "invoice_already_paid",
    }
    total = await balance(app_client, alice) + await balance(app_client, bob)
    assert total == 2_000_000 - 50_000 - reserve_for(50_000)
    await assert_audit_clean(shared_db)


async def test_idempotent_retry_pays_once(app_client: httpx.AsyncClient, sim: SimControl) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 1_000_000)
    invoice = await sim.invoice(40_000)
    headers = {"Idempotency-Key": f"pay-{alice}"}
    first, again = [
        await app_client.post(
            "/virtual_sendpayment", headers=headers, json={"user_id": alice, "invoice": invoice}
        )
        for _ in range(2)
    ]
    assert first.json()["payment_id"] == again.json()["payment_id"]
    assert again.json()["status"] == "succeeded"
    assert await balance(app_client, alice) == 1_000_000 - 40_000 - reserve_for(40_000)


# --- Flow 2: the node misbehaving ---------------------------------------------------------


async def test_fault_fail_refunds(
    app_client: httpx.AsyncClient, sim: SimControl, shared_db: str
) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 300_000)
    await sim.faults(next_payment="fail")
    response = await pay(app_client, alice, await sim.invoice(100_000))
    assert response.status_code == 200
    assert response.json()["status"] == "failed"
    assert await balance(app_client, alice) == 300_000
    await assert_audit_clean(shared_db)


@pytest.mark.parametrize("outcome", ["succeed", "fail"])
async def test_fault_hold_keeps_the_reserve_until_released(
    app_client: httpx.AsyncClient, sim: SimControl, outcome: str, shared_db: str
) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 300_000)
    await sim.faults(next_payment="hold")
    invoice = await sim.invoice(100_000)
    response = await pay(app_client, alice, invoice)
    assert response.status_code == 202, response.text
    payment_hash = response.json()["payment_hash"]
    held = (await assets(app_client, alice))["BTC"]
    assert held["pending_msat"] == 100_000 + reserve_for(100_000)
    assert held["spendable_msat"] == 300_000 - 100_000 - reserve_for(100_000)
    assert held["balance_msat"] == 300_000
    await assert_audit_clean(shared_db)
    await sim.release(payment_hash, outcome)
    final = "succeeded" if outcome == "succeed" else "failed"
    await wait_payment(app_client, alice, payment_hash, final)
    after = (await assets(app_client, alice))["BTC"]
    assert after["pending_msat"] == 0
    expected = 300_000 - 100_000 - reserve_for(100_000) if final == "succeeded" else 300_000
    assert after["spendable_msat"] == expected
    await assert_audit_clean(shared_db)


@pytest.mark.parametrize(
    "fault",
    [
        "timeout_then_succeed",
        "error_500_then_succeed",
        "drop_then_succeed",
        "stale_failed_then_succeed",
    ],
)
async def test_ambiguous_answers_never_refund(
    app_client: httpx.AsyncClient, sim: SimControl, fault: str, shared_db: str
) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 300_000)
    await sim.faults(next_payment=fault)
    invoice = await sim.invoice(100_000)
    payment_hash = bolt11.decode(invoice).payment_hash
    response = await pay(app_client, alice, invoice)
    assert response.status_code in (200, 202), response.text
    assert response.json()["status"] in ("pending", "succeeded")
    await wait_payment(app_client, alice, payment_hash, "succeeded", timeout_s=20)
    assert await balance(app_client, alice) == 300_000 - 100_000 - reserve_for(100_000)
    history = (await app_client.post("/virtual_history", json={"user_id": alice})).json()
    assert "payment_refund" not in {e["kind"] for e in history["transactions"]}
    await assert_audit_clean(shared_db)


async def test_zero_preimage_is_not_a_success(
    app_client: httpx.AsyncClient, sim: SimControl, shared_db: str
) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 300_000)
    await sim.faults(next_payment="zero_preimage")
    invoice = await sim.invoice(100_000)
    payment_hash = bolt11.decode(invoice).payment_hash
    response = await pay(app_client, alice, invoice)
    assert response.status_code == 202 and response.json()["status"] == "pending"
    conn = await asyncpg.connect(shared_db)
    try:

        async def alerted() -> bool:
            return bool(
                await conn.fetchval(
                    "SELECT count(*) FROM alerts WHERE kind = 'invalid_preimage' "
                    "AND payment_hash = $1",
                    payment_hash,
                )
            )

        await wait_until(alerted, 10, "an invalid_preimage alert")
    finally:
        await conn.close()
    assert await payment_state(app_client, alice, payment_hash) == "pending"
    assert (await assets(app_client, alice))["BTC"]["pending_msat"] == (
        100_000 + reserve_for(100_000)
    )


async def test_routing_fee_is_within_the_reserve(
    app_client: httpx.AsyncClient, sim: SimControl
) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 300_000)
    await sim.faults(routing_fee_msat=4_000)
    try:
        response = await pay(app_client, alice, await sim.invoice(100_000))
    finally:
        await sim.faults(routing_fee_msat=0)
    assert response.json()["status"] == "succeeded"
    assert response.json()["fee_msat"] == reserve_for(100_000)
    assert await balance(app_client, alice) == 300_000 - 100_000 - reserve_for(100_000)


async def test_locked_node_moves_no_money(app_client: httpx.AsyncClient, sim: SimControl) -> None:
    alice, bob = new_user_id(), new_user_id()
    await fund(app_client, alice, 300_000)
    invoice = await sim.invoice(100_000)
    own = await new_invoice(app_client, bob, amt_msat=1_000)
    await sim.faults(locked=True)
    try:

        async def not_ready() -> bool:
            ready = await app_client.get("/readyz")
            return ready.status_code == 503 and ready.json()["node"]["state"] == "locked"

        await wait_until(not_ready, 10, "readyz to report the locked node")
        response = await pay(app_client, alice, invoice)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "node_unavailable"
        assert await balance(app_client, alice) == 300_000
        # Our own invoices settle inside the ledger: a locked node does not stop them.
        internal = await pay(app_client, alice, own["invoice"])
        assert internal.status_code == 200 and internal.json()["kind"] == "internal"
        assert await balance(app_client, bob) == 1_000
    finally:
        await sim.faults(locked=False)

    async def ready() -> bool:
        return (await app_client.get("/readyz")).status_code == 200

    await wait_until(ready, 10, "readyz to recover")
    assert (await pay(app_client, alice, invoice)).json()["status"] == "succeeded"


# --- Flow 3 and own invoices ----------------------------------------------------------------


async def new_invoice(client: httpx.AsyncClient, user_id: int, **body: Any) -> dict[str, Any]:
    response = await client.post("/virtual_lninvoice", json={"user_id": user_id, **body})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.parametrize(
    ("invoice_msat", "paid_msat"),
    [(70_000, None), (10_000, 15_000), (None, 12_345)],
    ids=["exact", "overpaid", "amountless"],
)
async def test_outside_payment_is_credited_once(
    app_client: httpx.AsyncClient,
    sim: SimControl,
    shared_db: str,
    invoice_msat: int | None,
    paid_msat: int | None,
) -> None:
    bob = new_user_id()
    created = await new_invoice(app_client, bob, amt_msat=invoice_msat, description="coffee")
    assert bolt11.decode(created["invoice"]).payment_hash == created["payment_hash"]
    paid = await sim.pay(created["invoice"], amt_msat=paid_msat)
    assert paid.status_code == 200, paid.text
    expected = paid_msat or invoice_msat

    async def credited() -> bool:
        return await balance(app_client, bob) == expected

    await wait_until(credited, 10, "the watcher to credit the invoice")
    again = await sim.pay(created["invoice"], amt_msat=paid_msat)
    assert again.status_code == 400  # the node claims an invoice once
    history = (await app_client.post("/virtual_history", json={"user_id": bob})).json()
    receipts = [e for e in history["transactions"] if e["kind"] == "invoice_receipt"]
    assert len(receipts) == 1 and receipts[0]["memo"] == "coffee"
    await assert_audit_clean(shared_db)


async def test_own_invoice_is_settled_in_the_ledger(
    app_client: httpx.AsyncClient, sim: SimControl, shared_db: str
) -> None:
    alice, bob, carol = new_user_id(), new_user_id(), new_user_id()
    await fund(app_client, alice, 200_000)
    await fund(app_client, carol, 200_000)
    created = await new_invoice(app_client, bob, amt_msat=50_000)
    before = await sim.state()
    paid = await pay(app_client, alice, created["invoice"])
    assert paid.status_code == 200, paid.text
    assert paid.json()["kind"] == "internal" and paid.json()["fee_msat"] == 0
    assert await balance(app_client, alice) == 150_000
    assert await balance(app_client, bob) == 50_000
    assert len((await sim.state())["payments"]) == len(before["payments"])  # no node call
    for payer in (alice, carol):
        twice = await pay(app_client, payer, created["invoice"])
        assert twice.status_code == 409
        assert twice.json()["error"]["code"] == "invoice_already_paid"
    own = await new_invoice(app_client, bob, amt_msat=1000)
    await fund(app_client, bob, 5000)
    self_pay = await pay(app_client, bob, own["invoice"])
    assert self_pay.json()["error"]["code"] == "self_payment"
    await assert_audit_clean(shared_db)


async def test_own_invoice_raced_inside_and_outside(
    app_client: httpx.AsyncClient, sim: SimControl, shared_db: str
) -> None:
    """Paid by a user and from outside at once: the payer pays once, the payee receives both
    (real money arrived from outside too)."""
    alice, bob = new_user_id(), new_user_id()
    await fund(app_client, alice, 200_000)
    created = await new_invoice(app_client, bob, amt_msat=60_000)
    inside, outside = await asyncio.gather(
        pay(app_client, alice, created["invoice"]), sim.pay(created["invoice"])
    )
    assert inside.status_code == 200 and outside.status_code == 200

    async def both_credited() -> bool:
        return await balance(app_client, bob) == 120_000

    await wait_until(both_credited, 10, "both receipts")
    assert await balance(app_client, alice) == 140_000
    await assert_audit_clean(shared_db)


async def test_rgb_invoice_paid_from_outside(
    app_client: httpx.AsyncClient, sim: SimControl, shared_db: str
) -> None:
    bob = new_user_id()
    created = await new_invoice(app_client, bob, asset_id=RGB_ASSET, asset_amount=100)
    assert created["amount_msat"] == 3_000_000
    paid = await sim.pay(created["invoice"], asset_amount=100)
    assert paid.status_code == 200, paid.text

    async def credited() -> bool:
        held = await assets(app_client, bob)
        return RGB_ASSET in held and held[RGB_ASSET]["balance"] == 100

    await wait_until(credited, 10, "the RGB receipt")
    assert (await assets(app_client, bob))["BTC"]["balance_msat"] == 3_000_000
    await assert_audit_clean(shared_db)


async def test_rgb_payment_out(
    app_client: httpx.AsyncClient, sim: SimControl, shared_db: str
) -> None:
    alice = new_user_id()
    await fund(app_client, alice, asset_amount=500, asset_id=RGB_ASSET)
    await fund(app_client, alice, 10_000_000)
    invoice = await sim.invoice(3_000_000, asset_id=RGB_ASSET, asset_amount=50)
    response = await pay(app_client, alice, invoice)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["asset_id"] == RGB_ASSET and body["asset_amount"] == 50
    held = await assets(app_client, alice)
    assert held[RGB_ASSET]["balance"] == 450
    assert held["BTC"]["balance_msat"] == 10_000_000 - 3_000_000 - reserve_for(3_000_000)
    await assert_audit_clean(shared_db)


async def test_rgb_onchain_invoice_credited_when_settled(
    app_client: httpx.AsyncClient, sim: SimControl, shared_db: str
) -> None:
    bob = new_user_id()
    response = await app_client.post(
        "/virtual_rgbinvoice",
        json={"user_id": str(bob), "asset_id": RGB_ASSET, "duration_seconds": 3600},
    )
    assert response.status_code == 200, response.text
    created = response.json()
    assert created["kind"] == "rgb_onchain" and created["recipient_id"]
    await sim.rgbsend(created["recipient_id"], RGB_ASSET, 777)

    async def credited() -> bool:
        held = await assets(app_client, bob)
        return RGB_ASSET in held and held[RGB_ASSET]["balance"] == 777

    await wait_until(credited, 30, "the settled RGB transfer to be credited")
    conn = await asyncpg.connect(shared_db)
    try:
        outpoint = await conn.fetchval(
            "SELECT outpoint FROM user_utxos WHERE user_id = $1 AND asset_id = $2", bob, RGB_ASSET
        )
    finally:
        await conn.close()
    assert outpoint and ":" in outpoint  # the coin records the real outpoint
    await assert_audit_clean(shared_db)


async def test_btc_rgbinvoice_is_a_lightning_invoice(app_client: httpx.AsyncClient) -> None:
    bob = new_user_id()
    response = await app_client.post(
        "/virtual_rgbinvoice",
        json={"user_id": str(bob), "asset_id": "BTC", "duration_seconds": 600},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    decoded = bolt11.decode(body["invoice"])
    assert body["kind"] == "bolt11" and decoded.amount_msat is None and decoded.expiry_s == 600
