"""The fast path (vnode/api/fastpath.py) serves the hot routes (vnode/api/hot.py) itself, with
the same answers as their FastAPI routes, made from the same declarations; anything else goes
on to FastAPI."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from tests.support import ADMIN_KEY, bearer, new_user_id
from vnode.api.fastpath import FastPath
from vnode.api.routes_ledger import HOT_ROUTES
from vnode.apikeys import Scope as KeyScope


async def test_fast_routes_are_served_without_the_framework(app_client: httpx.AsyncClient) -> None:
    app = app_client.app  # type: ignore[attr-defined]
    reached: list[str] = []

    async def framework(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(f"{scope['method']} {scope['path']}")
        await app(scope, receive, send)

    fast = FastPath(framework, HOT_ROUTES)

    async def inside_the_app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = app  # as Starlette sets it for its middleware
        await fast(scope, receive, send)

    alice, bob = new_user_id(), new_user_id()
    await app_client.post(
        "/admin/credit", json={"user_id": alice, "amount_msat": 5000, "reason": "fast path"}
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=inside_the_app),
        base_url="http://vnode",
        headers=bearer(ADMIN_KEY),
    ) as client:
        moved = await client.post(
            "/virtual_transfer",
            json={"from_user_id": alice, "to_user_id": bob, "amount_msat": 2000},
        )
        assert moved.status_code == 200 and moved.json()["amount_msat"] == 2000
        balance = await client.post("/virtual_assetbalance", json={"user_id": bob})
        assert balance.status_code == 200 and balance.json()["balance_msat"] == 2000
        unknown = await client.post("/virtual_assetbalance", json={"user_id": new_user_id()})
        assert unknown.json()["error"]["code"] == "unknown_user"
        nobody = await client.post(
            "/virtual_assetbalance", json={"user_id": bob}, headers={"Authorization": ""}
        )
        assert (nobody.status_code, nobody.json()["error"]["code"]) == (401, "unauthorized")
        assert reached == []  # every one of these was answered by the fast path
        other = await client.post("/virtual_balances", json={"user_id": bob})
        assert other.status_code == 200 and reached == ["POST /virtual_balances"]
        # A body the fast path does not take as it is goes on to the FastAPI route, read once.
        bad = await client.post("/virtual_assetbalance", json={"user_id": 0})
        assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_user_id")
        broken = await client.post(
            "/virtual_assetbalance", content=b"\x00", headers={"Content-Type": "application/json"}
        )
        assert (broken.status_code, broken.json()["error"]["code"]) == (400, "invalid_json")
        untyped = await client.post("/virtual_assetbalance", content=b'{"user_id": 1}')
        assert (untyped.status_code, untyped.json()["error"]["code"]) == (422, "invalid_request")
        assert reached[1:] == ["POST /virtual_assetbalance"] * 3


def test_every_hot_route_is_a_documented_fastapi_route(app_client: httpx.AsyncClient) -> None:
    """One declaration made both paths: the FastAPI route has the declaration's body, scope,
    answer model, documentation and metrics label (its path)."""
    app: FastAPI = app_client.app  # type: ignore[attr-defined]
    assert {route.path for route in HOT_ROUTES} == {"/virtual_transfer", "/virtual_assetbalance"}
    spec = app.openapi()
    for hot in HOT_ROUTES:
        assert list(spec["paths"][hot.path]) == ["post"]
        operation = spec["paths"][hot.path]["post"]
        assert operation["summary"] == hot.summary
        body_ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        answer_ref = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert body_ref.endswith(f"/{hot.body.__name__}")
        assert answer_ref["$ref"].endswith(f"/{hot.answer.__name__}")
        assert operation["security"] == [{"HTTPBearer": []}]
        documented = {code.value for code in hot.errors}
        described = " ".join(r["description"] for r in operation["responses"].values())
        assert all(f"`{code}`" in described for code in documented)
        headers = {p["name"] for p in operation.get("parameters", [])}
        assert headers == ({"Idempotency-Key"} if hot.idempotent else set())
        assert hot.scope.value in hot.summary


@contextmanager
def _fast_path_off(app: FastAPI) -> Iterator[None]:
    """The app as it would be without its fast path: every request goes to FastAPI."""
    layer: Any = app.middleware_stack
    while not isinstance(layer, FastPath):
        layer = layer.app
    routes = layer.routes
    layer.routes = {}
    try:
        yield
    finally:
        layer.routes = routes


def _answer(response: httpx.Response) -> tuple[int, Any, str | None]:
    body = response.json()
    if isinstance(body, dict):
        body.pop("request_id", None)
        # Ids and times of a success differ from one request to the next; its shape may not.
        if "error" not in body:
            body = sorted(body)
    return response.status_code, body, response.headers.get("www-authenticate")


async def test_both_paths_answer_alike(
    app_client: httpx.AsyncClient, scoped_keys: dict[KeyScope, str]
) -> None:
    """Every refusal the hot routes can give, and a success, through the fast path and through
    their FastAPI routes: the same status, body (but the request id) and headers."""
    app: FastAPI = app_client.app  # type: ignore[attr-defined]
    alice, bob, carol, nobody = new_user_id(), new_user_id(), new_user_id(), new_user_id()
    for user in (alice, carol):
        await app_client.post(
            "/admin/credit", json={"user_id": user, "amount_msat": 50_000, "reason": "both paths"}
        )
    await app_client.post(
        "/virtual_transfer",
        json={"from_user_id": alice, "to_user_id": bob, "amount_msat": 1},
        headers={"Idempotency-Key": f"both-{alice}"},
    )
    ok = {"from_user_id": alice, "to_user_id": bob, "amount_msat": 1000}
    # A per-user limit's refusal, with its limit and headroom fields (docs/LIMITS.md).
    limited = new_user_id()
    await app_client.post("/admin/limits", json={"user_id": limited, "receive_max_msat": 10})
    read, receive = bearer(scoped_keys[KeyScope.READ]), bearer(scoped_keys[KeyScope.RECEIVE])
    cases: list[tuple[str, dict[str, Any]]] = [
        ("/virtual_transfer", {"json": ok}),
        ("/virtual_transfer", {"json": ok, "headers": {"Idempotency-Key": f"both-{alice}"}}),
        ("/virtual_transfer", {"json": ok, "headers": {"Idempotency-Key": "a b"}}),
        ("/virtual_transfer", {"json": {**ok, "to_user_id": alice}}),
        # (carol's balance, which the refusal names, is the same for both paths)
        ("/virtual_transfer", {"json": {**ok, "from_user_id": carol, "amount_msat": 10**12}}),
        ("/virtual_transfer", {"json": {**ok, "from_user_id": nobody}}),
        ("/virtual_transfer", {"json": {**ok, "to_user_id": limited}}),
        ("/virtual_transfer", {"json": {**ok, "amount_msat": 0}}),
        ("/virtual_transfer", {"json": {**ok, "amount_sats": 1}}),
        ("/virtual_transfer", {"json": {**ok, "from_user_id": "vn_x"}}),
        ("/virtual_transfer", {"json": {**ok, "asset_id": "ETH"}}),
        ("/virtual_transfer", {"json": {**ok, "memo": "\x00"}}),
        ("/virtual_transfer", {"json": {**ok, "amount": 1}}),
        ("/virtual_transfer", {"json": {"to_user_id": bob, "amount_msat": 1}}),
        ("/virtual_transfer", {"json": [ok]}),
        ("/virtual_transfer", {"json": ok, "headers": read}),
        ("/virtual_transfer", {"json": ok, "headers": receive}),
        ("/virtual_transfer", {"json": ok, "headers": {"Authorization": "Bearer nope"}}),
        ("/virtual_transfer", {"json": {"nonsense": 1}, "headers": {"Authorization": ""}}),
        ("/virtual_assetbalance", {"json": {"user_id": bob}, "headers": read}),
        ("/virtual_assetbalance", {"json": {"user_id": bob, "asset_id": "BTC"}}),
        ("/virtual_assetbalance", {"json": {"user_id": nobody}}),
        ("/virtual_assetbalance", {"json": {"user_id": 0}}),
        ("/virtual_assetbalance", {"json": {"user_id": bob, "asset_id": "rgb:?"}}),
        ("/virtual_assetbalance", {"json": {"user_id": bob, "extra": 1}}),
        ("/virtual_assetbalance", {"json": {}}),
        ("/virtual_assetbalance", {"json": "text"}),
        ("/virtual_assetbalance", {"json": {"user_id": bob}, "headers": {"Authorization": ""}}),
    ]
    fast = [_answer(await app_client.post(path, **request)) for path, request in cases]
    with _fast_path_off(app):
        framework = [_answer(await app_client.post(path, **request)) for path, request in cases]
    for (path, request), one, other in zip(cases, fast, framework, strict=True):
        assert one == other, (path, request)
    assert {status for status, _, _ in fast} >= {200, 401, 403, 404, 409, 422}
    refusals = [body["error"] for _, body, _ in fast if isinstance(body, dict) and "error" in body]
    assert any(e.get("limit") == "receive_max_msat" for e in refusals), "no limit_exceeded case"


async def _both(
    app_client: httpx.AsyncClient, path: str, content: bytes, headers: dict[str, str]
) -> tuple[httpx.Response, httpx.Response]:
    fast = await app_client.post(path, content=content, headers=headers)
    with _fast_path_off(app_client.app):  # type: ignore[attr-defined]
        framework = await app_client.post(path, content=content, headers=headers)
    return fast, framework


@pytest.mark.parametrize("broken", [b"\x00", b"{", b"[1,"])
async def test_both_paths_refuse_broken_json_alike(
    app_client: httpx.AsyncClient, broken: bytes
) -> None:
    for hot in HOT_ROUTES:
        fast, framework = await _both(
            app_client, hot.path, broken, {"Content-Type": "application/json"}
        )
        assert fast.status_code == framework.status_code == 400
        assert fast.json()["error"] == framework.json()["error"]
        assert fast.json()["error"]["code"] == "invalid_json"


# Bodies the fast path does not take as they are go on to the FastAPI route: one answer, to
# the message, whichever path a request takes.
@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"", "application/json"),
        (b'{"user_id": 1}', None),
        (b"\x00", None),
        (b"{", None),
        (b'{"user_id": 1}', "text/plain"),
        (b"[1,", "application/json"),
        (b'{"user_id": "x"}', "application/json"),
        (b'{"user_id": 1, "extra": 2}', "application/json; charset=utf-8"),
    ],
)
async def test_both_paths_answer_odd_bodies_alike(
    app_client: httpx.AsyncClient, content: bytes, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    fast, framework = await _both(app_client, "/virtual_assetbalance", content, headers)
    assert (fast.status_code, fast.json()["error"]) == (
        framework.status_code,
        framework.json()["error"],
    )
