"""A third-party LndHub client, the PyPI package blue-wallet-client 0.0.13 (requests, form
bodies, the token without `Bearer `, `r_hash` read as a Buffer), against a real `vnode serve`
and the simulated node it runs beside it.

The package builds `Retry(method_whitelist=...)`, a keyword urllib3 2 removed (this project
locks urllib3 2.8), so its constructor raises TypeError as published. The test hands it a
`Retry` that takes the old keyword as the new `allowed_methods`; every request it makes is its
own. Its retry policy (POSTs retried on 500/502/503/504) is the hazard /payinvoice guards
against: vnode answers a 5xx there only when nothing was paid.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blue_wallet_client  # type: ignore[import-untyped]
import blue_wallet_client.blue_wallet_client as bwc_module  # type: ignore[import-untyped]
import httpx
import pytest
import requests
from urllib3.util.retry import Retry

from tests.lightning_support import SimControl
from tests.support import ADMIN_KEY, ServeProcess, bearer, new_user_id
from vnode.lightning import bolt11


class _Retry(Retry):
    def __init__(self, *args: Any, method_whitelist: Any = None, **kwargs: Any) -> None:
        if method_whitelist is not None:
            kwargs["allowed_methods"] = method_whitelist
        super().__init__(*args, **kwargs)


@pytest.fixture
def modern_retry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(bwc_module, "Retry", _Retry)
    yield


async def test_blue_wallet_client_against_vnode_serve(
    fresh_db: str, tmp_path: Path, modern_retry: None
) -> None:
    server = ServeProcess(fresh_db, tmp_path / "serve")
    try:
        await server.wait_ready()
        sim = SimControl(f"http://127.0.0.1:{server.port + 1}")
        alice, bob = new_user_id(), new_user_id()
        async with httpx.AsyncClient(base_url=server.url, headers=bearer(ADMIN_KEY)) as admin:
            accounts = {}
            for user in (alice, bob):
                response = await admin.post("/virtual_lndhub_account", json={"user_id": user})
                assert response.status_code == 200, response.text
                accounts[user] = response.json()
            credit = await admin.post(
                "/admin/credit",
                json={"user_id": alice, "amount_msat": 500_000, "reason": "test"},
            )
            assert credit.status_code == 200
        root = f"{server.url}/lndhub"

        def client_of(user: int) -> Any:
            account = accounts[user]
            return blue_wallet_client.BlueWalletClient(
                account["login"], account["password"], root_url=root
            )

        payer, payee = await asyncio.gather(
            asyncio.to_thread(client_of, alice), asyncio.to_thread(client_of, bob)
        )
        assert await asyncio.to_thread(payer.balance) == 500
        info = await asyncio.to_thread(payer.get_node_info)
        assert len(info["identity_pubkey"]) == 66

        # bob's invoice (form body, bare token), paid by alice inside the ledger.
        created = await asyncio.to_thread(payee.create_invoice, 120, "coffee")
        payment_hash = bolt11.decode(created["payment_request"]).payment_hash
        assert created["r_hash"] == base64.b64encode(bytes.fromhex(payment_hash)).decode()
        await asyncio.to_thread(payer.payinvoice, created["payment_request"])
        assert await asyncio.to_thread(payee.balance) == 120
        assert await asyncio.to_thread(payer.balance) == 380
        found = await asyncio.to_thread(payee.lookup_invoice, created["r_hash"])
        assert found is not None and found["ispaid"] is True and found["amt"] == 120
        # Paying it again is the same payment: no error, nothing moves.
        await asyncio.to_thread(payer.payinvoice, created["payment_request"])
        assert await asyncio.to_thread(payer.balance) == 380

        # An outside invoice through the node.
        outside = await sim.invoice(100_000)
        await asyncio.to_thread(payer.payinvoice, outside)
        assert await asyncio.to_thread(payer.balance) < 280

        # Refusals reach it as HTTP errors with LndHub's body.
        with pytest.raises(requests.HTTPError) as refused:
            await asyncio.to_thread(payer.payinvoice, await sim.invoice(10_000_000))
        assert refused.value.response is not None
        body = refused.value.response.json()
        assert body["error"] is True and body["code"] == 2
        with pytest.raises(requests.HTTPError):
            await asyncio.to_thread(payer.get_login, root)  # /create: no new accounts
        # No on-chain address is ever made up: the client's res[0] finds none.
        with pytest.raises(IndexError):
            await asyncio.to_thread(payer.get_on_chain_address)
    finally:
        server.stop()
