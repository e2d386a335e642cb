"""POST /webhook/payment: signed, replay-proof, and only ever a nudge to ask the node."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import WEBHOOK_SECRET, make_settings, node_settings
from tests.integration.api.test_api_transfer import balance
from tests.lightning_support import SimControl, assert_audit_clean
from tests.support import ADMIN_KEY, bearer, free_port, new_user_id
from vnode.app import create_app
from vnode.domain.signing import sign
from vnode.lightning.sim_process import SimProcess


@pytest.fixture(scope="module")
def private_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A node of its own, so no other app's invoice watcher credits these payments."""
    sim = SimProcess("127.0.0.1", free_port(), tmp_path_factory.mktemp("sim") / "sim.log")
    sim.wait_ready()
    yield sim.url
    sim.stop()


@pytest.fixture
async def quiet_client(
    shared_db: str, private_sim: str, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """An app without background workers: only the webhook can credit here."""
    settings = make_settings(tmp_path, **{**node_settings(private_sim), "run_workers": False})
    app = create_app(settings, shared_db)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t", headers=bearer(ADMIN_KEY)
        ) as client,
    ):
        yield client


def signed(
    body: dict[str, object], secret: str = WEBHOOK_SECRET, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    raw = orjson.dumps(body)
    return raw, {
        "X-VNode-Signature": sign(secret.encode(), raw, timestamp),
        "Content-Type": "application/json",
    }


async def invoice_for(client: httpx.AsyncClient, user_id: int, amt_msat: int) -> dict[str, str]:
    response = await client.post(
        "/virtual_lninvoice", json={"user_id": user_id, "amt_msat": amt_msat}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_webhook_credits_what_the_node_received(
    quiet_client: httpx.AsyncClient, private_sim: str, shared_db: str
) -> None:
    bob = new_user_id()
    created = await invoice_for(quiet_client, bob, 25_000)
    # The body claims far more than was paid: the node's amount is what counts.
    body = {
        "payment_hash": created["payment_hash"],
        "amount_msat": 99_000_000,
        "metadata": orjson.dumps({"user_id": bob}).decode(),
    }
    # (Signatures differ by timestamp: the same body signed in the same second is a replay.)
    raw, headers = signed(body, timestamp=int(time.time()) - 2)
    unpaid = await quiet_client.post("/webhook/payment", content=raw, headers=headers)
    assert unpaid.status_code == 200 and unpaid.json()["credited"] is False
    assert await balance(quiet_client, bob) == 0  # a body alone never moves money

    outside = await SimControl(private_sim).pay(created["invoice"], amt_msat=26_000)
    assert outside.status_code == 200
    raw, headers = signed(body)
    paid = await quiet_client.post("/webhook/payment", content=raw, headers=headers)
    assert paid.status_code == 200, paid.text
    assert paid.json()["credited"] is True and paid.json()["amount_msat"] == 26_000
    assert await balance(quiet_client, bob) == 26_000

    replayed = await quiet_client.post("/webhook/payment", content=raw, headers=headers)
    assert replayed.status_code == 401
    assert replayed.json()["error"]["code"] == "invalid_signature"
    # A fresh signature of the same news: accepted, but no second credit.
    raw, headers = signed(body, timestamp=int(time.time()) - 1)
    duplicate = await quiet_client.post("/webhook/payment", content=raw, headers=headers)
    assert duplicate.status_code == 200 and duplicate.json()["credited"] is False
    assert await balance(quiet_client, bob) == 26_000
    await assert_audit_clean(shared_db)


@pytest.mark.parametrize(
    "case", ["missing", "wrong secret", "too old", "from the future", "tampered body", "malformed"]
)
async def test_forged_webhooks_are_401(quiet_client: httpx.AsyncClient, case: str) -> None:
    bob = new_user_id()
    # Unpaid: whatever a forged request could make vnode do would show as a credit.
    created = await invoice_for(quiet_client, bob, 5_000)
    body = {"payment_hash": created["payment_hash"], "amount_msat": 5_000}
    raw, headers = signed(body)
    if case == "missing":
        headers.pop("X-VNode-Signature")
    elif case == "wrong secret":
        raw, headers = signed(body, secret="not-the-secret-" + "x" * 20)
    elif case == "too old":
        raw, headers = signed(body, timestamp=int(time.time()) - 301)
    elif case == "from the future":
        raw, headers = signed(body, timestamp=int(time.time()) + 301)
    elif case == "tampered body":
        raw = raw.replace(b"5000", b"5001")
    else:
        headers["X-VNode-Signature"] = "t=abc,v1=zz"
    response = await quiet_client.post("/webhook/payment", content=raw, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "invalid_signature"
    assert await balance(quiet_client, bob) == 0


async def test_webhook_naming_another_user_is_refused(
    quiet_client: httpx.AsyncClient, private_sim: str
) -> None:
    bob, mallory = new_user_id(), new_user_id()
    created = await invoice_for(quiet_client, bob, 8_000)
    assert (await SimControl(private_sim).pay(created["invoice"])).status_code == 200
    raw, headers = signed(
        {
            "payment_hash": created["payment_hash"],
            "amount_msat": 8_000,
            "metadata": orjson.dumps({"user_id": mallory}).decode(),
        }
    )
    response = await quiet_client.post("/webhook/payment", content=raw, headers=headers)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "user_mismatch"
    assert await balance(quiet_client, mallory) == -1  # no node, no credit
    assert await balance(quiet_client, bob) == 0  # only a valid request credits, and once


async def test_webhook_for_unknown_invoice(quiet_client: httpx.AsyncClient) -> None:
    raw, headers = signed({"payment_hash": "ab" * 32, "amount_msat": 1})
    response = await quiet_client.post("/webhook/payment", content=raw, headers=headers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_invoice"
