"""Outgoing webhooks through the app in-process: subscriptions (admin API), the SSRF guard,
signed deliveries of every event type in per-user order, Standard Webhooks signatures checked by
the third-party `standardwebhooks` library, secret rotation, retries. Real PostgreSQL, the
simulated node, and a real HTTP receiver. With vnode processes (the `vnode webhooks` command, dead
letters listed and retried by API and command, a dispatcher killed mid-delivery):
tests/e2e/events/test_webhooks.py."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from standardwebhooks import Webhook, WebhookVerificationError

from harness.postgres import DatabaseStock
from tests.conftest import make_settings, node_settings
from tests.integration.api.test_api_transfer import fund
from tests.integration.events.webhook_receiver import Delivery, WebhookReceiver
from tests.lightning_support import SimControl, assert_audit_clean
from tests.support import (
    RGB_ASSET,
    bearer,
    in_process,
    new_user_id,
    wait_until,
)
from vnode.apikeys import Scope, create_key
from vnode.app import create_app
from vnode.domain.signing import SIGNATURE_HEADER, SignatureError
from vnode.domain.signing import verify as verify_legacy
from vnode.events import endpoints
from vnode.events.catalogue import EVENT_TYPES
from vnode.events.envelope import Event
from vnode.events.webhooks import (
    Endpoint,
    WebhookChannel,
    signing_key,
    standard_headers,
    standard_secret,
)
from vnode.settings import Settings

LOCAL = frozenset({"127.0.0.1"})


@dataclass
class Vnode:
    client: httpx.AsyncClient
    app: FastAPI
    dsn: str

    @property
    def pool(self) -> asyncpg.Pool:
        pool: asyncpg.Pool = self.app.state.services.pool
        return pool


@asynccontextmanager
async def running(settings: Settings, dsn: str) -> AsyncIterator[Vnode]:
    app = create_app(settings, dsn)
    async with in_process(app) as client:
        yield Vnode(client, app, dsn)


def settings_for(tmp_path: Path, sim_node: str, **overrides: object) -> Settings:
    return make_settings(
        tmp_path,
        **{
            **node_settings(sim_node),
            "webhook_allow_hosts": "127.0.0.1",
            "events_interval_s": 0.02,
            **overrides,
        },
    )


@pytest.fixture
async def vnode(fresh_db: str, sim_node: str, tmp_path: Path) -> AsyncIterator[Vnode]:
    """vnode in-process on a database of its own (so every delivery seen is this test's), its
    dispatcher running every 20 ms, 127.0.0.1 allowed as a webhook host."""
    async with running(settings_for(tmp_path, sim_node), fresh_db) as node:
        yield node


@pytest.fixture(scope="module")
async def refusing_vnode(
    database_stock: DatabaseStock, sim_node: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Vnode]:
    """One such vnode for the refusal cases of this module, which store nothing: each case
    checks that the list of webhooks is still empty."""
    dsn = await database_stock.take()
    settings = settings_for(tmp_path_factory.mktemp("refusals"), sim_node)
    async with running(settings, dsn) as node:
        yield node
    await database_stock.give_back(dsn)


async def subscribe(
    client: httpx.AsyncClient, receiver: WebhookReceiver, events: list[str] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"url": receiver.url}
    if events is not None:
        body["events"] = events
    response = await client.post("/admin/webhooks", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    receiver.secret = created["secret"]
    return created


async def outbox(dsn: str, event_type: str | None = None) -> list[tuple[str, str, int, int]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT event_id, event_type, user_id, user_seq FROM outbox "
            "WHERE $1::text IS NULL OR event_type = $1 ORDER BY id",
            event_type,
        )
    finally:
        await conn.close()
    return [(str(r["event_id"]), r["event_type"], r["user_id"], r["user_seq"]) for r in rows]


async def conn_value(dsn: str, query: str, *args: object) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


def datetime_now() -> datetime:
    return datetime.now(UTC)


async def deliveries(dsn: str, webhook_id: int) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(
            await conn.fetch(
                "SELECT user_id, user_seq, status, attempts, last_error FROM event_deliveries "
                "WHERE channel = $1 ORDER BY user_id, user_seq",
                f"webhook:{webhook_id}",
            )
        )
    finally:
        await conn.close()


def assert_in_order_once(receiver: WebhookReceiver) -> None:
    """Each event once, signed, with its id in the header, and every user's events by seq."""
    ids = receiver.ids()
    assert len(ids) == len(set(ids)), "an event arrived twice"
    assert receiver.bad_signatures == []
    for r in receiver.received:
        assert r.header_event_id == r.id and r.header_event_type == r.type
    for user_id, seqs in receiver.seqs_by_user().items():
        assert seqs == sorted(seqs), f"user {user_id}'s events out of order: {seqs}"


async def transfer(client: httpx.AsyncClient, from_user: int, to_user: int, sats: int) -> None:
    response = await client.post(
        "/virtual_transfer",
        json={"from_user_id": from_user, "to_user_id": to_user, "amount_sats": sats},
    )
    assert response.status_code == 200, response.text


# --- subscriptions --------------------------------------------------------------------------


async def test_create_list_delete_and_the_secret_shown_once(vnode: Vnode) -> None:
    client = vnode.client
    created = (
        await client.post(
            "/admin/webhooks",
            json={
                "url": "http://127.0.0.1:9/hook",
                "events": ["invoice.paid", "transfer.completed"],
                "description": "the bot",
            },
        )
    ).json()
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 40
    # Known types, in the catalogue's order, each once.
    assert created["events"] == ["transfer.completed", "invoice.paid"]
    everything = await client.post("/admin/webhooks", json={"url": "https://127.0.0.1/x"})
    assert everything.status_code == 201 and everything.json()["events"] == []

    listed = await client.get("/admin/webhooks")
    assert listed.status_code == 200
    assert created["secret"] not in listed.text and everything.json()["secret"] not in listed.text
    by_id = {w["id"]: w for w in listed.json()["webhooks"]}
    assert set(by_id) == {created["id"], everything.json()["id"]}
    assert "secret" not in by_id[created["id"]]
    assert by_id[created["id"]]["url"] == "http://127.0.0.1:9/hook"
    assert by_id[created["id"]]["description"] == "the bot"

    removed = await client.delete(f"/admin/webhooks/{created['id']}")
    assert removed.status_code == 200 and removed.json()["removed_at"]
    assert created["secret"] not in removed.text
    listed_ids = [w["id"] for w in (await client.get("/admin/webhooks")).json()["webhooks"]]
    assert listed_ids == [everything.json()["id"]]
    again = await client.delete(f"/admin/webhooks/{created['id']}")
    assert again.status_code == 404 and again.json()["error"]["code"] == "unknown_webhook"
    assert (await client.delete("/admin/webhooks/999999")).status_code == 404
    retry = await client.post("/admin/webhooks/retry", json={"webhook_id": created["id"]})
    assert retry.status_code == 404 and retry.json()["error"]["code"] == "unknown_webhook"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "http://127.0.0.1:9/", "events": ["transfer.done"]}, "invalid_event_type"),
        ({"url": "http://127.0.0.1:9/", "events": "transfer.completed"}, "invalid_event_type"),
        ({"events": []}, "invalid_request"),
        ({"url": "http://127.0.0.1:9/", "secret": "mine"}, "invalid_request"),
        ({"url": 42}, "invalid_url"),
        ({"url": "127.0.0.1:9/hook"}, "invalid_url"),
        ({"url": "http://127.0.0.1:99999/"}, "invalid_url"),
        ({"url": "http://127.0.0.1:0/"}, "invalid_url"),
        ({"url": "http://a..example.com/"}, "invalid_url"),
        ({"url": "http://" + "a" * 70 + ".example.com/"}, "invalid_url"),
        ({"url": "http://127.0.0.1/#frag"}, "invalid_url"),
        ({"url": "http://127.0.0.1/ x"}, "invalid_url"),
        ({"url": "http://127.0.0.1/" + "x" * 3000}, "invalid_url"),
        # Allowing 127.0.0.1 allows that host, nothing else that is private.
        ({"url": "http://localhost:9/"}, "unsafe_url"),
        ({"url": "http://127.0.0.2:9/"}, "unsafe_url"),
        ({"url": "http://10.0.0.1/"}, "unsafe_url"),
    ],
)
async def test_refused_subscriptions_store_nothing(
    refusing_vnode: Vnode, body: dict[str, Any], code: str
) -> None:
    client = refusing_vnode.client
    response = await client.post("/admin/webhooks", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["request_id"]
    assert (await client.get("/admin/webhooks")).json()["webhooks"] == []


# Without VNODE_WEBHOOK_ALLOW_HOSTS (the session app): nothing inside the network is reachable.
@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://127.0.0.1:8080/hook", "unsafe_url"),
        ("http://10.0.0.1/hook", "unsafe_url"),
        ("http://192.168.1.10/hook", "unsafe_url"),
        ("http://169.254.169.254/latest/meta-data/", "unsafe_url"),  # cloud metadata
        ("http://[::1]:8080/hook", "unsafe_url"),
        ("http://[::ffff:127.0.0.1]/hook", "unsafe_url"),
        ("http://[fe80::1]/hook", "unsafe_url"),
        ("http://0.0.0.0:8080/hook", "unsafe_url"),
        ("http://100.64.0.1/hook", "unsafe_url"),  # carrier-grade NAT
        ("http://localhost:8080/hook", "unsafe_url"),
        ("http://2130706433/hook", "unsafe_url"),  # 127.0.0.1 as one decimal number
        ("http://no-such-host.invalid/hook", "unsafe_url"),
        ("https://user:password@example.com/hook", "invalid_url"),
        ("ftp://example.com/hook", "invalid_url"),
        ("file:///etc/passwd", "invalid_url"),
        ("http:///hook", "invalid_url"),
    ],
)
async def test_ssrf_targets_are_refused_without_the_allow_list(
    app_client: httpx.AsyncClient, url: str, code: str
) -> None:
    response = await app_client.post("/admin/webhooks", json={"url": url})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    if code == "unsafe_url" and not url.startswith("http://no-such-host"):
        assert "VNODE_WEBHOOK_ALLOW_HOSTS" in response.json()["error"]["message"]
    listed = (await app_client.get("/admin/webhooks")).json()["webhooks"]
    assert url not in [w["url"] for w in listed]


