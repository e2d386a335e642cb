"""Free text (an invoice description, an operator's reason) with control characters is
refused with a clear error: PostgreSQL cannot store NUL, and it once answered 500 (found by
make fuzz)."""

from __future__ import annotations

import httpx
import pytest

from tests.support import new_user_id


@pytest.mark.parametrize("text", ["tea\x00", "a\x07b", "\x1b[31mred"])
async def test_control_characters_are_refused(app_client: httpx.AsyncClient, text: str) -> None:
    user = new_user_id()
    invoice = await app_client.post(
        "/virtual_lninvoice", json={"user_id": user, "amt_msat": 1000, "description": text}
    )
    credit = await app_client.post(
        "/admin/credit", json={"user_id": user, "amount_msat": 1000, "reason": text}
    )
    for answer in (invoice, credit):
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == "invalid_request"
    balance = await app_client.post("/virtual_assetbalance", json={"user_id": user})
    assert balance.status_code == 404  # nothing was created or credited


async def test_tabs_and_newlines_are_fine(app_client: httpx.AsyncClient) -> None:
    credit = await app_client.post(
        "/admin/credit",
        json={"user_id": new_user_id(), "amount_msat": 1000, "reason": "welcome\n\tbonus"},
    )
    assert credit.status_code == 200, credit.text
