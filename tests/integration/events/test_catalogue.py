"""The event catalogue against reality: every flow's outbox events, validated by their schemas.

Each flow runs through the real app and the simulated node; the test then reads the flow's users'
events from the outbox, renders each envelope exactly as the channels do, validates it against
its type's JSON Schema, and checks which types each user received (each exactly as expected)
and that each user's seq runs 1, 2, 3... without a gap.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import jsonschema
import pytest

from tests.e2e.payments.test_payments import new_invoice, pay, wait_payment
from tests.integration.api.test_api_transfer import balance, fund
from tests.lightning_support import SimControl
from tests.support import RGB_ASSET, answer_held_payments_soon, new_user_id, wait_until
from vnode.events.catalogue import EVENT_TYPES, NODE_EVENT_TYPES, schema_file_name, schema_for
from vnode.events.envelope import OUTBOX_COLUMNS, Event

Envelope = dict[str, Any]


@pytest.fixture
def sim(sim_node: str) -> SimControl:
    return SimControl(sim_node)


@pytest.fixture
async def db(shared_db: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(shared_db)
    yield conn
    await conn.close()


def validator(event_type: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema_for(event_type))


async def envelopes(conn: asyncpg.Connection, *users: int) -> dict[int, list[Envelope]]:
    rows = await conn.fetch(
        f"SELECT {OUTBOX_COLUMNS} FROM outbox o WHERE o.user_id = ANY($1::bigint[]) "
        "ORDER BY o.user_id, o.user_seq",
        list(users),
    )
    found: dict[int, list[Envelope]] = {user: [] for user in users}
    for row in rows:
        # Exactly what the channels send: the envelope, through its JSON encoding.
        found[row["user_id"]].append(json.loads(Event.from_row(row).encode()))
    return found


def check(found: dict[int, list[Envelope]], expected: dict[int, list[str]]) -> None:
    """Every envelope valid; each user got exactly the expected types; seq 1, 2, 3..."""
    for user, events in found.items():
        for envelope in events:
            errors = sorted(validator(envelope["type"]).iter_errors(envelope), key=str)
            assert not errors, (envelope, [e.message for e in errors])
            assert envelope["user_id"] == user
        assert Counter(e["type"] for e in events) == Counter(expected[user]), (user, events)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert len({e["id"] for e in events}) == len(events)


def data_of(events: list[Envelope], event_type: str) -> dict[str, Any]:
    [found] = [e["data"] for e in events if e["type"] == event_type]
    result: dict[str, Any] = found
    return result


# --- The catalogue itself ------------------------------------------------------------------


def test_every_type_has_a_valid_schema() -> None:
    assert len(set(EVENT_TYPES)) == len(EVENT_TYPES) == 10
    assert set(EVENT_TYPES) >= NODE_EVENT_TYPES
    for event_type in EVENT_TYPES:
        schema = schema_for(event_type)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["properties"]["type"] == {"const": event_type}
        assert schema["properties"]["data"]["additionalProperties"] is False
        assert schema_file_name(event_type) == f"{event_type}.schema.json"
    with pytest.raises(KeyError):
        schema_for("no.such.event")


def test_schemas_are_strict() -> None:
    good: Envelope = {
        "version": 1,
        "id": "0b8e7c52-8f57-4f7a-9d55-3f0e7d3c9a11",
        "type": "admin.credit",
        "user_id": 123456789,
        "seq": 1,
        "created_at": "2026-11-26T10:00:00.123456Z",
        "data": {
            "transaction_id": 7,
            "direction": "in",
            "asset_id": "BTC",
            "amount_msat": 1500,
            "amount_sats": 1,
            "reason": "welcome",
            "created_at": "2026-11-26T10:00:00.123456Z",
        },
    }
    check_schema = validator("admin.credit")
    assert check_schema.is_valid(good)
    bad_cases = [
        {**good, "extra": 1},
        {**good, "version": 2},
        {**good, "user_id": 0},
        {**good, "data": {**good["data"], "surprise": True}},
        {**good, "data": {k: v for k, v in good["data"].items() if k != "reason"}},
        {**good, "data": {**good["data"], "amount_msat": "1500"}},
        {**good, "data": {**good["data"], "asset_amount": 5}},  # RGB field on BTC
        {**good, "data": {**good["data"], "asset_id": RGB_ASSET}},  # RGB without asset_amount
    ]
    for bad in bad_cases:
        assert not check_schema.is_valid(bad), bad


# --- Every flow ------------------------------------------------------------------------------


async def test_transfer_btc_and_rgb(app_client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    alice, bob = new_user_id(), new_user_id()
    await fund(app_client, alice, 10_000_000)
    await fund(app_client, alice, asset_amount=500, asset_id=RGB_ASSET)
    for body in ({"amount_sats": 5000, "memo": "tip"}, {"asset_id": RGB_ASSET, "asset_amount": 7}):
        response = await app_client.post(
            "/virtual_transfer", json={"from_user_id": alice, "to_user_id": bob, **body}
        )
        assert response.status_code == 200, response.text
    found = await envelopes(db, alice, bob)
    check(
        found,
        {alice: ["admin.credit"] * 2 + ["transfer.completed"] * 2, bob: ["transfer.completed"] * 2},
    )
    out_btc, out_rgb = [e["data"] for e in found[alice] if e["type"] == "transfer.completed"]
    in_btc, in_rgb = [e["data"] for e in found[bob]]
    assert out_btc["direction"] == "out" and in_btc["direction"] == "in"
    assert out_btc["transfer_id"] == in_btc["transfer_id"]
    assert out_btc["amount_msat"] == 5_000_000 and out_btc["memo"] == "tip"
    assert out_btc["counterparty"] == f"vn_{bob}" and in_btc["counterparty"] == f"vn_{alice}"
    assert out_rgb["asset_amount"] == in_rgb["asset_amount"] == 7
    assert "amount_msat" not in out_rgb


async def test_admin_credit_and_debit(
    app_client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 9000)
    response = await app_client.post(
        "/admin/debit", json={"user_id": alice, "amount_msat": 2500, "reason": "correction"}
    )
    assert response.status_code == 200, response.text
    found = await envelopes(db, alice)
    check(found, {alice: ["admin.credit", "admin.debit"]})
    debit = data_of(found[alice], "admin.debit")
    assert debit["amount_msat"] == 2500 and debit["amount_sats"] == 2
    assert debit["direction"] == "out" and debit["reason"] == "correction"


async def test_external_payment_succeeds(
    app_client: httpx.AsyncClient, sim: SimControl, db: asyncpg.Connection
) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 1_000_000)
    response = await pay(app_client, alice, await sim.invoice(100_000))
    assert response.json()["status"] == "succeeded", response.text
    found = await envelopes(db, alice)
    check(found, {alice: ["admin.credit", "payment.pending", "payment.succeeded"]})
    pending = data_of(found[alice], "payment.pending")
    succeeded = data_of(found[alice], "payment.succeeded")
    assert pending["payment_id"] == succeeded["payment_id"]
    assert succeeded == response.json()  # the event carries what the API answered


async def test_failed_payment(
    app_client: httpx.AsyncClient, sim: SimControl, db: asyncpg.Connection
) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 300_000)
    await sim.faults(next_payment="fail")
    response = await pay(app_client, alice, await sim.invoice(100_000))
    assert response.json()["status"] == "failed", response.text
    found = await envelopes(db, alice)
    check(found, {alice: ["admin.credit", "payment.pending", "payment.failed"]})


async def test_held_payment_is_pending_then_final(
    app_client: httpx.AsyncClient,
    sim: SimControl,
    db: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answer_held_payments_soon(app_client, monkeypatch)
    alice = new_user_id()
    await fund(app_client, alice, 300_000)
    await sim.faults(next_payment="hold")
    response = await pay(app_client, alice, await sim.invoice(100_000))
    assert response.status_code == 202, response.text
    check(await envelopes(db, alice), {alice: ["admin.credit", "payment.pending"]})
    payment_hash = response.json()["payment_hash"]
    await sim.release(payment_hash, "succeed")
    await wait_payment(app_client, alice, payment_hash, "succeeded")
    check(
        await envelopes(db, alice),
        {alice: ["admin.credit", "payment.pending", "payment.succeeded"]},
    )


async def test_internal_payment_of_a_vnode_invoice(
    app_client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    alice, bob = new_user_id(), new_user_id()
    await fund(app_client, alice, 200_000)
    created = await new_invoice(app_client, bob, amt_msat=50_000)
    response = await pay(app_client, alice, created["invoice"])
    assert response.status_code == 200 and response.json()["kind"] == "internal", response.text
    found = await envelopes(db, alice, bob)
    check(found, {alice: ["admin.credit", "payment.succeeded"], bob: ["invoice.paid"]})
    paid = data_of(found[bob], "invoice.paid")
    assert paid["source"] == "internal" and paid["from_node_id"] == f"vn_{alice}"
    assert paid["amount_msat"] == 50_000 and paid["payment_hash"] == created["payment_hash"]
    assert data_of(found[alice], "payment.succeeded")["preimage"] is None  # see docs/EVENTS.md


async def test_invoices_paid_from_outside(
    app_client: httpx.AsyncClient, sim: SimControl, db: asyncpg.Connection
) -> None:
    bob, carol = new_user_id(), new_user_id()
    btc = await new_invoice(app_client, bob, amt_msat=70_000)
    rgb = await new_invoice(app_client, carol, asset_id=RGB_ASSET, asset_amount=100)
    assert (await sim.pay(btc["invoice"])).status_code == 200
    assert (await sim.pay(rgb["invoice"], asset_amount=100)).status_code == 200

    async def credited() -> bool:
        return (
            await balance(app_client, bob) == 70_000
            and await balance(app_client, carol, RGB_ASSET) == 100
        )

    await wait_until(credited, 15, "the watcher to credit both invoices")
    found = await envelopes(db, bob, carol)
    check(found, {bob: ["invoice.paid"], carol: ["invoice.paid"]})
    paid = data_of(found[bob], "invoice.paid")
    assert paid["source"] == "node" and paid["user_id"] == bob and paid["node_id"] == f"vn_{bob}"
    assert paid["amount_msat"] == 70_000 and paid["asset_amount"] is None
    paid_rgb = data_of(found[carol], "invoice.paid")
    assert paid_rgb["asset_id"] == RGB_ASSET and paid_rgb["asset_amount"] == 100


async def test_rgb_onchain_receipt(
    app_client: httpx.AsyncClient, sim: SimControl, db: asyncpg.Connection
) -> None:
    bob = new_user_id()
    response = await app_client.post(
        "/virtual_rgbinvoice",
        json={"user_id": str(bob), "asset_id": RGB_ASSET, "duration_seconds": 3600},
    )
    assert response.status_code == 200, response.text
    recipient_id = response.json()["recipient_id"]
    await sim.rgbsend(recipient_id, RGB_ASSET, 321)

    async def credited() -> bool:
        return await balance(app_client, bob, RGB_ASSET) == 321

    await wait_until(credited, 30, "the settled RGB transfer to be credited")
    found = await envelopes(db, bob)
    check(found, {bob: ["rgb.transfer.settled"]})
    settled = data_of(found[bob], "rgb.transfer.settled")
    assert settled["recipient_id"] == recipient_id and settled["asset_amount"] == 321
    assert settled["user_id"] == bob and settled["asset_id"] == RGB_ASSET


async def test_node_locked_then_unlocked_once(
    app_client: httpx.AsyncClient, sim: SimControl, db: asyncpg.Connection
) -> None:
    since = await db.fetchval("SELECT coalesce(max(id), 0) FROM outbox")

    async def node_events() -> list[Envelope]:
        rows = await db.fetch(
            f"SELECT {OUTBOX_COLUMNS} FROM outbox o WHERE o.user_id = 0 "
            "AND o.id > $1 ORDER BY o.id",
            since,
        )
        return [json.loads(Event.from_row(row).encode()) for row in rows]

    async def seen(count: int) -> bool:
        return len(await node_events()) >= count

    await sim.faults(locked=True)
    try:
        await wait_until(lambda: seen(1), 15, "node.locked")
    finally:
        await sim.faults(locked=False)
    await wait_until(lambda: seen(2), 15, "node.unlocked")

    async def ready() -> bool:
        return (await app_client.get("/readyz")).status_code == 200

    await wait_until(ready, 10, "readyz to recover")
    events = await node_events()
    assert [e["type"] for e in events] == ["node.locked", "node.unlocked"]
    for envelope in events:
        errors = [e.message for e in validator(envelope["type"]).iter_errors(envelope)]
        assert not errors, (envelope, errors)
        assert envelope["user_id"] == 0
    assert events[0]["data"] == {"state": "locked", "previous_state": "ready"}
    assert events[1]["data"] == {"state": "ready", "previous_state": "locked"}
    assert events[1]["seq"] == events[0]["seq"] + 1