async def test_only_admin_keys_manage_webhooks(vnode: Vnode) -> None:
    conn = await asyncpg.connect(vnode.dsn)
    try:
        keys = {
            scope: (await create_key(conn, f"k-{scope.value}", scope))[1]
            for scope in (Scope.READ, Scope.RECEIVE, Scope.SPEND)
        }
    finally:
        await conn.close()
    calls = [
        ("POST", "/admin/webhooks", {"url": "http://127.0.0.1:9/"}),
        ("GET", "/admin/webhooks", None),
        ("DELETE", "/admin/webhooks/1", None),
        ("GET", "/admin/webhooks/failed", None),
        ("POST", "/admin/webhooks/retry", {}),
        ("POST", "/admin/webhooks/1/rotate", {}),
    ]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=vnode.app), base_url="http://vnode"
    ) as anonymous:
        for method, path, body in calls:
            response = await anonymous.request(method, path, json=body)
            assert response.status_code == 401, (method, path)
            assert response.json()["error"]["code"] == "unauthorized"
            for scope, key in keys.items():
                response = await anonymous.request(method, path, json=body, headers=bearer(key))
                assert response.status_code == 403, (method, path, scope)
                assert response.json()["error"]["code"] == "forbidden"
    assert (await vnode.client.get("/admin/webhooks")).json()["webhooks"] == []

    spec = (await vnode.client.get("/openapi.json")).json()
    create = spec["paths"]["/admin/webhooks"]["post"]
    assert "scope: admin" in create["summary"]
    assert "unsafe_url" in create["responses"]["422"]["description"]
    assert "invalid_event_type" in create["responses"]["422"]["description"]
    for path, method in (
        ("/admin/webhooks", "get"),
        ("/admin/webhooks/{webhook_id}", "delete"),
        ("/admin/webhooks/failed", "get"),
        ("/admin/webhooks/retry", "post"),
        ("/admin/webhooks/{webhook_id}/rotate", "post"),
    ):
        assert "scope: admin" in spec["paths"][path][method]["summary"]
        assert "403" in spec["paths"][path][method]["responses"]


