"""Flow 1 through the HTTP API: the brief's body, the extra fields, and every refusal."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support import new_user_id

RGB = "rgb:CJkb4YZw-jRiz2sk-~PARPio-wtVYI1c-XAEYCqO-wTfvRZ8"


async def fund(
    client: httpx.AsyncClient,
    user_id: int,
    amount_msat: int = 0,
    asset_amount: int = 0,
    asset_id: str = "BTC",
) -> None:
    body: dict[str, Any] = {"user_id": user_id, "reason": "test funding", "asset_id": asset_id}
    body.update(
        {"amount_msat": amount_msat} if asset_id == "BTC" else {"asset_amount": asset_amount}
    )
    response = await client.post("/admin/credit", json=body)
    assert response.status_code == 200, response.text


async def balance(client: httpx.AsyncClient, user_id: int, asset_id: str = "BTC") -> int:
    response = await client.post(
        "/virtual_assetbalance", json={"user_id": str(user_id), "asset_id": asset_id}
    )
    if response.status_code == 404:
        return -1
    data = response.json()
    return int(data["balance_msat"] if asset_id == "BTC" else data["balance"])


async def history_count(client: httpx.AsyncClient, user_id: int) -> int:
    response = await client.post("/virtual_history", json={"user_id": user_id, "limit": 200})
    return len(response.json()["transactions"]) if response.status_code == 200 else -1


async def test_brief_body_exactly(app_client: httpx.AsyncClient) -> None:
    alice, bob = new_user_id(), new_user_id()
    await fund(app_client, alice, 10_000_000)
    response = await app_client.post(
        "/virtual_transfer", json={"from_user_id": alice, "to_user_id": bob, "amount_sats": 5000}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["amount_sats"] == 5000 and body["amount_msat"] == 5_000_000
    assert body["from_node_id"] == f"vn_{alice}" and body["to_node_id"] == f"vn_{bob}"
    assert body["sender_balance"] == {"balance_msat": 5_000_000, "balance_sats": 5000}
    assert body["fee_msat"] == 0 and body["status"] == "completed"
    assert isinstance(body["transfer_id"], int) and body["created_at"].endswith("Z")
    assert await balance(app_client, alice) == 5_000_000
    assert await balance(app_client, bob) == 5_000_000


async def test_recipient_node_created_on_first_use(app_client: httpx.AsyncClient) -> None:
    alice, newcomer = new_user_id(), new_user_id()
    await fund(app_client, alice, 1000)
    assert await balance(app_client, newcomer) == -1  # no node yet
    response = await app_client.post(
        "/virtual_transfer",
        json={"from_user_id": f"vn_{alice}", "to_user_id": str(newcomer), "amount_msat": 1},
    )
    assert response.status_code == 200, response.text
    node = await app_client.post("/virtual_node", json={"user_id": newcomer})
    assert node.json()["node_id"] == f"vn_{newcomer}"
    assert await balance(app_client, newcomer) == 1


@pytest.mark.parametrize("amount_msat", [1, 999, 1000, 1001])
async def test_msat_amounts_and_sats_rounding(
    app_client: httpx.AsyncClient, amount_msat: int
) -> None:
    alice, bob = new_user_id(), new_user_id()
    await fund(app_client, alice, 5000)
    response = await app_client.post(
        "/virtual_transfer",
        json={"from_user_id": alice, "to_user_id": bob, "amount_msat": amount_msat},
    )
    body = response.json()
    assert body["amount_msat"] == amount_msat
    assert body["amount_sats"] == amount_msat // 1000  # display rounds down
    assert body["sender_balance"]["balance_msat"] == 5000 - amount_msat
    assert body["sender_balance"]["balance_sats"] == (5000 - amount_msat) // 1000


async def test_rgb_asset_transfer_keeps_assets_apart(app_client: httpx.AsyncClient) -> None:
    alice, bob = new_user_id(), new_user_id()
    await fund(app_client, alice, asset_amount=100, asset_id=RGB)
    await fund(app_client, alice, 7000)
    response = await app_client.post(
        "/virtual_transfer",
        json={
            "from_user_id": alice,
            "to_user_id": bob,
            "asset_id": RGB,
            "asset_amount": 40,
            "memo": "coffee",
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["asset_amount"] == 40 and "amount_msat" not in response.json()
    assert await balance(app_client, alice, RGB) == 60
    assert await balance(app_client, bob, RGB) == 40
    assert await balance(app_client, alice) == 7000
    assert await balance(app_client, bob) == 0
    balances = (await app_client.post("/virtual_balances", json={"user_id": alice})).json()
    assert [b["asset_id"] for b in balances["balances"]] == ["BTC", RGB]


BAD_BODIES: list[tuple[str, dict[str, Any], int, str]] = [
    ("zero", {"amount_sats": 0}, 422, "invalid_amount"),
    ("negative", {"amount_sats": -5}, 422, "invalid_amount"),
    ("fractional", {"amount_sats": 1.5}, 422, "invalid_amount"),
    ("float whole", {"amount_sats": 5.0}, 422, "invalid_amount"),
    ("boolean", {"amount_sats": True}, 422, "invalid_amount"),
    ("string", {"amount_sats": "5000"}, 422, "invalid_amount"),
    ("null amount", {"amount_msat": None}, 422, "amount_fields"),
    ("over 2^63", {"amount_msat": 2**63}, 422, "invalid_amount"),
    ("sats over 2^63 msat", {"amount_sats": 2**63 // 1000 + 1}, 422, "invalid_amount"),
    ("huge", {"amount_msat": 10**40}, 422, "invalid_amount"),
    ("both amounts", {"amount_sats": 1, "amount_msat": 1000}, 422, "amount_fields"),
    ("no amount", {}, 422, "amount_fields"),
    ("asset_amount for BTC", {"asset_amount": 5}, 422, "amount_fields"),
    ("msat for RGB", {"asset_id": RGB, "amount_msat": 5}, 422, "amount_fields"),
    ("bad asset", {"asset_id": "ETH", "amount_sats": 1}, 422, "invalid_asset_id"),
    ("lowercase btc", {"asset_id": "btc", "amount_sats": 1}, 422, "invalid_asset_id"),
    ("asset as number", {"asset_id": 5, "amount_sats": 1}, 422, "invalid_asset_id"),
    ("memo too long", {"amount_sats": 1, "memo": "x" * 257}, 422, "invalid_memo"),
    ("memo control char", {"amount_sats": 1, "memo": "a\x00b"}, 422, "invalid_memo"),
    ("unknown field", {"amount_sats": 1, "amount_sat": 1}, 422, "invalid_request"),
    ("insufficient", {"amount_sats": 1001}, 409, "insufficient_balance"),
]


@pytest.mark.parametrize(
    ("case", "extra", "status", "code"), BAD_BODIES, ids=[row[0] for row in BAD_BODIES]
)
async def test_refusals_change_nothing(
    app_client: httpx.AsyncClient, case: str, extra: dict[str, Any], status: int, code: str
) -> None:
    alice, bob = new_user_id(), new_user_id()
    await fund(app_client, alice, 1_000_000)
    before = await history_count(app_client, alice)
    response = await app_client.post(
        "/virtual_transfer", json={"from_user_id": alice, "to_user_id": bob, **extra}
    )
    assert response.status_code == status, response.text
    error = response.json()
    assert error["error"]["code"] == code
    assert error["error"]["message"] and error["request_id"]
    assert response.headers["x-request-id"] == error["request_id"]
    assert await balance(app_client, alice) == 1_000_000
    assert await balance(app_client, bob) == -1  # the recipient's node was not created
    assert await history_count(app_client, alice) == before


BAD_USERS: list[tuple[str, Any]] = [
    ("zero", 0),
    ("negative", -1),
    ("boolean", True),
    ("float", 12.0),
    ("leading zero", "0123"),
    ("signed string", "+123"),
    ("spaces", " 123"),
    ("hex", "0x10"),
    ("over 2^63", 2**63),
    ("bad prefix", "vx_123"),
    ("empty", ""),
    ("list", [1]),
    ("null", None),
]


@pytest.mark.parametrize(("case", "user_id"), BAD_USERS, ids=[row[0] for row in BAD_USERS])
async def test_malformed_user_ids(app_client: httpx.AsyncClient, case: str, user_id: Any) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 1000)
    for body in (
        {"from_user_id": alice, "to_user_id": user_id, "amount_msat": 1},
        {"from_user_id": user_id, "to_user_id": alice, "amount_msat": 1},
    ):
        response = await app_client.post("/virtual_transfer", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_user_id"
    assert await balance(app_client, alice) == 1000


async def test_self_transfer_refused(app_client: httpx.AsyncClient) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 1000)
    response = await app_client.post(
        "/virtual_transfer",
        json={"from_user_id": alice, "to_user_id": f"vn_{alice}", "amount_msat": 1},
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "self_transfer"
    assert await history_count(app_client, alice) == 1


async def test_unknown_sender(app_client: httpx.AsyncClient) -> None:
    ghost, bob = new_user_id(), new_user_id()
    response = await app_client.post(
        "/virtual_transfer", json={"from_user_id": ghost, "to_user_id": bob, "amount_msat": 1}
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_user"
    assert await balance(app_client, bob) == -1


async def test_invalid_json_and_wrong_content(app_client: httpx.AsyncClient) -> None:
    broken = await app_client.post(
        "/virtual_transfer",
        content=b'{"from_user_id": 1,',
        headers={"Content-Type": "application/json"},
    )
    assert broken.status_code == 400
    assert broken.json()["error"]["code"] == "invalid_json"
    not_object = await app_client.post("/virtual_transfer", json=[1, 2])
    assert not_object.status_code == 422
    assert not_object.json()["error"]["code"] == "invalid_request"


async def test_memo_is_kept_in_history(app_client: httpx.AsyncClient) -> None:
    alice, bob = new_user_id(), new_user_id()
    await fund(app_client, alice, 1000)
    await app_client.post(
        "/virtual_transfer",
        json={"from_user_id": alice, "to_user_id": bob, "amount_msat": 10, "memo": "for pizza 🍕"},
    )
    entries = (await app_client.post("/virtual_history", json={"user_id": bob})).json()
    assert entries["transactions"][0]["memo"] == "for pizza 🍕"
    assert entries["transactions"][0]["counterparty"] == f"vn_{alice}"
    assert entries["transactions"][0]["direction"] == "in"
