"""Idempotency-Key: same key and body replay the first answer; another body is refused."""

from __future__ import annotations

import asyncio

import httpx

from tests.integration.api.test_api_transfer import balance, fund, history_count
from tests.support import new_user_id
from vnode.apikeys import Scope


async def test_replay_returns_first_answer_and_moves_once(app_client: httpx.AsyncClient) -> None:
    alice, bob = new_user_id(), new_user_id()
    await fund(app_client, alice, 10_000)
    body = {"from_user_id": alice, "to_user_id": bob, "amount_msat": 1000}
    headers = {"Idempotency-Key": f"pay-{alice}"}
    first = await app_client.post("/virtual_transfer", json=body, headers=headers)
    again = await app_client.post("/virtual_transfer", json=body, headers=headers)
    # The same request spelt differently (string id) is the same request.
    spelt = await app_client.post(
        "/virtual_transfer", headers=headers, json={**body, "from_user_id": str(alice)}
    )
    assert first.status_code == again.status_code == spelt.status_code == 200
    assert first.json() == again.json() == spelt.json()
    assert await balance(app_client, alice) == 9000
    assert await history_count(app_client, bob) == 1


async def test_same_key_other_body_refused(app_client: httpx.AsyncClient) -> None:
    alice, bob = new_user_id(), new_user_id()
    await fund(app_client, alice, 10_000)
    headers = {"Idempotency-Key": f"k-{alice}"}
    first = await app_client.post(
        "/virtual_transfer",
        headers=headers,
        json={"from_user_id": alice, "to_user_id": bob, "amount_msat": 1000},
    )
    other = await app_client.post(
        "/virtual_transfer",
        headers=headers,
        json={"from_user_id": alice, "to_user_id": bob, "amount_msat": 2000},
    )
    assert first.status_code == 200
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert await balance(app_client, alice) == 9000


async def test_refusal_is_replayed_too(app_client: httpx.AsyncClient) -> None:
    alice, bob = new_user_id(), new_user_id()
    await fund(app_client, alice, 500)
    headers = {"Idempotency-Key": f"short-{alice}"}
    body = {"from_user_id": alice, "to_user_id": bob, "amount_msat": 1000}
    first = await app_client.post("/virtual_transfer", headers=headers, json=body)
    await fund(app_client, alice, 5000)  # now it would succeed, but the key's answer stands
    again = await app_client.post("/virtual_transfer", headers=headers, json=body)
    assert first.status_code == again.status_code == 409
    assert first.json()["error"] == again.json()["error"]
    assert await balance(app_client, alice) == 5500


async def test_concurrent_replays_move_once(app_client: httpx.AsyncClient) -> None:
    alice, bob = new_user_id(), new_user_id()
    await fund(app_client, alice, 100_000)
    headers = {"Idempotency-Key": f"race-{alice}"}
    body = {"from_user_id": alice, "to_user_id": bob, "amount_msat": 700}
    answers = await asyncio.gather(
        *[app_client.post("/virtual_transfer", json=body, headers=headers) for _ in range(20)]
    )
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["transfer_id"] for a in answers}) == 1
    assert await balance(app_client, alice) == 100_000 - 700


async def test_keys_are_per_caller(
    app_client: httpx.AsyncClient, scoped_keys: dict[Scope, str]
) -> None:
    """Another API key using the same Idempotency-Key string gets its own transfer."""
    alice, bob = new_user_id(), new_user_id()
    await fund(app_client, alice, 10_000)
    body = {"from_user_id": alice, "to_user_id": bob, "amount_msat": 100}
    headers = {"Idempotency-Key": f"shared-{alice}"}
    admin = await app_client.post("/virtual_transfer", json=body, headers=headers)
    spend = await app_client.post(
        "/virtual_transfer",
        json=body,
        headers={**headers, "Authorization": f"Bearer {scoped_keys[Scope.SPEND]}"},
    )
    assert admin.json()["transfer_id"] != spend.json()["transfer_id"]
    assert await balance(app_client, alice) == 9800


async def test_bad_idempotency_key(app_client: httpx.AsyncClient) -> None:
    alice, bob = new_user_id(), new_user_id()
    await fund(app_client, alice, 1000)
    for key in ("x" * 201, "has space"):
        response = await app_client.post(
            "/virtual_transfer",
            headers={"Idempotency-Key": key},
            json={"from_user_id": alice, "to_user_id": bob, "amount_msat": 1},
        )
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "invalid_idempotency_key"
    assert await balance(app_client, alice) == 1000
