"""Every LndHub read and /addinvoice, in the shapes the clients read (research file A.2)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter

from tests.integration.lndhub.conftest import Style, Wallet, new_wallet
from tests.lightning_support import SimControl
from tests.support import answer_held_payments_soon, wait_until
from vnode.lightning import bolt11
from vnode.lndhub import models

STYLES: list[Style] = ["bluewallet", "zeus", "alby", "form"]


def fits(model: Any, body: object) -> None:
    """The body validates against the documented model, which forbids unknown keys."""
    TypeAdapter(model).validate_python(body)


def is_buffer_of(value: object, hex_hash: str) -> bool:
    return value == {"type": "Buffer", "data": list(bytes.fromhex(hex_hash))}


async def test_bluewallet_import_sequence(
    app_client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    """class/wallet-import.ts: auth -> gettxs?limit=10&offset=0 -> getuserinvoices ->
    getpending -> balance; any failure fails the import."""
    _, wallet = await new_wallet(app_client, anonymous, funded_msat=1_234_999)
    txs = await wallet.get("/gettxs", {"limit": 10, "offset": 0})
    invoices = await wallet.get("/getuserinvoices")
    pending = await wallet.get("/getpending")
    balance = await wallet.get("/balance")
    assert [r.status_code for r in (txs, invoices, pending, balance)] == [200] * 4
    assert txs.json() == [] and invoices.json() == [] and pending.json() == []
    # Floored to whole sats: 1,234,999 msat is 1,234 sats spendable.
    assert balance.json() == {"BTC": {"AvailableBalance": 1234}}
    info = await wallet.get("/getinfo")
    assert info.status_code == 200
    fits(models.Info, info.json())
    assert len(info.json()["identity_pubkey"]) == 66


@pytest.mark.parametrize("style", STYLES)
async def test_addinvoice_shapes_and_getuserinvoices(
    app_client: httpx.AsyncClient, anonymous: httpx.AsyncClient, sim: SimControl, style: Style
) -> None:
    _, wallet = await new_wallet(app_client, anonymous, style=style)
    created = await wallet.addinvoice(21, "tip jar")
    fits(models.AddedInvoice, created)
    decoded = bolt11.decode(created["payment_request"])
    assert created["pay_req"] == created["payment_request"]
    assert is_buffer_of(created["r_hash"], decoded.payment_hash)
    assert created["hash"] == decoded.payment_hash
    assert decoded.amount_msat == 21_000 and decoded.description == "tip jar"
    listed = (await wallet.get("/getuserinvoices", {"limit": 20})).json()
    fits(list[models.UserInvoice], listed)
    (entry,) = listed
    assert entry["payment_request"] == created["payment_request"]
    assert entry["payment_hash"] == decoded.payment_hash
    assert is_buffer_of(entry["r_hash"], decoded.payment_hash)
    assert (entry["amt"], entry["ispaid"], entry["description"]) == (21, False, "tip jar")
    # Both numbers, and relative: BlueWallet adds them to find the expiry.
    assert isinstance(entry["timestamp"], int) and entry["expire_time"] == 86_400
    check = await wallet.get(f"/checkpayment/{decoded.payment_hash}")
    assert check.json() == {"paid": False}

    paid = await sim.pay(created["payment_request"])
    assert paid.status_code == 200, paid.text

    async def shows_paid() -> bool:
        (entry,) = (await wallet.get("/getuserinvoices")).json()
        return bool(entry["ispaid"])

    await wait_until(shows_paid, 15, "the invoice to show paid")
    assert (await wallet.get(f"/checkpayment/{decoded.payment_hash}")).json() == {"paid": True}
    assert await wallet.balance_sats() == 21


async def test_amountless_invoice_and_argument_refusals(
    app_client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    _, wallet = await new_wallet(app_client, anonymous)
    created = await wallet.addinvoice(0)
    assert bolt11.decode(created["payment_request"]).amount_msat is None
    for body in ({"amt": "-5"}, {"amt": "1.5"}, {"amt": True}, {"amt": "ten"}, {"memo": 7}):
        response = await wallet.post("/addinvoice", body)
        assert response.status_code == 400, body
        assert response.json()["error"] is True and response.json()["code"] == 8
    for bad in (b"[1, 2]", b'{"amt": '):
        response = await anonymous.post(
            "/lndhub/addinvoice",
            content=bad,
            headers={
                "Authorization": f"Bearer {wallet.access}",
                "Content-Type": "application/json",
            },
        )
        assert response.status_code == 400 and response.json()["code"] == 8
    bad_hash = await wallet.get("/checkpayment/zz")
    assert bad_hash.status_code == 400 and bad_hash.json()["code"] == 8
    unknown = await wallet.get("/checkpayment/" + "ab" * 32)
    assert unknown.status_code == 400 and unknown.json()["code"] == 8


async def test_paths_with_trailing_or_doubled_slashes_reach_their_routes(
    app_client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    _, wallet = await new_wallet(app_client, anonymous)
    headers = {"Authorization": f"Bearer {wallet.access}"}
    for path in ("/lndhub/balance/", "/lndhub//balance", "/lndhub///balance//"):
        response = await anonymous.get(path, headers=headers)
        assert response.status_code == 200, path
    # A base URL given with a trailing slash: `${base}/auth` becomes //auth.
    slashed = Wallet(anonymous, wallet.login, wallet.password, base="/lndhub/")
    await slashed.authorize()
    assert await slashed.balance_sats() == 0


async def test_decodeinvoice_getbtc_getpending(
    app_client: httpx.AsyncClient, anonymous: httpx.AsyncClient, sim: SimControl
) -> None:
    _, wallet = await new_wallet(app_client, anonymous)
    invoice = await sim.invoice(55_000)
    decoded = bolt11.decode(invoice)
    for path in ("/decodeinvoice", "/checkrouteinvoice"):
        response = await wallet.get(path, {"invoice": invoice})
        assert response.status_code == 200
        body = response.json()
        fits(models.DecodedInvoice, body)
        assert body["payment_hash"] == decoded.payment_hash
        assert body["num_satoshis"] == "55" and body["destination"] == decoded.payee_pubkey
    broken = await wallet.get("/decodeinvoice", {"invoice": "lnbc1garbage"})
    assert broken.status_code == 400 and broken.json()["code"] == 4
    missing = await wallet.get("/decodeinvoice")
    assert missing.status_code == 400 and missing.json()["code"] == 8
    # Never a fake on-chain address (money sent there would be lost).
    assert (await wallet.get("/getbtc")).json() == []
    assert (await wallet.get("/getpending")).json() == []


async def test_getuserinvoices_pages_past_100(
    app_client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    _, wallet = await new_wallet(app_client, anonymous, style="zeus")
    made = [
        i["payment_request"]
        for i in await asyncio.gather(*(wallet.addinvoice(1 + i) for i in range(130)))
    ]
    everything = (await wallet.get("/getuserinvoices")).json()
    assert len(everything) == 130
    pages: list[dict[str, Any]] = []
    for offset in range(0, 130, 50):
        page = (await wallet.get("/getuserinvoices", {"limit": 50, "offset": offset})).json()
        pages.extend(page)
    assert [p["payment_request"] for p in pages] == [e["payment_request"] for e in everything]
    assert {p["payment_request"] for p in pages} == set(made)
    assert len((await wallet.get("/getuserinvoices", {"limit": 20})).json()) == 20
    assert (await wallet.get("/getuserinvoices", {"limit": 10, "offset": 125})).json() == (
        everything[125:]
    )
    bad = await wallet.get("/getuserinvoices", {"limit": "-1"})
    assert bad.status_code == 400 and bad.json()["code"] == 8


async def test_balance_is_what_can_be_spent_now(
    app_client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    sim: SimControl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answer_held_payments_soon(app_client, monkeypatch)
    user, wallet = await new_wallet(app_client, anonymous, funded_msat=1_000_000)
    await sim.faults(next_payment="hold")
    invoice = await sim.invoice(100_000)
    held = await wallet.payinvoice(invoice)
    assert held.status_code == 202, held.text
    body = (await app_client.post("/virtual_assetbalance", json={"user_id": user})).json()
    # Settled minus what the in-flight payment holds (amount and fee reserve), floored.
    assert await wallet.balance_sats() == body["spendable_msat"] // 1000
    assert body["spendable_msat"] < 1_000_000 - 100_000
    await sim.release_all("fail")

    async def refunded() -> bool:
        return await wallet.balance_sats() == 1000

    await wait_until(refunded, 15, "the failed payment to be refunded")


async def test_openapi_documents_every_lndhub_operation(app_client: httpx.AsyncClient) -> None:
    spec = (await app_client.get("/openapi.json")).json()
    operations = {
        (method, path): operation
        for path, item in spec["paths"].items()
        if path.startswith("/lndhub/")
        for method, operation in item.items()
    }
    expected = {
        ("post", "/lndhub/create"),
        ("post", "/lndhub/auth"),
        ("post", "/lndhub/addinvoice"),
        ("post", "/lndhub/payinvoice"),
        *(
            ("get", f"/lndhub/{name}")
            for name in (
                "balance",
                "gettxs",
                "getuserinvoices",
                "getinfo",
                "getpending",
                "getbtc",
                "checkpayment/{payment_hash}",
                "decodeinvoice",
                "checkrouteinvoice",
            )
        ),
    }
    assert set(operations) == expected
    for (method, path), operation in operations.items():
        responses = operation["responses"]
        assert "413" in responses, path
        if path not in ("/lndhub/create", "/lndhub/auth"):
            assert {"200", "401"} <= set(responses), (method, path)
        errors = [r for status, r in responses.items() if status >= "400"]
        assert all("LndHubErrorBody" in str(r) for r in errors), path
        # Every {name} of the path is a declared parameter (schemathesis refuses the document
        # otherwise: make fuzz found /checkpayment/{payment_hash} undeclared).
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"{(\w+)}", path)), path
    queries = operations[("get", "/lndhub/gettxs")].get("parameters", [])
    assert {p["name"] for p in queries if p["in"] == "query"} == {"limit", "offset"}
    pay = operations[("post", "/lndhub/payinvoice")]["responses"]
    assert {"200", "202", "400", "401", "403", "409", "503"} <= set(pay)
    account = spec["paths"]["/virtual_lndhub_account"]["post"]
    assert "scope: spend" in account["summary"] and account.get("security")