# --- deliveries -----------------------------------------------------------------------------


async def test_every_event_type_arrives_once_signed_and_in_order(
    vnode: Vnode, sim_node: str
) -> None:
    client, sim = vnode.client, SimControl(sim_node)
    with WebhookReceiver() as everything, WebhookReceiver() as transfers:
        await subscribe(client, everything)
        await subscribe(client, transfers, ["transfer.completed"])
        alice, bob = new_user_id(), new_user_id()

        await fund(client, alice, 2_000_000)  # admin.credit
        rgb = await client.post(
            "/virtual_rgbinvoice",
            json={"user_id": str(bob), "asset_id": RGB_ASSET, "duration_seconds": 3600},
        )
        assert rgb.status_code == 200, rgb.text
        await sim.rgbsend(rgb.json()["recipient_id"], RGB_ASSET, 7)  # rgb.transfer.settled
        await transfer(client, alice, bob, 1_000)  # transfer.completed, twice
        await transfer(client, bob, alice, 10)
        paid = await client.post(
            "/virtual_sendpayment",
            json={  # payment.pending, .succeeded
                "user_id": alice,
                "invoice": await sim.invoice(100_000),
            },
        )
        assert paid.status_code == 200 and paid.json()["status"] == "succeeded", paid.text
        await sim.faults(next_payment="fail")
        failed = await client.post(
            "/virtual_sendpayment",
            json={  # payment.failed
                "user_id": alice,
                "invoice": await sim.invoice(50_000),
            },
        )
        assert failed.status_code == 200 and failed.json()["status"] == "failed", failed.text
        invoice = await client.post("/virtual_lninvoice", json={"user_id": bob, "amt_msat": 25_000})
        assert invoice.status_code == 200, invoice.text
        assert (await sim.pay(invoice.json()["invoice"])).status_code == 200  # invoice.paid
        debit = await client.post(
            "/admin/debit",
            json={  # admin.debit
                "user_id": alice,
                "amount_msat": 1_000,
                "reason": "correction",
            },
        )
        assert debit.status_code == 200, debit.text

        async def settled() -> bool:
            types = {t for _, t, _, _ in await outbox(vnode.dsn)}
            return {"invoice.paid", "rgb.transfer.settled"} <= types

        await wait_until(settled, 20, "the invoice and the RGB transfer to be credited")

        await sim.faults(locked=True)  # node.locked, then node.unlocked (user 0)
        try:

            async def locked() -> bool:
                return bool(await outbox(vnode.dsn, "node.locked"))

            await wait_until(locked, 10, "the node lock to be announced")
        finally:
            await sim.faults(locked=False)

        async def unlocked() -> bool:
            return bool(await outbox(vnode.dsn, "node.unlocked"))

        await wait_until(unlocked, 10, "the node unlock to be announced")

        produced = await outbox(vnode.dsn)
        assert {t for _, t, _, _ in produced} == set(EVENT_TYPES)

        async def all_arrived() -> bool:
            return len(everything.received) >= len(produced)

        await wait_until(all_arrived, 10, "every event to reach the receiver")
        wanted = await outbox(vnode.dsn, "transfer.completed")

        async def transfers_arrived() -> bool:
            return len(transfers.received) >= len(wanted)

        await wait_until(transfers_arrived, 10, "the transfers to reach the filtered receiver")

    assert sorted(everything.ids()) == sorted(e for e, _, _, _ in produced)
    assert_in_order_once(everything)
    assert [
        (r.id, r.type, r.user_id, r.seq) for r in everything.received if r.user_id == alice
    ] == [e for e in produced if e[2] == alice]
    # The filtered endpoint: only transfer.completed, each once.
    assert sorted(transfers.ids()) == sorted(e for e, _, _, _ in wanted)
    assert {r.type for r in transfers.received} == {"transfer.completed"}
    assert_in_order_once(transfers)
    assert everything.failed_requests == transfers.failed_requests == 0
    await assert_audit_clean(vnode.dsn)


