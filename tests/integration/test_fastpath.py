"""The fast path (vnode/api/fastpath.py) serves its routes itself, with the same answers the
API documents; anything else goes on to FastAPI."""

from __future__ import annotations

import httpx
from starlette.types import Receive, Scope, Send

from tests.support import ADMIN_KEY, bearer, new_user_id
from vnode.api.fastpath import ROUTES, FastPath


async def test_fast_routes_are_served_without_the_framework(
        app_client: httpx.AsyncClient) -> None:
    app = app_client.app  # type: ignore[attr-defined]
    reached: list[str] = []

    async def framework(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(f"{scope['method']} {scope['path']}")
        await app(scope, receive, send)

    fast = FastPath(framework)

    async def inside_the_app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = app  # as Starlette sets it for its middleware
        await fast(scope, receive, send)

    alice, bob = new_user_id(), new_user_id()
    await app_client.post("/admin/credit", json={"user_id": alice, "amount_msat": 5000,
                                                 "reason": "fast path"})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=inside_the_app),
                                 base_url="http://vnode", headers=bearer(ADMIN_KEY)) as client:
        moved = await client.post("/virtual_transfer", json={
            "from_user_id": alice, "to_user_id": bob, "amount_msat": 2000})
        assert moved.status_code == 200 and moved.json()["amount_msat"] == 2000
        balance = await client.post("/virtual_assetbalance", json={"user_id": bob})
        assert balance.status_code == 200 and balance.json()["balance_msat"] == 2000
        unknown = await client.post("/virtual_assetbalance", json={"user_id": new_user_id()})
        assert unknown.json()["error"]["code"] == "unknown_user"
        bad = await client.post("/virtual_assetbalance", json={"user_id": 0})
        assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_user_id")
        broken = await client.post("/virtual_assetbalance", content=b"\x00")
        assert (broken.status_code, broken.json()["error"]["code"]) == (400, "invalid_json")
        nobody = await client.post("/virtual_assetbalance", json={"user_id": bob},
                                   headers={"Authorization": ""})
        assert (nobody.status_code, nobody.json()["error"]["code"]) == (401, "unauthorized")
        assert reached == []  # every one of these was answered by the fast path
        other = await client.post("/virtual_balances", json={"user_id": bob})
        assert other.status_code == 200 and reached == ["POST /virtual_balances"]
    assert set(ROUTES) == {"/virtual_transfer", "/virtual_assetbalance"}
