"""The console's pages and actions, in-process against a real database and the simulated node:
a payment's whole life on its page, the search, limits, keys and the audit run from the
console (each in the audit trail), and the traffic figures, which agree before and after the
roll-up worker has counted them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.console_support import form_fields, login
from tests.e2e.payments.test_payments import pay
from tests.integration.console.test_console_auth import funded_user
from tests.integration.events.test_webhooks import running, settings_for
from tests.lightning_support import SimControl
from tests.support import ADMIN_KEY, answer_held_payments_soon, bearer, wait_until
from vnode.console import traffic
from vnode.console.pages import amount
from vnode.ledger import solvency


@pytest.fixture
async def console(app_client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """An admin's console session on the in-process app."""
    transport = httpx.ASGITransport(app=app_client.app)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url="http://vnode") as client:
        assert (await login(client, ADMIN_KEY)).status_code == 303
        yield client


async def act(console: httpx.AsyncClient, page: str, path: str, **fields: str) -> httpx.Response:
    """Submit one of `page`'s forms to `path` as a person would, with a reason."""
    form = {**await form_fields(console, page), "reason": "integration test", **fields}
    return await console.post(path, data=form)


async def test_a_payments_page_shows_its_whole_life_and_the_search_finds_its_user(
    console: httpx.AsyncClient, app_client: httpx.AsyncClient, sim_node: str
) -> None:
    user = await funded_user(app_client, 1_000_000)
    paid = await pay(app_client, user, await SimControl(sim_node).invoice(100_000))
    assert paid.status_code == 200, paid.text
    payment = paid.json()
    page = await console.get(f"/console/payments/{payment['payment_id']}")
    assert page.status_code == 200
    assert 'id="payment-status" class="good">succeeded' in page.text
    assert payment["payment_hash"] in page.text
    assert "payment.succeeded" in page.text  # the events sent about it
    assert page.text.count("<td>payment</td>") == 1  # the reserve, in the user's history

    for query in (payment["payment_hash"], str(user), f"vn_{user}"):
        found = await console.get("/console/users", params={"q": query})
        assert found.status_code == 303, query
        assert found.headers["location"] == f"/console/users/{user}"
    shown = await console.get(f"/console/users/{user}")
    assert f"/console/payments/{payment['payment_id']}" in shown.text
    nobody = await console.get("/console/users", params={"q": "vn_1" + "0" * 25})
    assert nobody.status_code == 200 and "Nobody matches" in nobody.text


async def test_limits_keys_and_the_audit_from_the_console_land_in_the_trail(
    console: httpx.AsyncClient, app_client: httpx.AsyncClient
) -> None:
    user = await funded_user(app_client)
    page = f"/console/users/{user}"
    answer = await act(console, page, f"{page}/limits", send_max_msat="2000", fee_max_msat="")
    assert answer.status_code == 200 and 'id="outcome" class="good">ok' in answer.text
    limits = (await app_client.get(f"/admin/limits/{user}")).json()
    assert limits["overrides"]["send_max_msat"] == 2000
    assert limits["overrides"]["fee_max_msat"] is None

    created = await act(console, "/console/keys", "/console/keys", name="support", scope="console")
    assert created.status_code == 200
    key = created.text.split('<code id="new-key">')[1].split("</code>")[0]
    readable = await app_client.post(
        "/virtual_balances", json={"user_id": user}, headers=bearer(key)
    )
    assert readable.status_code == 200
    keys_page = (await console.get("/console/keys")).text
    row = keys_page.split("<td>support</td>")[0].rsplit('data-key="', 1)[1].split('"')[0]
    revoked = await act(console, "/console/keys", f"/console/keys/{row}/revoke")
    assert revoked.status_code == 200
    refused = await app_client.post(
        "/virtual_balances", json={"user_id": user}, headers=bearer(key)
    )
    assert refused.status_code == 401

    audit = await act(console, "/console", "/console/audit")
    assert audit.status_code == 200 and "clean" in audit.text
    overview = (await console.get("/console")).text
    assert 'id="audit-result" class="good">clean' in overview

    trail = (await console.get("/console/actions")).text
    for action in ("set_limits", "create_key", "revoke_key", "run_audit"):
        assert f'<td class="action">{action}</td>' in trail, action
    assert "integration test" in trail