async def test_a_failing_receiver_gets_everything_in_order_once_it_recovers(vnode: Vnode) -> None:
    with WebhookReceiver() as receiver:
        hook = await subscribe(vnode.client, receiver)
        alice, bob = new_user_id(), new_user_id()
        receiver.fail_user(alice)  # alice's deliveries answer 500 for now, bob's go through
        for amount in (1_000, 2_000, 3_000):
            await fund(vnode.client, alice, amount)
        await fund(vnode.client, bob, 5_000)
        await transfer(vnode.client, bob, new_user_id(), 1)

        async def alice_rows() -> list[asyncpg.Record]:
            return [r for r in await deliveries(vnode.dsn, hook["id"]) if r["user_id"] == alice]

        async def bob_served_alice_failing() -> bool:
            rows = await alice_rows()
            return (
                len(receiver.seqs_by_user().get(bob, [])) == 2
                and len(rows) == 3
                and rows[0]["attempts"] >= 1
            )

        await wait_until(bob_served_alice_failing, 10, "bob's events while alice's fail")
        # Alice's first event is retried with backoff; her later ones wait behind it, untried.
        rows = await alice_rows()
        assert [r["user_seq"] for r in rows] == [1, 2, 3]
        assert rows[0]["status"] == "pending" and rows[0]["attempts"] >= 1
        assert rows[0]["last_error"] == "HTTP 500"
        assert [(r["status"], r["attempts"]) for r in rows[1:]] == [("pending", 0)] * 2
        assert alice not in receiver.seqs_by_user()

        receiver.fail_user(alice, on=False)

        async def alice_served() -> bool:
            rows = await deliveries(vnode.dsn, hook["id"])  # (recorded after the 200)
            return len(receiver.seqs_by_user().get(alice, [])) == 3 and {
                r["status"] for r in rows
            } == {"delivered"}

        await wait_until(alice_served, 10, "alice's events after the receiver recovered")
    assert receiver.seqs_by_user()[alice] == [1, 2, 3]
    assert_in_order_once(receiver)


