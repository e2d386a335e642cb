"""LndHub credentials and tokens: issue, log in, refresh, expire, rotate, the invoice scope."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import make_settings, node_settings
from tests.integration.lndhub.conftest import Wallet, new_wallet, open_account, split_uri
from tests.lightning_support import SimControl
from tests.support import ADMIN_KEY, bearer, new_user_id, wait_until
from vnode.apikeys import Scope
from vnode.app import create_app
from vnode.client import VNodeClient, VNodeError
from vnode.lndhub import credentials


async def test_account_uri_imports_and_secrets_are_stored_as_hashes_only(
    app_client: httpx.AsyncClient, anonymous: httpx.AsyncClient, shared_conn: asyncpg.Connection
) -> None:
    user = new_user_id()
    account = await open_account(app_client, user)
    assert set(account) == {"user_id", "scope", "login", "password", "url"}
    assert account["user_id"] == user and account["scope"] == "spend"
    login, password, base = split_uri(account["url"])
    # BlueWallet splits on ':' and '@': neither may appear in the credentials.
    assert (login, password) == (account["login"], account["password"])
    assert not {":", "@"} & set(login + password)
    assert base == "http://vnode/lndhub"
    row = await shared_conn.fetchrow(
        "SELECT login, password_hash FROM lndhub_accounts WHERE user_id = $1", user
    )
    assert row is not None and row["login"] == login
    assert password not in row["password_hash"] and row["password_hash"].startswith("scrypt$")
    assert credentials.verify_password(password, row["password_hash"])
    assert not credentials.verify_password(password + "x", row["password_hash"])
    wallet = Wallet(anonymous, login, password)
    tokens = await wallet.authorize()
    stored = await shared_conn.fetch(
        "SELECT t.token_hash FROM lndhub_tokens t JOIN lndhub_accounts a ON a.id = t.account_id "
        "WHERE a.user_id = $1",
        user,
    )
    hashes = {bytes(r["token_hash"]) for r in stored}
    assert hashes == {
        credentials.token_hash(tokens["access_token"]),
        credentials.token_hash(tokens["refresh_token"]),
    }


async def test_public_url_names_the_uri(
    app_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = app_client.app.state.services.settings  # type: ignore[attr-defined]
    monkeypatch.setattr(settings, "public_url", "https://pay.example.org/")
    account = await open_account(app_client, new_user_id())
    assert account["url"].endswith("@https://pay.example.org/lndhub")


async def test_bad_auth_is_code_1_with_401(
    app_client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    _, wallet = await new_wallet(app_client, anonymous)
    for body in (
        {"login": wallet.login, "password": "wrong"},
        {"login": "0" * 20, "password": wallet.password},
        {"login": wallet.login},
        {},
        {"refresh_token": "nope"},
    ):
        response = await anonymous.post("/lndhub/auth", json=body)
        assert response.status_code == 401, body
        assert response.json() == {"error": True, "code": 1, "message": response.json()["message"]}
    for path in ("/balance", "/gettxs", "/getuserinvoices", "/getinfo", "/getpending"):
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "nope"}):
            response = await anonymous.get("/lndhub" + path, headers=headers)
            assert response.status_code == 401 and response.json()["code"] == 1, path


async def test_token_with_or_without_bearer_and_json_or_form_login(
    app_client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    _, wallet = await new_wallet(app_client, anonymous)
    form = await anonymous.post(
        "/lndhub/auth", data={"login": wallet.login, "password": wallet.password}
    )
    assert form.status_code == 200, form.text
    access = form.json()["access_token"]
    for header in (f"Bearer {access}", access, f"bearer  {access}"):
        response = await anonymous.get("/lndhub/balance", headers={"Authorization": header})
        assert response.status_code == 200, header
        assert response.json() == {"BTC": {"AvailableBalance": 0}}


async def test_refresh_gives_a_new_pair_once(
    app_client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    _, wallet = await new_wallet(app_client, anonymous)
    old_refresh = wallet.refresh
    # BlueWallet's refreshAcessToken: type=refresh_token, body {refresh_token}.
    refreshed = await anonymous.post(
        "/lndhub/auth?type=refresh_token", json={"refresh_token": old_refresh}
    )
    assert refreshed.status_code == 200, refreshed.text
    pair = refreshed.json()
    assert set(pair) == {"access_token", "refresh_token"}
    assert old_refresh not in pair.values() and wallet.access not in pair.values()
    ok = await anonymous.get(
        "/lndhub/balance", headers={"Authorization": f"Bearer {pair['access_token']}"}
    )
    assert ok.status_code == 200
    # Each refresh token works once; an access token is no refresh token.
    again = await anonymous.post(
        "/lndhub/auth?type=refresh_token", json={"refresh_token": old_refresh}
    )
    assert again.status_code == 401 and again.json()["code"] == 1
    access_as_refresh = await anonymous.post(
        "/lndhub/auth", data={"refresh_token": pair["access_token"]}
    )
    assert access_as_refresh.status_code == 401


async def test_rotation_revokes_every_earlier_token_and_password(
    app_client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    user, wallet = await new_wallet(app_client, anonymous)
    second = Wallet(anonymous, wallet.login, wallet.password, "zeus")
    await second.authorize()
    assert await wallet.balance_sats() == 0
    rotated = await open_account(app_client, user)
    assert rotated["login"] != wallet.login and rotated["password"] != wallet.password
    for old in (wallet, second):
        response = await old.get("/balance")
        assert response.status_code == 401 and response.json()["code"] == 1
        refresh = await anonymous.post(
            "/lndhub/auth?type=refresh_token", json={"refresh_token": old.refresh}
        )
        assert refresh.status_code == 401
    relogin = await anonymous.post(
        "/lndhub/auth", json={"login": wallet.login, "password": wallet.password}
    )
    assert relogin.status_code == 401
    fresh = Wallet(anonymous, rotated["login"], rotated["password"])
    await fresh.authorize()
    assert await fresh.balance_sats() == 0


async def test_tokens_expire_and_the_refresh_token_outlives_the_access_token(
    fresh_db: str, sim_node: str, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path,
        **node_settings(sim_node),
        lndhub_access_token_s=1,
        lndhub_refresh_token_s=3600,
        run_workers=False,
    )
    app = create_app(settings, fresh_db)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(
                transport=transport,
                base_url="http://vnode",
                headers=bearer(ADMIN_KEY),
            ) as admin,
            httpx.AsyncClient(transport=transport, base_url="http://vnode") as anonymous,
        ):
            _, wallet = await new_wallet(admin, anonymous)
            assert (await wallet.get("/balance")).status_code == 200

            async def expired() -> bool:
                return (await wallet.get("/balance")).status_code == 401

            await wait_until(expired, 10, "the access token to expire")
            assert wallet.seen[-1].json()["code"] == 1  # BlueWallet then refreshes
            refreshed = await anonymous.post(
                "/lndhub/auth?type=refresh_token", json={"refresh_token": wallet.refresh}
            )
            assert refreshed.status_code == 200, refreshed.text
            wallet.access = refreshed.json()["access_token"]
            assert (await wallet.get("/balance")).status_code == 200


async def test_invoice_scope_makes_invoices_and_reads_but_never_pays(
    app_client: httpx.AsyncClient, anonymous: httpx.AsyncClient, sim_node: str
) -> None:
    user, pos = await new_wallet(app_client, anonymous, scope="invoice", funded_msat=500_000)
    spend = await open_account(app_client, user, "spend")
    assert spend["login"] != pos.login  # two accounts, one per scope
    created = await pos.addinvoice(10, "coffee")
    assert created["payment_request"].startswith("lnbcrt")
    assert await pos.balance_sats() == 500
    for path in ("/gettxs", "/getuserinvoices", "/getpending", "/getbtc"):
        assert (await pos.get(path)).status_code == 200, path
    outside = await SimControl(sim_node).invoice(20_000)
    refused = await pos.payinvoice(outside)
    assert refused.status_code == 403
    assert refused.json()["error"] is True and refused.json()["code"] == 8
    assert await pos.balance_sats() == 500  # nothing held or spent


async def test_create_answers_no_new_accounts(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.post(
        "/lndhub/create", json={"partnerid": "bluewallet", "accounttype": "common"}
    )
    assert response.status_code == 403
    body = response.json()
    assert body["error"] is True and body["code"] == 11 and "/wallet" in body["message"]


async def test_virtual_lndhub_account_needs_spend_and_a_valid_body(
    app_client: httpx.AsyncClient, anonymous: httpx.AsyncClient, scoped_keys: dict[Scope, str]
) -> None:
    user = new_user_id()
    for scope in (Scope.READ, Scope.RECEIVE):
        response = await anonymous.post(
            "/virtual_lndhub_account",
            json={"user_id": user},
            headers={"Authorization": f"Bearer {scoped_keys[scope]}"},
        )
        assert response.status_code == 403, scope
    ok = await anonymous.post(
        "/virtual_lndhub_account",
        json={"user_id": user},
        headers={"Authorization": f"Bearer {scoped_keys[Scope.SPEND]}"},
    )
    assert ok.status_code == 200
    for body in ({"user_id": user, "scope": "admin"}, {"user_id": "x"}, {}):
        response = await app_client.post("/virtual_lndhub_account", json=body)
        assert response.status_code in (400, 422), body
        assert "code" in response.json()["error"]


async def test_typed_client_issues_and_rotates_credentials(
    app_client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    transport = httpx.ASGITransport(app=app_client.app)  # type: ignore[attr-defined]
    user = new_user_id()
    async with VNodeClient("http://vnode", ADMIN_KEY, transport=transport) as vnode:
        first = await vnode.lndhub_account(user)
        assert first.user_id == user and first.scope == "spend"
        assert first.url.startswith(f"lndhub://{first.login}:{first.password}@")
        wallet = Wallet(anonymous, first.login, first.password)
        await wallet.authorize()
        pos = await vnode.lndhub_account(str(user), scope="invoice")
        assert pos.scope == "invoice" and pos.login != first.login
        assert await wallet.balance_sats() == 0  # another scope's account: no rotation
        rotated = await vnode.lndhub_account(user)
        assert rotated.login != first.login
        assert (await wallet.get("/balance")).status_code == 401
        with pytest.raises(VNodeError) as refused:
            await vnode.lndhub_account(user, scope="admin")
        assert (refused.value.status, refused.value.code) == (422, "invalid_request")
