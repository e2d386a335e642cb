"""Per-user limits through the HTTP API (docs/LIMITS.md): POST /admin/limits and
GET /admin/limits/{user_id}, the limit_exceeded answer of transfers and invoices with its limit
and headroom, and the server defaults taken from VNODE_LIMIT_* settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import make_settings, node_settings
from tests.lightning_support import SimControl
from tests.support import ADMIN_KEY, bearer, new_user_id
from vnode.apikeys import Scope
from vnode.app import create_app


async def fund(client: httpx.AsyncClient, user_id: int, amount_msat: int) -> None:
    response = await client.post(
        "/admin/credit",
        json={"user_id": user_id, "amount_msat": amount_msat, "reason": "limits test"},
    )
    assert response.status_code == 200, response.text


async def set_limits(client: httpx.AsyncClient, user_id: int, **limits: Any) -> dict[str, Any]:
    response = await client.post("/admin/limits", json={"user_id": user_id, **limits})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def transfer(
    client: httpx.AsyncClient, src: int, dst: int, amount_msat: int, **kwargs: Any
) -> httpx.Response:
    return await client.post(
        "/virtual_transfer",
        json={"from_user_id": src, "to_user_id": dst, "amount_msat": amount_msat},
        **kwargs,
    )


def limit_error(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 409, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "limit_exceeded"
    return error


async def test_set_show_and_clear_overrides(app_client: httpx.AsyncClient) -> None:
    user = new_user_id()
    body = await set_limits(app_client, user, send_24h_msat=5_000, fee_max_msat=0)
    assert body["user_id"] == user and body["node_id"] == f"vn_{user}"
    assert body["overrides"]["send_24h_msat"] == 5_000 and body["overrides"]["fee_max_msat"] == 0
    assert body["effective"]["send_24h_msat"] == 5_000
    assert body["send_headroom_msat"] == 5_000 and body["receive_headroom_msat"] is None
    # A field left out stays; null clears.
    body = await set_limits(app_client, user, receive_max_msat=7)
    assert (
        body["overrides"]["send_24h_msat"] == 5_000 and body["overrides"]["receive_max_msat"] == 7
    )
    body = await set_limits(app_client, user, send_24h_msat=None)
    assert body["overrides"]["send_24h_msat"] is None
    shown = await app_client.get(f"/admin/limits/vn_{user}")
    assert shown.status_code == 200 and shown.json() == body
    assert body["overrides"] == {
        "send_max_msat": None,
        "receive_max_msat": 7,
        "balance_max_msat": None,
        "send_24h_msat": None,
        "send_30d_msat": None,
        "receive_24h_msat": None,
        "receive_30d_msat": None,
        "fee_max_msat": 0,
    }


async def test_bad_limit_bodies_are_refused_and_change_nothing(
    app_client: httpx.AsyncClient,
) -> None:
    user = new_user_id()
    await set_limits(app_client, user, send_max_msat=100)
    for body, code in [
        ({"user_id": user, "send_max_msat": -1}, "invalid_request"),
        ({"user_id": user, "send_max_msat": "100"}, "invalid_request"),
        ({"user_id": user, "send_max_msat": 2**63}, "invalid_request"),
        ({"user_id": user, "send_maximum": 1}, "invalid_request"),
        ({"user_id": "nobody", "send_max_msat": 1}, "invalid_user_id"),
    ]:
        response = await app_client.post("/admin/limits", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["code"] == code, (body, response.text)
    assert (await app_client.get(f"/admin/limits/{user}")).json()["overrides"][
        "send_max_msat"
    ] == 100
    response = await app_client.get("/admin/limits/vn_x")
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_user_id"


async def test_limits_endpoints_need_an_admin_key(
    app_client: httpx.AsyncClient, scoped_keys: dict[Scope, str]
) -> None:
    user = new_user_id()
    spend = bearer(scoped_keys[Scope.SPEND])
    response = await app_client.post(
        "/admin/limits", json={"user_id": user, "send_max_msat": 10**12}, headers=spend
    )
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    response = await app_client.get(f"/admin/limits/{user}", headers=spend)
    assert response.status_code == 403
    assert (await app_client.get(f"/admin/limits/{user}")).json()["overrides"][
        "send_max_msat"
    ] is None


async def test_transfer_refusal_names_the_limit_and_headroom(
    app_client: httpx.AsyncClient,
) -> None:
    alice, bob = new_user_id(), new_user_id()
    await fund(app_client, alice, 10_000_000)
    await set_limits(app_client, alice, send_24h_msat=3_000_000)
    assert (await transfer(app_client, alice, bob, 2_000_000)).status_code == 200
    response = await transfer(app_client, alice, bob, 1_500_000)
    error = limit_error(response)
    assert error["limit"] == "send_24h_msat"
    assert error["limit_msat"] == 3_000_000 and error["used_msat"] == 2_000_000
    assert error["amount_msat"] == 1_500_000 and error["headroom_msat"] == 1_000_000
    assert "send_24h_msat" in error["message"]
    assert isinstance(response.json()["request_id"], str)
    # Nothing moved: the recipient still has only the first transfer.
    shown = (await app_client.get(f"/admin/limits/{alice}")).json()
    assert shown["usage"]["sent_24h_msat"] == 2_000_000
    assert shown["send_headroom_msat"] == 1_000_000
    assert (await transfer(app_client, alice, bob, 1_000_000)).status_code == 200


async def test_invoice_creation_checks_receive_limits(
    app_client: httpx.AsyncClient, shared_conn: asyncpg.Connection
) -> None:
    user = new_user_id()
    await set_limits(app_client, user, receive_max_msat=50_000)
    response = await app_client.post(
        "/virtual_lninvoice", json={"user_id": user, "amt_msat": 50_001}
    )
    error = limit_error(response)
    assert (error["limit"], error["headroom_msat"]) == ("receive_max_msat", 50_000)
    # Refused before anything was made: no node, no invoice.
    assert (
        await shared_conn.fetchval("SELECT count(*) FROM ln_invoices WHERE user_id = $1", user) == 0
    )
    assert (
        await shared_conn.fetchval("SELECT count(*) FROM virtual_nodes WHERE user_id = $1", user)
        == 0
    )
    ok = await app_client.post("/virtual_lninvoice", json={"user_id": user, "amt_msat": 50_000})
    assert ok.status_code == 200, ok.text


async def test_amountless_invoice_refused_only_without_any_headroom(
    app_client: httpx.AsyncClient,
) -> None:
    alice, bob = new_user_id(), new_user_id()
    await fund(app_client, alice, 10_000)
    await set_limits(app_client, bob, receive_24h_msat=1_000)
    body = {"user_id": bob, "asset_id": "BTC", "duration_seconds": 600}
    assert (await app_client.post("/virtual_rgbinvoice", json=body)).status_code == 200
    assert (await transfer(app_client, alice, bob, 1_000)).status_code == 200
    error = limit_error(await app_client.post("/virtual_rgbinvoice", json=body))
    assert (error["limit"], error["used_msat"], error["headroom_msat"]) == (
        "receive_24h_msat",
        1_000,
        0,
    )


async def test_external_payment_refused_by_send_and_fee_limits(
    app_client: httpx.AsyncClient, sim_node: str, shared_conn: asyncpg.Connection
) -> None:
    """Refused in vnode_payment_reserve, before the node is asked to pay: no payment row, no
    money held."""
    sim, alice = SimControl(sim_node), new_user_id()
    await fund(app_client, alice, 10_000_000)
    await set_limits(app_client, alice, fee_max_msat=10_000, send_max_msat=200_000)
    invoice = await sim.invoice(100_000)
    response = await app_client.post(
        "/virtual_sendpayment", json={"user_id": alice, "invoice": invoice}
    )
    error = limit_error(response)
    # The default reserve is 50 sat + 1 %: 51,000 msat for 100,000 msat.
    assert (error["limit"], error["amount_msat"], error["headroom_msat"]) == (
        "fee_max_msat",
        51_000,
        10_000,
    )
    big = await sim.invoice(300_000)
    error = limit_error(
        await app_client.post("/virtual_sendpayment", json={"user_id": alice, "invoice": big})
    )
    assert (error["limit"], error["limit_msat"]) == ("send_max_msat", 200_000)
    payments = "SELECT count(*) FROM ln_payments WHERE user_id = $1"
    assert await shared_conn.fetchval(payments, alice) == 0
    spendable = "SELECT spendable FROM ln_user_balances WHERE user_id = $1 AND asset_id = 'BTC'"
    assert await shared_conn.fetchval(spendable, alice) == 10_000_000
    # Within both limits it is paid.
    await set_limits(app_client, alice, fee_max_msat=None)
    paid = await app_client.post(
        "/virtual_sendpayment", json={"user_id": alice, "invoice": invoice}
    )
    assert paid.status_code == 200 and paid.json()["status"] == "succeeded", paid.text


# --- server defaults from settings: an app of its own, on a database of its own ------------


@pytest.fixture
async def limited_client(
    fresh_db: str, sim_node: str, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        tmp_path, limit_send_max_msat=1_000, limit_balance_max_msat=5_000, **node_settings(sim_node)
    )
    app = create_app(settings, fresh_db)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://vnode",
            headers=bearer(ADMIN_KEY),
        ) as client,
    ):
        yield client


async def test_settings_are_the_defaults_and_overrides_win(
    limited_client: httpx.AsyncClient,
) -> None:
    alice, bob = new_user_id(), new_user_id()
    await fund(limited_client, alice, 4_000)
    shown = (await limited_client.get(f"/admin/limits/{alice}")).json()
    assert shown["defaults"]["send_max_msat"] == 1_000
    assert shown["defaults"]["balance_max_msat"] == 5_000
    assert shown["effective"]["send_max_msat"] == 1_000
    assert shown["receive_headroom_msat"] == 1_000  # 5,000 ceiling - 4,000 held
    error = limit_error(await transfer(limited_client, alice, bob, 1_001))
    assert (error["limit"], error["limit_msat"]) == ("send_max_msat", 1_000)
    await set_limits(limited_client, alice, send_max_msat=3_000)
    assert (await transfer(limited_client, alice, bob, 2_500)).status_code == 200