async def test_removed_endpoint_receives_nothing_more(vnode: Vnode) -> None:
    with WebhookReceiver() as kept, WebhookReceiver() as dropped:
        await subscribe(vnode.client, kept)
        gone = await subscribe(vnode.client, dropped)
        dropped.fail_all()
        alice = new_user_id()
        await fund(vnode.client, alice, 1_000)

        async def failing() -> bool:
            return dropped.failed_requests >= 1 and len(kept.received) == 1

        await wait_until(failing, 10, "the first event")
        assert (await vnode.client.delete(f"/admin/webhooks/{gone['id']}")).status_code == 200
        dropped.fail_all(on=False)
        await fund(vnode.client, alice, 2_000)

        async def second() -> bool:
            return len(kept.received) == 2

        await wait_until(second, 10, "the second event at the kept endpoint")
        rows = await deliveries(vnode.dsn, gone["id"])
        assert [(r["status"], r["last_error"]) for r in rows] == [("dead", "endpoint removed")]
        # Removed endpoints' letters are neither listed nor retried.
        assert (await vnode.client.get("/admin/webhooks/failed")).json()["failed"] == []
        retried = await vnode.client.post("/admin/webhooks/retry", json={})
        assert retried.status_code == 200 and retried.json() == {"requeued": 0}
    assert dropped.received == []


# --- Standard Webhooks signatures and secret rotation ---------------------------------------


def signatures(delivery: Delivery) -> list[str]:
    return delivery.headers["webhook-signature"].split(" ")


