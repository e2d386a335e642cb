"""API keys and scopes on every endpoint: 401 without a valid key, 403 below the scope."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from tests.support import bearer, new_user_id, wait_until
from vnode.apikeys import Scope, create_key, hash_key, list_keys, revoke_key

# (method, path, lowest scope admitted, a valid body)
ENDPOINTS: list[tuple[str, str, Scope, dict[str, Any] | None]] = [
    ("POST", "/virtual_node", Scope.RECEIVE, {"user_id": 1}),
    ("POST", "/virtual_transfer", Scope.SPEND,
     {"from_user_id": 1, "to_user_id": 2, "amount_msat": 1}),
    ("POST", "/virtual_assetbalance", Scope.READ, {"user_id": 1, "asset_id": "BTC"}),
    ("POST", "/virtual_balances", Scope.READ, {"user_id": 1}),
    ("POST", "/virtual_history", Scope.READ, {"user_id": 1}),
    ("POST", "/admin/credit", Scope.ADMIN, {"user_id": 1, "amount_msat": 1, "reason": "x"}),
    ("POST", "/admin/debit", Scope.ADMIN, {"user_id": 1, "amount_msat": 1, "reason": "x"}),
    ("GET", "/metrics", Scope.READ, None),
]
OPEN = ["/healthz", "/readyz", "/openapi.json", "/docs"]


def _ids(rows: list[tuple[str, str, Scope, Any]]) -> list[str]:
    return [row[1] for row in rows]


@pytest.mark.parametrize(("method", "path", "scope", "body"), ENDPOINTS, ids=_ids(ENDPOINTS))
async def test_missing_or_bad_key_is_401(app_client: httpx.AsyncClient, method: str, path: str,
                                         scope: Scope, body: dict[str, Any] | None) -> None:
    for headers in ({"Authorization": ""}, bearer("vnk_not-a-real-key"),
                    {"Authorization": "Basic dXNlcjpwYXNz"}):
        response = await app_client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path", "scope", "body"), ENDPOINTS, ids=_ids(ENDPOINTS))
async def test_scopes_are_enforced(app_client: httpx.AsyncClient, scoped_keys: dict[Scope, str],
                                   method: str, path: str, scope: Scope,
                                   body: dict[str, Any] | None) -> None:
    for held, key in scoped_keys.items():
        response = await app_client.request(method, path, json=body, headers=bearer(key))
        if held.allows(scope):
            assert response.status_code not in (401, 403), (held, response.text)
        else:
            assert response.status_code == 403, (held, response.text)
            assert response.json()["error"]["code"] == "forbidden"


async def test_read_and_receive_keys_cannot_move_money(
    app_client: httpx.AsyncClient, scoped_keys: dict[Scope, str]
) -> None:
    alice, bob = new_user_id(), new_user_id()
    await app_client.post("/admin/credit", json={"user_id": alice, "amount_msat": 5000,
                                                 "reason": "t"})
    for scope in (Scope.READ, Scope.RECEIVE):
        headers = bearer(scoped_keys[scope])
        moves = [
            ("/virtual_transfer", {"from_user_id": alice, "to_user_id": bob, "amount_msat": 1}),
            ("/admin/credit", {"user_id": bob, "amount_msat": 1, "reason": "x"}),
            ("/admin/debit", {"user_id": alice, "amount_msat": 1, "reason": "x"}),
        ]
        for path, body in moves:
            assert (await app_client.post(path, json=body, headers=headers)).status_code == 403
    response = await app_client.post("/virtual_assetbalance", json={"user_id": alice})
    assert response.json()["balance_msat"] == 5000


@pytest.mark.parametrize("path", OPEN)
async def test_health_and_docs_need_no_key(app_client: httpx.AsyncClient, path: str) -> None:
    response = await app_client.get(path, headers={"Authorization": ""})
    assert response.status_code == 200


async def test_key_in_query_string_is_not_accepted(
    app_client: httpx.AsyncClient, scoped_keys: dict[Scope, str]
) -> None:
    response = await app_client.get(f"/metrics?api_key={scoped_keys[Scope.ADMIN]}",
                                    headers={"Authorization": ""})
    assert response.status_code == 401


async def test_keys_are_stored_hashed_and_listed_without_secret(shared_conn: asyncpg.Connection,
                                                                ) -> None:
    info, key = await create_key(shared_conn, "hash-check", Scope.READ)
    stored = await shared_conn.fetchrow("SELECT * FROM api_keys WHERE id = $1", info.id)
    assert stored is not None
    assert stored["key_hash"] == hash_key(key)
    assert key not in {str(v) for v in stored.values()}
    listed = [k for k in await list_keys(shared_conn) if k.id == info.id]
    assert listed and key not in repr(listed[0]) and key.startswith(listed[0].key_prefix)


async def test_revoked_key_is_refused_at_once(app_client: httpx.AsyncClient,
                                              shared_conn: asyncpg.Connection) -> None:
    info, key = await create_key(shared_conn, "revoke-me", Scope.READ)
    headers = bearer(key)
    assert (await app_client.get("/metrics", headers=headers)).status_code == 200  # now cached
    assert await revoke_key(shared_conn, info.id)
    assert not await revoke_key(shared_conn, info.id)  # already revoked

    async def refused() -> bool:
        return (await app_client.get("/metrics", headers=headers)).status_code == 401

    # The NOTIFY empties the cache long before the 30 s TTL would.
    await wait_until(refused, timeout_s=5, what="revocation to reach the service")
