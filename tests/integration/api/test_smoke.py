from __future__ import annotations

import httpx

from tests.support import new_user_id


async def test_credit_then_transfer(app_client: httpx.AsyncClient) -> None:
    alice, bob = new_user_id(), new_user_id()
    credit = await app_client.post(
        "/admin/credit", json={"user_id": alice, "amount_msat": 10_000, "reason": "funding"}
    )
    assert credit.status_code == 200, credit.text
    sent = await app_client.post(
        "/virtual_transfer",
        json={"from_user_id": alice, "to_user_id": str(bob), "amount_msat": 4_000},
    )
    assert sent.status_code == 200, sent.text
    assert sent.json()["sender_balance"]["balance_msat"] == 6_000