def verifies(secret: str | bytes, delivery: Delivery) -> bool:
    """The third-party library's verdict on a delivery, with the secret as a receiver has it."""
    try:
        Webhook(secret).verify(delivery.body, delivery.headers)
    except WebhookVerificationError:
        return False
    return True


async def next_delivery(
    receiver: WebhookReceiver, client: httpx.AsyncClient, user_id: int
) -> Delivery:
    """Make one event (an admin credit) and return its delivery as the receiver got it."""
    before = len(receiver.deliveries)
    await fund(client, user_id, 1_000)

    async def arrived() -> bool:
        return len(receiver.deliveries) > before

    await wait_until(arrived, 10, "the delivery")
    return receiver.deliveries[before]


async def delivery_until(
    receiver: WebhookReceiver,
    client: httpx.AsyncClient,
    user_id: int,
    wanted: Callable[[Delivery], bool],
    timeout_s: float = 15,
) -> Delivery:
    """Deliveries one after another until one is `wanted`; it is returned."""
    deadline = time.monotonic() + timeout_s
    delivery = await next_delivery(receiver, client, user_id)
    while not wanted(delivery):
        assert time.monotonic() < deadline, f"no delivery as wanted in {timeout_s} s"
        delivery = await next_delivery(receiver, client, user_id)
    return delivery


async def test_deliveries_carry_standard_webhooks_headers(vnode: Vnode) -> None:
    with WebhookReceiver() as receiver:
        created = await subscribe(vnode.client, receiver)
        secret = created["secret"]
        # whsec_ and the base64 of 32 random bytes: what the library takes as it is.
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
        receiver.fail_next(1)  # the first attempt fails: the retry has the same webhook-id
        alice = new_user_id()
        delivery = await next_delivery(receiver, vnode.client, alice)
        envelope = json.loads(delivery.body)
        headers = delivery.headers

        assert headers["webhook-id"] == envelope["id"] == headers["x-vnode-event-id"]
        assert headers["x-vnode-event-type"] == envelope["type"] == "admin.credit"
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
        [signature] = signatures(delivery)  # one secret, one signature
        assert signature.startswith("v1,") and len(base64.b64decode(signature[3:])) == 32
        # The library (the oracle) verifies it with the secret exactly as it was shown.
        assert Webhook(secret).verify(delivery.body, headers) == envelope
        assert [a.headers["webhook-id"] for a in receiver.attempts] == [envelope["id"]] * 2
        assert receiver.failed_requests == 1

        # A tampered body, a wrong secret, another event's id: refused.
        tampered = delivery.body.replace(b'"admin.credit"', b'"admin.debit"')
        assert tampered != delivery.body
        with pytest.raises(WebhookVerificationError, match="No matching signature"):
            Webhook(secret).verify(tampered, headers)
        with pytest.raises(WebhookVerificationError, match="No matching signature"):
            Webhook(endpoints.new_secret()).verify(delivery.body, headers)
        with pytest.raises(WebhookVerificationError, match="No matching signature"):
            Webhook(secret).verify(delivery.body, {**headers, "webhook-id": "another-event"})
        with pytest.raises(WebhookVerificationError, match="Missing required headers"):
            Webhook(secret).verify(
                delivery.body, {k: v for k, v in headers.items() if k != "webhook-signature"}
            )
        # An old timestamp: signed as vnode signs, with the right secret, ten minutes ago.
        now = int(time.time())
        fresh = standard_headers(envelope["id"], delivery.body, [secret], now)
        Webhook(secret).verify(delivery.body, fresh)
        stale = standard_headers(envelope["id"], delivery.body, [secret], now - 600)
        with pytest.raises(WebhookVerificationError, match="too old"):
            Webhook(secret).verify(delivery.body, stale)
        # ...and a genuine delivery's signature does not carry over to another timestamp.
        with pytest.raises(WebhookVerificationError, match="No matching signature"):
            Webhook(secret).verify(
                delivery.body,
                {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) - 1)},
            )

        # The deprecated header is still there, keyed with the secret's text as before.
        verify_legacy(secret.encode(), headers["x-vnode-signature"], delivery.body, 300)