async def test_traffic_agrees_before_and_after_the_roll_up_and_addresses_are_found(
    fresh_db: str, sim_node: str, tmp_path: Path
) -> None:
    # A public URL turns Lightning Addresses on: the search finds a user by one.
    settings = settings_for(
        tmp_path, sim_node, run_workers=False, public_url="http://127.0.0.1:3001"
    )
    async with running(settings, fresh_db) as node:
        for user in (1, 2):
            credit = {"user_id": user, "amount_msat": 10_000_000, "reason": "fund"}
            assert (await node.client.post("/admin/credit", json=credit)).status_code == 200
        for sats in (10, 20, 30, 40):
            move = {"from_user_id": 1, "to_user_id": 2, "amount_sats": sats}
            assert (await node.client.post("/virtual_transfer", json=move)).status_code == 200
        # The overview's figure of what users are owed, from the system accounts, is theirs.
        owed = await solvency.liabilities_from_accounts(node.pool)
        assert owed == await solvency.liabilities(node.pool) == {"BTC": 20_000_000}
        span = traffic.WINDOWS["day"]
        live = await traffic.figures(node.pool, span)
        assert sum(v or 0 for v in live.total("transfers")) == 4
        assert sum(live.volumes[("volume", "BTC")]) == 100_000  # msat
        now = await node.pool.fetchval("SELECT now()")
        assert await traffic.roll_up(node.pool, through=now + traffic.ROLLUP_LAG) >= 1
        rolled = await traffic.figures(node.pool, span)
        assert rolled.counts == live.counts and rolled.volumes == live.volumes
        assert await node.pool.fetchval("SELECT count(*) FROM console_traffic") > 0

        transport = httpx.ASGITransport(app=node.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://vnode") as client:
            await login(client, ADMIN_KEY)
            claim = {"user_id": 2, "name": "carol"}
            assert (await node.client.post("/virtual_address", json=claim)).status_code == 200
            for query in ("carol", "carol@127.0.0.1", "CAROL@127.0.0.1"):
                found = await client.get("/console/users", params={"q": query})
                assert found.headers.get("location") == "/console/users/2", query
            for window in traffic.WINDOWS:
                page = await client.get("/console/traffic", params={"window": window})
                assert page.status_code == 200
                assert page.text.count('<svg class="plot"') == 5, window
                assert "transfers: 4 in view" in page.text
        assert amount(100_000) == "100 sat"


async def test_a_held_payment_is_pending_oldest_first_then_its_refund_is_on_its_page(
    console: httpx.AsyncClient,
    app_client: httpx.AsyncClient,
    sim_node: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answer_held_payments_soon(app_client, monkeypatch)
    sim = SimControl(sim_node)
    user = await funded_user(app_client, 1_000_000)
    await sim.faults(next_payment="hold")
    held = await pay(app_client, user, await sim.invoice(3_000))
    assert held.status_code == 202, held.text
    payment = held.json()
    listed = (await console.get("/console/payments")).text
    row = listed.split(f'href="/console/payments/{payment["payment_id"]}"')[1].split("</tr>")[0]
    assert f"vn_{user}" in row and amount(3_000) in row
    await sim.release(payment["payment_hash"], "fail")

    async def refunded() -> bool:
        page = await console.get(f"/console/payments/{payment['payment_id']}")
        return 'id="payment-status" class="bad">failed' in page.text

    await wait_until(refunded, 20, "the held payment to fail and be refunded")
    page = (await console.get(f"/console/payments/{payment['payment_id']}")).text
    assert "<td>payment_refund</td>" in page and "payment.failed" in page
    listed = (await console.get("/console/payments")).text
    assert f'href="/console/payments/{payment["payment_id"]}"' not in listed
