"""The LndHub API driven as its clients drive it: the real app in-process (tests/conftest.py
`app_client`, on the shared database and the simulated node), with wallets that send the
requests BlueWallet, Zeus, Alby and a form-posting Python client send (research file A.1-A.2)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import pytest

from tests.lightning_support import SimControl
from tests.support import new_user_id

Style = Literal["bluewallet", "zeus", "alby", "form"]


async def open_account(
    admin: httpx.AsyncClient, user_id: int, scope: str = "spend"
) -> dict[str, Any]:
    """POST /virtual_lndhub_account with the tests' admin key (scope spend and above)."""
    response = await admin.post(
        "/virtual_lndhub_account", json={"user_id": str(user_id), "scope": scope}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def split_uri(uri: str) -> tuple[str, str, str]:
    """BlueWallet's import of `lndhub://login:password@base`: split on the first `@`, then
    on `:` (class/wallet-import.ts)."""
    assert uri.startswith("lndhub://")
    secret, _, base = uri.removeprefix("lndhub://").partition("@")
    login, _, password = secret.partition(":")
    return login, password, base


@dataclass
class Wallet:
    """One wallet app signed in to one account: its request shapes and its tokens."""

    client: httpx.AsyncClient
    login: str
    password: str
    style: Style = "bluewallet"
    base: str = "/lndhub"
    access: str = ""
    refresh: str = ""
    seen: list[httpx.Response] = field(default_factory=list)

    def _headers(self, token: str | None = None) -> dict[str, str]:
        token = self.access if token is None else token
        # A form-posting Python client sends the bare token; the apps send Bearer.
        return {"Authorization": token if self.style == "form" else f"Bearer {token}"}

    async def post(self, path: str, body: dict[str, Any], *, auth: bool = True) -> httpx.Response:
        headers = self._headers() if auth else {}
        if self.style == "form":
            response = await self.client.post(
                self.base + path, data={k: str(v) for k, v in body.items()}, headers=headers
            )
        else:
            response = await self.client.post(self.base + path, json=body, headers=headers)
        self.seen.append(response)
        return response

    async def get(self, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        response = await self.client.get(self.base + path, params=params, headers=self._headers())
        self.seen.append(response)
        return response

    async def authorize(self) -> dict[str, Any]:
        response = await self.post(
            "/auth?type=auth", {"login": self.login, "password": self.password}, auth=False
        )
        assert response.status_code == 200, response.text
        tokens: dict[str, Any] = response.json()
        self.access, self.refresh = tokens["access_token"], tokens["refresh_token"]
        return tokens

    async def addinvoice(self, amt: int, memo: str = "") -> dict[str, Any]:
        # BlueWallet sends the amount as a string (`amt + ''`), Zeus and Alby as a number.
        amount: object = str(amt) if self.style in ("bluewallet", "form") else amt
        response = await self.post("/addinvoice", {"amt": amount, "memo": memo})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def payinvoice(self, invoice: str, amount: int = 0) -> httpx.Response:
        # BlueWallet always sends `amount` (0 unless amountless); the others only when needed.
        body: dict[str, Any] = {"invoice": invoice}
        if self.style == "bluewallet" or amount:
            body["amount"] = amount
        return await self.post("/payinvoice", body)

    async def balance_sats(self) -> int:
        response = await self.get("/balance")
        assert response.status_code == 200, response.text
        return int(response.json()["BTC"]["AvailableBalance"])


@pytest.fixture
async def anonymous(app_client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the same in-process app without the admin key: what a wallet app is."""
    transport = httpx.ASGITransport(app=app_client.app)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url="http://vnode") as client:
        yield client


@pytest.fixture
def sim(sim_node: str) -> SimControl:
    return SimControl(sim_node)


async def fund(admin: httpx.AsyncClient, user_id: int, amount_msat: int) -> None:
    response = await admin.post(
        "/admin/credit", json={"user_id": user_id, "amount_msat": amount_msat, "reason": "test"}
    )
    assert response.status_code == 200, response.text


async def new_wallet(
    admin: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    *,
    style: Style = "bluewallet",
    scope: str = "spend",
    user_id: int | None = None,
    funded_msat: int = 0,
) -> tuple[int, Wallet]:
    """A user with an account of `scope`, signed in from a wallet of `style` that imported
    the account's lndhub:// URI."""
    user = new_user_id() if user_id is None else user_id
    account = await open_account(admin, user, scope)
    login, password, base = split_uri(account["url"])
    wallet = Wallet(anonymous, login, password, style, base=urlsplit(base).path)
    if funded_msat:
        await fund(admin, user, funded_msat)
    await wallet.authorize()
    return user, wallet