async def test_rotation_signs_with_both_secrets_during_the_grace_period_then_the_new_one(
    vnode: Vnode,
) -> None:
    client = vnode.client
    with WebhookReceiver() as receiver:
        created = await subscribe(client, receiver)
        old = created["secret"]
        alice = new_user_id()
        before = await next_delivery(receiver, client, alice)
        assert len(signatures(before)) == 1 and verifies(old, before)

        rotated = await client.post(f"/admin/webhooks/{created['id']}/rotate")
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["secret"]
        assert new.startswith("whsec_") and new != old
        assert rotated.json()["secret_rotated_at"]
        until = rotated.json()["previous_secret_until"]
        listed = await client.get("/admin/webhooks")
        assert new not in listed.text and old not in listed.text
        [shown] = listed.json()["webhooks"]
        assert shown["previous_secret_until"] == until
        grace_left = await conn_value(
            vnode.dsn,
            "SELECT extract(epoch FROM "
            "previous_secret_until - now()) FROM webhook_endpoints "
            "WHERE id = $1",
            created["id"],
        )
        assert 86_400 - 60 < grace_left <= 86_400  # 24 hours by default

        # During the grace period: two signatures, the new secret's first; either verifies, so a
        # receiver still on the old secret (this one) and one already on the new both accept.
        # A delivery pass already under way signs with the secrets it read when it began (for
        # at most PIPELINE_PASS_S, docs/adr/0027): the rotation shows from the next pass on.
        during = await delivery_until(receiver, client, alice, lambda d: len(signatures(d)) == 2)
        assert verifies(old, during) and verifies(new, during)
        assert not verifies(endpoints.new_secret(), during)
        assert (
            signatures(during)[0]
            == standard_headers(
                during.headers["webhook-id"],
                during.body,
                [new],
                int(during.headers["webhook-timestamp"]),
            )["webhook-signature"]
        )
        # The deprecated header carries the current (new) secret only.
        verify_legacy(new.encode(), during.headers["x-vnode-signature"], during.body, 300)
        with pytest.raises(SignatureError):
            verify_legacy(old.encode(), during.headers["x-vnode-signature"], during.body, 300)

        # The grace period ends (moved to the past rather than waited for): only the new secret.
        await conn_value(
            vnode.dsn,
            "UPDATE webhook_endpoints SET previous_secret_until = "
            "now() - interval '1 second' WHERE id = $1 RETURNING id",
            created["id"],
        )
        # (A pass under way may still sign with both, the new one first: the next pass not.)
        receiver.secret = new
        after = await delivery_until(receiver, client, alice, lambda d: len(signatures(d)) == 1)
        assert verifies(new, after) and not verifies(old, after)
        [shown] = (await client.get("/admin/webhooks")).json()["webhooks"]
        assert shown["previous_secret_until"] is None

        # A rotation with no grace period: the replaced secret stops at once.
        again = await client.post(f"/admin/webhooks/{created['id']}/rotate", json={"grace_s": 0})
        assert again.status_code == 200, again.text
        assert again.json()["previous_secret_until"] is None
        newest = again.json()["secret"]
        # A pass under way signs with the replaced secret for at most PIPELINE_PASS_S more; the
        # receiver takes either until a delivery comes signed with the newest alone.
        receiver.secret = (newest, new)
        await delivery_until(receiver, client, alice, lambda d: not verifies(new, d))
        receiver.secret = newest
        last = await next_delivery(receiver, client, alice)
        assert len(signatures(last)) == 1
        assert verifies(newest, last) and not verifies(new, last) and not verifies(old, last)
        assert receiver.bad_signatures == []

        # Unknown or removed endpoints, and grace periods out of range.
        for bad_id in (999_999, 0):
            answer = await client.post(f"/admin/webhooks/{bad_id}/rotate")
            assert answer.status_code in (404, 422), answer.text
        for grace in (-1, 7 * 86_400 + 1, "a day"):
            answer = await client.post(
                f"/admin/webhooks/{created['id']}/rotate", json={"grace_s": grace}
            )
            assert answer.status_code == 422, answer.text
            assert answer.json()["error"]["code"] == "invalid_request"
        assert (await client.delete(f"/admin/webhooks/{created['id']}")).status_code == 200
        gone = await client.post(f"/admin/webhooks/{created['id']}/rotate")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "unknown_webhook"


