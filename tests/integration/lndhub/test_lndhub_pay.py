"""/payinvoice: through vnode's payment path, once per (account, invoice), never a 5xx on a
repeat, pending reported as pending, internal invoices settled in the ledger once."""

from __future__ import annotations

import asyncio
import hashlib
import time

import asyncpg
import httpx
import pytest
from pydantic import TypeAdapter

from tests.integration.lndhub.conftest import Style, fund, new_wallet
from tests.lightning_support import SimControl, assert_audit_clean
from tests.support import answer_held_payments_soon, wait_until
from vnode.lightning import bolt11
from vnode.lndhub import models
from vnode.payments.policy import settings_reserve_msat
from vnode.settings import Settings


def reserve_for(amount_msat: int) -> int:
    return settings_reserve_msat(Settings.model_construct(), amount_msat)


async def payment_rows(conn: asyncpg.Connection, payment_hash: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT user_id, status, kind FROM ln_payments WHERE payment_hash = $1 ORDER BY id",
        payment_hash,
    )
    return rows


@pytest.mark.parametrize("style", ["bluewallet", "zeus", "alby", "form"])
async def test_pay_an_outside_invoice_and_repeat_it(
    app_client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    sim: SimControl,
    shared_conn: asyncpg.Connection,
    style: Style,
) -> None:
    _, wallet = await new_wallet(app_client, anonymous, style=style, funded_msat=1_000_000)
    invoice = await sim.invoice(50_000)
    payment_hash = bolt11.decode(invoice).payment_hash
    paid = await wallet.payinvoice(invoice)
    assert paid.status_code == 200, paid.text
    body = paid.json()
    TypeAdapter(models.Paid).validate_python(body)
    assert body["payment_error"] == "" and "error" not in body
    assert hashlib.sha256(bytes.fromhex(body["payment_preimage"])).hexdigest() == payment_hash
    assert body["payment_hash"] == {"type": "Buffer", "data": list(bytes.fromhex(payment_hash))}
    spent_msat = body["payment_route"]["total_amt_msat"]
    assert body["payment_route"]["total_amt_msat"] - body["payment_route"]["total_fees_msat"] == (
        50_000
    )
    assert await wallet.balance_sats() == (1_000_000 - spent_msat) // 1000
    (tx,) = (await wallet.get("/gettxs", {"limit": 10, "offset": 0})).json()
    TypeAdapter(models.Tx).validate_python(tx)
    assert tx["type"] == "paid_invoice" and tx["value"] == -(-spent_msat // 1000)
    assert tx["payment_preimage"] == body["payment_preimage"]
    # The repeat (a retry, a double tap) answers the same payment and pays nothing.
    again = await wallet.payinvoice(invoice)
    assert again.status_code == 200 and again.json() == body
    assert [r["status"] for r in await payment_rows(shared_conn, payment_hash)] == ["succeeded"]
    assert await wallet.balance_sats() == (1_000_000 - spent_msat) // 1000


async def test_concurrent_repeats_pay_once(
    app_client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    sim: SimControl,
    shared_conn: asyncpg.Connection,
    shared_db: str,
) -> None:
    _, wallet = await new_wallet(app_client, anonymous, funded_msat=2_000_000)
    invoice = await sim.invoice(100_000)
    payment_hash = bolt11.decode(invoice).payment_hash
    answers = await asyncio.gather(*(wallet.payinvoice(invoice) for _ in range(6)))
    assert all(a.status_code < 500 for a in answers), [a.text for a in answers]
    # Each answers the one payment: paid, or (a racer that came before it settled) in flight.
    assert {a.status_code for a in answers} <= {200, 202}
    assert 200 in {a.status_code for a in answers}
    assert [r["status"] for r in await payment_rows(shared_conn, payment_hash)] == ["succeeded"]
    final = await wallet.payinvoice(invoice)
    assert final.status_code == 200
    spent = final.json()["payment_route"]["total_amt_msat"]
    assert await wallet.balance_sats() == (2_000_000 - spent) // 1000
    await assert_audit_clean(shared_db)


async def test_a_held_payment_is_reported_in_flight_and_never_paid_twice(
    app_client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    sim: SimControl,
    shared_conn: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answer_held_payments_soon(app_client, monkeypatch)
    _, wallet = await new_wallet(app_client, anonymous, style="zeus", funded_msat=1_000_000)
    await sim.faults(next_payment="hold")
    invoice = await sim.invoice(200_000)
    payment_hash = bolt11.decode(invoice).payment_hash
    held = await wallet.payinvoice(invoice)
    assert held.status_code == 202, held.text
    TypeAdapter(models.InTransit).validate_python(held.json())
    assert held.json()["error"] is True and held.json()["code"] == 9
    held_sats = (1_000_000 - 200_000 - reserve_for(200_000)) // 1000
    assert await wallet.balance_sats() == held_sats
    (pending,) = (await wallet.get("/gettxs")).json()
    assert pending["memo"] == "Payment in transition"
    # Repeats while in flight: the same answer, no second payment.
    repeats = await asyncio.gather(*(wallet.payinvoice(invoice) for _ in range(3)))
    assert [r.status_code for r in repeats] == [202, 202, 202]
    assert [r["status"] for r in await payment_rows(shared_conn, payment_hash)] == ["pending"]
    await sim.release(payment_hash, "succeed")

    async def settled() -> bool:
        return (await wallet.payinvoice(invoice)).status_code == 200

    await wait_until(settled, 15, "the released payment to answer paid")
    assert [r["status"] for r in await payment_rows(shared_conn, payment_hash)] == ["succeeded"]


async def test_a_failed_payment_is_code_10_refunded_and_may_be_tried_again(
    app_client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    sim: SimControl,
    shared_conn: asyncpg.Connection,
) -> None:
    _, wallet = await new_wallet(app_client, anonymous, style="alby", funded_msat=500_000)
    await sim.faults(next_payment="fail")
    invoice = await sim.invoice(40_000)
    payment_hash = bolt11.decode(invoice).payment_hash
    failed = await wallet.payinvoice(invoice)
    assert failed.status_code == 400, failed.text
    assert failed.json()["error"] is True and failed.json()["code"] == 10
    assert await wallet.balance_sats() == 500
    retried = await wallet.payinvoice(invoice)
    assert retried.status_code == 200, retried.text
    statuses = [r["status"] for r in await payment_rows(shared_conn, payment_hash)]
    assert statuses == ["failed", "succeeded"]


async def test_not_enough_balance_is_code_2_and_not_remembered(
    app_client: httpx.AsyncClient, anonymous: httpx.AsyncClient, sim: SimControl
) -> None:
    user, wallet = await new_wallet(app_client, anonymous, funded_msat=10_000)
    invoice = await sim.invoice(100_000)
    refused = await wallet.payinvoice(invoice)
    assert refused.status_code == 400 and refused.json()["code"] == 2, refused.text
    await fund(app_client, user, 1_000_000)
    # The same invoice after a top-up pays: a refusal is not replayed.
    paid = await wallet.payinvoice(invoice)
    assert paid.status_code == 200, paid.text


async def test_internal_invoice_is_settled_in_the_ledger_once(
    app_client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    shared_conn: asyncpg.Connection,
    shared_db: str,
) -> None:
    _, alice = await new_wallet(app_client, anonymous, funded_msat=300_000)
    _, bob = await new_wallet(app_client, anonymous, style="zeus")
    _, carol = await new_wallet(app_client, anonymous, style="form", funded_msat=300_000)
    created = await bob.addinvoice(120, "lunch")
    invoice = created["payment_request"]
    payment_hash = created["hash"]
    answers = await asyncio.gather(*(alice.payinvoice(invoice) for _ in range(4)))
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert len({a.text for a in answers}) == 1
    assert await alice.balance_sats() == 180  # no fee inside the ledger
    assert await bob.balance_sats() == 120
    (entry,) = (await bob.get("/getuserinvoices")).json()
    assert entry["ispaid"] is True
    # Someone else paying it afterwards: already paid (code 7), nothing moves.
    late = await carol.payinvoice(invoice)
    assert late.status_code == 400 and late.json()["code"] == 7, late.text
    assert await carol.balance_sats() == 300 and await bob.balance_sats() == 120
    rows = await payment_rows(shared_conn, payment_hash)
    assert [(r["status"], r["kind"]) for r in rows] == [("succeeded", "internal")]
    await assert_audit_clean(shared_db)


async def test_amountless_invoice_takes_amount(
    app_client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    _, alice = await new_wallet(app_client, anonymous, funded_msat=100_000)
    _, bob = await new_wallet(app_client, anonymous)
    invoice = (await bob.addinvoice(0))["payment_request"]
    missing = await alice.payinvoice(invoice)  # BlueWallet's amount 0
    assert missing.status_code == 400 and missing.json()["code"] == 8
    paid = await alice.payinvoice(invoice, amount=33)
    assert paid.status_code == 200, paid.text
    assert await bob.balance_sats() == 33 and await alice.balance_sats() == 67
    (entry,) = (await bob.get("/getuserinvoices")).json()
    assert entry["amt"] == 33 and entry["ispaid"] is True


async def test_payinvoice_argument_refusals(
    app_client: httpx.AsyncClient, anonymous: httpx.AsyncClient, sim: SimControl
) -> None:
    _, wallet = await new_wallet(app_client, anonymous, funded_msat=100_000)
    for body, code in (
        ({}, 8),
        ({"invoice": "lnbc1notaninvoice"}, 4),
        ({"invoice": 42}, 8),
        ({"invoice": await sim.invoice(), "amount": "-3"}, 8),
    ):
        response = await wallet.post("/payinvoice", body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"] is True and response.json()["code"] == code, body
    own = (await wallet.addinvoice(5))["payment_request"]
    self_pay = await wallet.payinvoice(own)
    assert self_pay.status_code == 400 and self_pay.json()["code"] == 8
    assert await wallet.balance_sats() == 100


async def test_payinvoice_answers_in_flight_by_its_deadline_and_the_payment_goes_on(
    app_client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    sim: SimControl,
    shared_conn: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = app_client.app.state.services.settings  # type: ignore[attr-defined]
    # Shorter than the payment path's own wait (payment_wait_s, 1.5 s in the tests), so the
    # answer comes from /payinvoice's deadline while the payment is still being waited for.
    monkeypatch.setattr(settings, "lndhub_pay_wait_s", 0.5)
    _, wallet = await new_wallet(app_client, anonymous, funded_msat=1_000_000)
    await sim.faults(next_payment="hold")
    invoice = await sim.invoice(70_000)
    payment_hash = bolt11.decode(invoice).payment_hash
    started = time.monotonic()
    answer = await wallet.payinvoice(invoice)
    assert time.monotonic() - started < 2.5
    assert answer.status_code == 202 and answer.json()["code"] == 9, answer.text
    assert [r["status"] for r in await payment_rows(shared_conn, payment_hash)] == ["pending"]
    await sim.release(payment_hash, "succeed")

    async def paid() -> bool:
        return (await wallet.payinvoice(invoice)).status_code == 200

    await wait_until(paid, 15, "the payment to answer paid")
    assert [r["status"] for r in await payment_rows(shared_conn, payment_hash)] == ["succeeded"]


async def test_gettxs_pages_past_100(
    app_client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    _, alice = await new_wallet(app_client, anonymous, funded_msat=1_000_000)
    _, bob = await new_wallet(app_client, anonymous, style="zeus")
    # Made side by side (each is a call to the node), then paid in order: gettxs is newest first.
    made = await asyncio.gather(*(bob.addinvoice(1 + i % 3, f"item {i}") for i in range(105)))
    for invoice in made:
        assert (await alice.payinvoice(invoice["payment_request"])).status_code == 200
    everything = (await alice.get("/gettxs")).json()
    assert len(everything) == 105
    assert everything[0]["memo"] == "item 104" and everything[-1]["memo"] == "item 0"
    pages = []
    for offset in range(0, 105, 40):
        pages.extend((await alice.get("/gettxs", {"limit": 40, "offset": offset})).json())
    assert pages == everything
    assert (await alice.get("/gettxs", {"limit": 10, "offset": 0})).json() == everything[:10]
    assert (await alice.get("/gettxs", {"limit": 10, "offset": 100})).json() == everything[100:]
    assert sum(tx["value"] for tx in everything) == 1_000 - await alice.balance_sats()
