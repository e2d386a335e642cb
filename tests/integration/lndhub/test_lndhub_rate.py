"""Rate limits per LndHub account (docs/LIMITS.md, "Rate limits"): over the rate, 429 with
Retry-After and LndHub's general error code, never code 1 (wallets would log in again)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_settings, node_settings
from tests.integration.lndhub.conftest import new_wallet
from tests.support import ADMIN_KEY, bearer
from vnode.app import create_app


@pytest.fixture
async def clients(
    fresh_db: str, sim_node: str, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """(admin, anonymous) clients of an app whose LndHub accounts may make 2 requests."""
    settings = make_settings(
        tmp_path,
        rate_limit_account_per_s=0.001,
        rate_limit_account_burst=2,
        **node_settings(sim_node),
    )
    app = create_app(settings, fresh_db)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport, base_url="http://vnode", headers=bearer(ADMIN_KEY)
        ) as admin,
        httpx.AsyncClient(transport=transport, base_url="http://vnode") as anonymous,
    ):
        yield admin, anonymous


async def test_an_account_over_its_rate_gets_429_not_code_1(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    admin, anonymous = clients
    _, wallet = await new_wallet(admin, anonymous)
    _, other = await new_wallet(admin, anonymous)
    assert (await wallet.get("/balance")).status_code == 200
    assert (await wallet.get("/getinfo")).status_code in (200, 503)
    limited = await wallet.get("/balance")
    assert limited.status_code == 429, limited.text
    body = limited.json()
    assert body["error"] is True and body["code"] == 6 and body["code"] != 1
    assert int(limited.headers["Retry-After"]) >= 1
    # Every authenticated route shares the account's bucket; logging in is not limited.
    invoice = await wallet.post("/addinvoice", {"amt": "1000", "memo": "x"})
    assert invoice.status_code == 429 and invoice.json()["code"] == 6
    assert (await wallet.authorize())["access_token"]
    assert (await wallet.get("/balance")).status_code == 429  # a new token, the same account
    # Another account has its own bucket.
    assert (await other.get("/balance")).status_code == 200