async def test_rotating_twice_keeps_at_most_two_secrets(fresh_db: str) -> None:
    conn = await asyncpg.connect(fresh_db)
    try:
        info, first = await endpoints.create_endpoint(conn, "http://127.0.0.1:9/", (), LOCAL)
        one = await endpoints.rotate_secret(conn, info.id, 3600)
        two = await endpoints.rotate_secret(conn, info.id, 3600)
        assert one is not None and two is not None
        row = await conn.fetchrow(
            "SELECT secret, previous_secret FROM webhook_endpoints WHERE id = $1", info.id
        )
        assert row is not None
        # The second rotation replaced `one`; `first` signs nothing any more.
        assert (row["secret"], row["previous_secret"]) == (two.secret, one.secret)
        with pytest.raises(ValueError, match="grace period"):
            await endpoints.rotate_secret(conn, info.id, -5)
        assert await endpoints.rotate_secret(conn, 999_999) is None
    finally:
        await conn.close()
    assert first not in (one.secret, two.secret)


def an_event(user_id: int = 42) -> Event:
    return Event(
        1,
        "0b6f2a8e-0d0c-4c3e-9f58-3d8f0f3c1a11",
        "admin.credit",
        user_id,
        1,
        {"amount_msat": 1000},
        datetime_now(),
    )


async def test_an_endpoint_made_before_keeps_its_secret_working() -> None:
    """vnode's earlier secrets (`whsec_` + 43 URL-safe characters) were HMAC keys as text: the
    standard signature uses that text as the key, which a Standard Webhooks library takes as raw
    bytes or in the `whsec_<base64>` form the docs give; the deprecated header is unchanged."""
    legacy = "whsec_" + secrets.token_urlsafe(32)
    assert signing_key(legacy) == legacy.encode()
    with WebhookReceiver(legacy) as receiver:
        channel = WebhookChannel(Endpoint(1, receiver.url, legacy), LOCAL)
        [result] = await channel.send([an_event()])
        assert result.error is None, result.error
        [delivery] = receiver.deliveries
    assert verifies(legacy.encode(), delivery)
    assert verifies(standard_secret(legacy), delivery)
    assert standard_secret(legacy) == "whsec_" + base64.b64encode(legacy.encode()).decode()
    # The library reads the text as base64: a wrong key, or no key at all.
    with contextlib.suppress(binascii.Error):
        assert not verifies(legacy, delivery)
    verify_legacy(legacy.encode(), delivery.headers["x-vnode-signature"], delivery.body, 300)
    assert SIGNATURE_HEADER.lower() in delivery.headers


@pytest.mark.parametrize(
    ("secret", "key"),
    [
        ("whsec_" + base64.b64encode(b"k" * 32).decode(), b"k" * 32),  # padded base64
        ("whsec_" + base64.b64encode(b"k" * 24).decode(), b"k" * 24),  # svix-style, no padding
        (
            "whsec_" + base64.b64encode(b"k" * 34).decode().rstrip("="),
            b"k" * 34,
        ),  # padding left out
        # vnode's earlier form, whsec_ and 43 URL-safe characters, is text even when it happens to
        # be base64 too (43 characters are never padded base64; vnode's own are 44).
        ("whsec_" + "A" * 43, ("whsec_" + "A" * 43).encode()),
        ("whsec_test_" + "s" * 32, b"whsec_test_" + b"s" * 32),  # not base64: the text itself
        ("whsec_", b"whsec_"),
        ("plain-secret", b"plain-secret"),
    ],
)
def test_signing_key_reads_both_forms(secret: str, key: bytes) -> None:
    assert signing_key(secret) == key
    if secret.startswith("whsec_") and key != secret.encode():
        assert Webhook(secret)._whsecret == key  # the library reads it the same way
    assert signing_key(standard_secret(secret)) == key
