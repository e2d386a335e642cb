"""Per-user limits through LndHub (docs/LIMITS.md): a limit_exceeded refusal is LndHub's code
2, with the text that names the limit, and nothing is made or paid."""

from __future__ import annotations

import httpx

from tests.integration.lndhub.conftest import new_wallet
from tests.lightning_support import SimControl


async def test_limits_refuse_addinvoice_and_payinvoice_with_code_2(
    app_client: httpx.AsyncClient, anonymous: httpx.AsyncClient, sim: SimControl
) -> None:
    user, wallet = await new_wallet(app_client, anonymous, funded_msat=10_000_000)
    limits = {"user_id": user, "receive_max_msat": 5_000_000, "send_max_msat": 1_000_000}
    assert (await app_client.post("/admin/limits", json=limits)).status_code == 200
    made = await wallet.post("/addinvoice", {"amt": "5001", "memo": "too much"})
    assert made.status_code == 400, made.text
    assert made.json()["code"] == 2 and "receive_max_msat" in made.json()["message"]
    assert (await wallet.get("/getuserinvoices")).json() == []
    paid = await wallet.payinvoice(await sim.invoice(1_000_001))
    assert paid.status_code == 400, paid.text
    assert paid.json()["code"] == 2 and "send_max_msat" in paid.json()["message"]
    assert await wallet.balance_sats() == 10_000
