"""Virtual nodes, balances and history through the HTTP API."""

from __future__ import annotations

import httpx

from tests.integration.api.test_api_transfer import RGB, fund
from tests.support import new_user_id
from vnode.keys import SoftwareSigner


async def test_virtual_node_is_created_once_and_stable(app_client: httpx.AsyncClient) -> None:
    user = new_user_id()
    first = await app_client.post("/virtual_node", json={"user_id": str(user)})
    again = await app_client.post("/virtual_node", json={"user_id": f"vn_{user}"})
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    body = first.json()
    assert body["user_id"] == user and body["node_id"] == f"vn_{user}"
    # The key is the BIP32 derivation from the service seed (conftest TEST_SEED), nothing else.
    assert body["pubkey"] == SoftwareSigner(bytes.fromhex("11" * 32)).node_pubkey(user)


async def test_two_users_never_share_a_key(app_client: httpx.AsyncClient) -> None:
    keys = set()
    for _ in range(20):
        response = await app_client.post("/virtual_node", json={"user_id": new_user_id()})
        keys.add(response.json()["pubkey"])
    assert len(keys) == 20


async def test_asset_balance_shapes(app_client: httpx.AsyncClient) -> None:
    user = new_user_id()
    await fund(app_client, user, 12_345)
    btc = (
        await app_client.post(
            "/virtual_assetbalance", json={"user_id": str(user), "asset_id": "BTC"}
        )
    ).json()
    assert btc == {
        "user_id": user,
        "node_id": f"vn_{user}",
        "asset_id": "BTC",
        "balance_msat": 12_345,
        "pending_msat": 0,
        "spendable_msat": 12_345,
        "balance_sats": 12,
        "pending_sats": 0,
        "spendable_sats": 12,
    }
    rgb = (
        await app_client.post("/virtual_assetbalance", json={"user_id": user, "asset_id": RGB})
    ).json()
    assert rgb["balance"] == rgb["spendable"] == rgb["pending"] == 0
    default = (await app_client.post("/virtual_assetbalance", json={"user_id": user})).json()
    assert default["asset_id"] == "BTC"


async def test_balances_of_unknown_user(app_client: httpx.AsyncClient) -> None:
    for path in ("/virtual_assetbalance", "/virtual_balances", "/virtual_history"):
        response = await app_client.post(path, json={"user_id": new_user_id()})
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "unknown_user"


async def test_new_node_has_zero_btc(app_client: httpx.AsyncClient) -> None:
    user = new_user_id()
    await app_client.post("/virtual_node", json={"user_id": user})
    body = (await app_client.post("/virtual_balances", json={"user_id": user})).json()
    assert body["balances"] == [
        {
            "asset_id": "BTC",
            "balance_msat": 0,
            "pending_msat": 0,
            "spendable_msat": 0,
            "balance_sats": 0,
            "pending_sats": 0,
            "spendable_sats": 0,
        }
    ]


async def test_history_keyset_pagination(app_client: httpx.AsyncClient) -> None:
    alice, bob = new_user_id(), new_user_id()
    await fund(app_client, alice, 100_000)
    for amount in range(1, 8):
        response = await app_client.post(
            "/virtual_transfer",
            json={"from_user_id": alice, "to_user_id": bob, "amount_msat": amount},
        )
        assert response.status_code == 200
    seen: list[dict[str, object]] = []
    cursor = None
    pages = 0
    while True:
        page = (
            await app_client.post(
                "/virtual_history", json={"user_id": alice, "limit": 3, "cursor": cursor}
            )
        ).json()
        seen.extend(page["transactions"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert [e["amount_msat"] for e in seen] == [7, 6, 5, 4, 3, 2, 1, 100_000]
    assert [e["direction"] for e in seen] == ["out"] * 7 + ["in"]
    assert seen[-1]["kind"] == "admin_credit" and seen[-1]["counterparty"] == "operator_funding"
    ids = [int(str(e["id"])) for e in seen]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)


async def test_history_refuses_bad_cursor_and_limit(app_client: httpx.AsyncClient) -> None:
    user = new_user_id()
    await fund(app_client, user, 1)
    bad_cursor = await app_client.post(
        "/virtual_history", json={"user_id": user, "cursor": "DROP TABLE"}
    )
    assert bad_cursor.status_code == 422
    assert bad_cursor.json()["error"]["code"] == "invalid_cursor"
    for limit in (0, 201, "5", 2.5):
        response = await app_client.post("/virtual_history", json={"user_id": user, "limit": limit})
        assert response.status_code == 422, limit
        assert response.json()["error"]["code"] == "invalid_request"
