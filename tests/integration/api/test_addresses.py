"""Lightning Addresses: claiming names (rules, reserved words, uniqueness, one per user, the
hold on a name given up), reading them, and the service with addresses off. The LNURL-pay
conversation itself, with a strict client and the node, is tests/e2e/lnurl/."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_settings
from tests.integration.api.test_response_models import Answers
from tests.support import in_process, new_user_id, wait_until
from vnode.app import create_app
from vnode.lnurl.names import RESERVED_NAMES
from vnode.settings import Settings

PUBLIC_URL = "https://pay.example.com"


@asynccontextmanager
async def running_app(
    shared_db: str, data_dir: Path, **overrides: object
) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process with addresses on (no node: claiming a name needs none)."""
    settings = make_settings(data_dir, public_url=PUBLIC_URL, run_workers=False, **overrides)
    app = create_app(settings, shared_db)
    async with in_process(app) as client:
        yield client


@pytest.fixture(scope="module")
async def client(
    shared_db: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(shared_db, tmp_path_factory.mktemp("addresses")) as client:
        yield client


def unique_name(prefix: str = "user") -> str:
    return f"{prefix}-{secrets.token_hex(5)}"


async def claim(client: httpx.AsyncClient, user_id: int, name: str) -> httpx.Response:
    """The user's node first (a claim needs it), then the claim."""
    assert (await client.post("/virtual_node", json={"user_id": user_id})).status_code == 200
    return await client.post("/virtual_address", json={"user_id": user_id, "name": name})


async def test_a_user_without_a_node_gets_nothing(client: httpx.AsyncClient) -> None:
    """A refused claim changes nothing: no node is made for it."""
    stranger = new_user_id()
    body = {"user_id": stranger, "name": unique_name()}
    response = await client.post("/virtual_address", json=body)
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_user"
    balances = await client.post("/virtual_balances", json={"user_id": stranger})
    assert balances.status_code == 404
    assert (await client.get(f"/.well-known/lnurlp/{body['name']}")).json()["status"] == "ERROR"


async def test_a_claimed_name_is_the_users_address(client: httpx.AsyncClient) -> None:
    alice = new_user_id()
    name = unique_name("Alice")
    response = await claim(client, alice, name)
    assert response.status_code == 200, response.text
    body = response.json()
    lower = name.lower()
    assert body["name"] == lower  # case-insensitive: stored lower-case (LUD-16)
    assert body["address"] == f"{lower}@pay.example.com"
    assert body["url"] == f"{PUBLIC_URL}/.well-known/lnurlp/{lower}"
    assert body["user_id"] == alice and body["node_id"] == f"vn_{alice}"
    assert body["lnurl"].startswith("LNURL1")
    shown = await client.post("/virtual_address_info", json={"user_id": alice})
    assert shown.status_code == 200 and shown.json() == body
    # Claiming the name one has (in any case) changes nothing.
    again = await claim(client, alice, name.upper())
    assert again.status_code == 200 and again.json() == body


async def test_the_payrequest_names_the_user_of_the_address(client: httpx.AsyncClient) -> None:
    name = unique_name()
    assert (await claim(client, new_user_id(), name)).status_code == 200
    response = await client.get(f"/.well-known/lnurlp/{name.upper()}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "tag",
        "callback",
        "minSendable",
        "maxSendable",
        "metadata",
        "commentAllowed",
    }
    assert body["callback"] == f"{PUBLIC_URL}/lnurlp/{name}/callback"
    assert f'["text/identifier","{name}@pay.example.com"]' in body["metadata"]
    # Deterministic: the invoice commits to this exact string's hash.
    assert (await client.get(f"/.well-known/lnurlp/{name}")).json() == body


@pytest.mark.parametrize(
    "name", ["", "a" * 65, "al ice", "alice@x", "ålice", "al/ice", "alice\n", "...", "-_"]
)
async def test_names_outside_lud16_are_refused(client: httpx.AsyncClient, name: str) -> None:
    user = new_user_id()
    response = await claim(client, user, name)
    assert response.status_code == 422, response.text
    expected = "invalid_request" if name == "" or len(name) > 200 else "invalid_address_name"
    assert response.json()["error"]["code"] == expected
    missing = await client.post("/virtual_address_info", json={"user_id": user})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "no_address"


@pytest.mark.parametrize("name", ["admin", "Support", "vnode", "lnurlp", "POSTMASTER"])
async def test_reserved_names_are_refused(client: httpx.AsyncClient, name: str) -> None:
    assert name.lower() in RESERVED_NAMES
    response = await claim(client, new_user_id(), name)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "address_reserved"
    assert (await client.get(f"/.well-known/lnurlp/{name}")).json()["status"] == "ERROR"


async def test_a_name_has_one_owner_whatever_its_case(client: httpx.AsyncClient) -> None:
    name = unique_name()
    alice, bob = new_user_id(), new_user_id()
    assert (await claim(client, alice, name)).status_code == 200
    taken = await claim(client, bob, name.upper())
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "address_taken"
    assert (await client.post("/virtual_address_info", json={"user_id": bob})).status_code == 404


async def test_a_user_has_one_address_and_the_old_name_stays_theirs(
    client: httpx.AsyncClient,
) -> None:
    """Changing names gives the old one up, but it is held for its owner: it still pays them,
    nobody else may claim it (they would receive payments meant for the former owner), and the
    owner may take it back."""
    alice, mallory = new_user_id(), new_user_id()
    old, new = unique_name("old"), unique_name("new")
    assert (await claim(client, alice, old)).status_code == 200
    moved = await claim(client, alice, new)
    assert moved.status_code == 200 and moved.json()["name"] == new
    shown = await client.post("/virtual_address_info", json={"user_id": alice})
    assert shown.json()["name"] == new
    intercept = await claim(client, mallory, old)
    assert intercept.status_code == 409 and intercept.json()["error"]["code"] == "address_taken"
    still = await client.get(f"/.well-known/lnurlp/{old}")
    assert still.json()["tag"] == "payRequest"  # it still resolves (to alice)
    back = await claim(client, alice, old)
    assert back.status_code == 200 and back.json()["name"] == old
    # Now `new` is the one held for alice.
    assert (await claim(client, mallory, new)).status_code == 409


async def test_a_name_given_up_is_free_for_others_after_the_hold(
    shared_db: str, tmp_path: Path
) -> None:
    async with running_app(shared_db, tmp_path, address_hold_s=1) as client:
        alice, bob = new_user_id(), new_user_id()
        old = unique_name("old")
        assert (await claim(client, alice, old)).status_code == 200
        assert (await claim(client, alice, unique_name("new"))).status_code == 200

        async def bob_gets_it() -> bool:
            return (await claim(client, bob, old)).status_code == 200

        await wait_until(bob_gets_it, 10, "the held name to be free after the hold")
        info = await client.post("/virtual_address_info", json={"user_id": bob})
        assert info.json()["name"] == old
        # Back with its new owner: alice cannot take it back.
        assert (await claim(client, alice, old)).status_code == 409


async def test_addresses_off_without_a_public_url(app_client: httpx.AsyncClient) -> None:
    """app_client has no VNODE_PUBLIC_URL: the API says not_configured, the LNURL endpoints
    answer the LUDs' ERROR (404: the resource does not exist here)."""
    response = await claim(app_client, new_user_id(), unique_name())
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_configured"
    for path in (
        "/.well-known/lnurlp/alice",
        "/lnurlp/alice/callback?amount=1000",
        "/lnurlp/verify/" + "00" * 32,
    ):
        off = await app_client.get(path)
        assert off.status_code == 404, path
        assert off.json() == {
            "status": "ERROR",
            "reason": "Lightning Addresses are not enabled on this service",
        }


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://pay.example.com", True),
        ("https://pay.example.com/vnode/", True),
        ("http://127.0.0.1:3001", True),
        ("http://localhost:8080", True),
        ("http://[::1]:8080", True),
        ("http://pay.example.com", False),  # plain http only for loopback
        ("http://10.0.0.1", False),
        ("https://user:pw@pay.example.com", False),
        ("https://pay.example.com/?x=1", False),
        ("ftp://pay.example.com", False),
        ("pay.example.com", False),
    ],
)
def test_public_url_is_https_or_loopback_http(url: str, accepted: bool, tmp_path: Path) -> None:
    if accepted:
        assert Settings(data_dir=tmp_path, public_url=url).public_url == url.rstrip("/")
    else:
        with pytest.raises(ValueError, match="VNODE_PUBLIC_URL"):
            Settings(data_dir=tmp_path, public_url=url)


async def test_racing_claims_of_one_name_have_one_winner(client: httpx.AsyncClient) -> None:
    name = unique_name("race")
    users = [new_user_id() for _ in range(6)]
    answers = await asyncio.gather(*(claim(client, user, name) for user in users))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [409] * 5, [a.text for a in answers]
    winner = next(u for u, a in zip(users, answers, strict=True) if a.status_code == 200)
    for user in users:
        info = await client.post("/virtual_address_info", json={"user_id": user})
        assert info.status_code == (200 if user == winner else 404)


async def test_racing_claims_of_one_user_leave_one_current_name(
    client: httpx.AsyncClient,
) -> None:
    alice = new_user_id()
    names = [unique_name("mine") for _ in range(5)]
    answers = await asyncio.gather(*(claim(client, alice, name) for name in names))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    current = (await client.post("/virtual_address_info", json={"user_id": alice})).json()
    assert current["name"] in names
    # Every other name is held for alice: nobody else can claim any of them.
    for name in names:
        assert (await claim(client, new_user_id(), name)).status_code == 409


async def test_no_invoice_without_the_node(client: httpx.AsyncClient) -> None:
    """This app has no node: the callback makes nothing and says so, 503 in the LUDs' words."""
    name = unique_name()
    assert (await claim(client, new_user_id(), name)).status_code == 200
    response = await client.get(f"/lnurlp/{name}/callback", params={"amount": "5000"})
    assert response.status_code == 503
    body = response.json()
    assert set(body) == {"status", "reason"} and body["status"] == "ERROR"


async def test_address_answers_fit_their_model(client: httpx.AsyncClient) -> None:
    answers = Answers(client)
    alice = new_user_id()
    await client.post("/virtual_node", json={"user_id": alice})
    claimed = await answers.post("/virtual_address", {"user_id": alice, "name": unique_name()})
    assert await answers.post("/virtual_address_info", {"user_id": alice}) == claimed
    assert set(answers.seen) == {"LightningAddress"}


async def test_without_comments_the_payrequest_offers_none(shared_db: str, tmp_path: Path) -> None:
    async with running_app(shared_db, tmp_path, lnurl_comment_max_chars=0) as client:
        name = unique_name()
        assert (await claim(client, new_user_id(), name)).status_code == 200
        body = (await client.get(f"/.well-known/lnurlp/{name}")).json()
        assert "commentAllowed" not in body and body["tag"] == "payRequest"
        refused = await client.get(
            f"/lnurlp/{name}/callback", params={"amount": "5000", "comment": "hi"}
        )
        assert refused.status_code == 200
        assert refused.json() == {
            "status": "ERROR",
            "reason": "Got a comment with 2 characters, but can only accept 0",
        }


def test_the_sendable_range_must_be_a_range(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="VNODE_LNURL_MIN_SENDABLE_MSAT"):
        Settings(data_dir=tmp_path, lnurl_min_sendable_msat=2000, lnurl_max_sendable_msat=1000)


async def test_callbacks_are_rate_limited_per_address(shared_db: str, tmp_path: Path) -> None:
    """The callback is public and each one makes a node invoice: with a rate per address, one
    over it is a 429 LUD ERROR with Retry-After, and other addresses are not held back."""
    overrides = {"rate_limit_address_per_s": 0.001, "rate_limit_address_burst": 2}
    async with running_app(shared_db, tmp_path, **overrides) as client:
        busy, other = unique_name("busy"), unique_name("other")
        for name in (busy, other):
            assert (await claim(client, new_user_id(), name)).status_code == 200
        for _ in range(2):
            answer = await client.get(f"/lnurlp/{busy}/callback", params={"amount": "x"})
            assert answer.status_code == 200 and "whole number" in answer.json()["reason"]
        over = await client.get(f"/lnurlp/{busy}/callback", params={"amount": "5000"})
        assert over.status_code == 429
        assert int(over.headers["Retry-After"]) >= 1
        assert set(over.json()) == {"status", "reason"} and over.json()["status"] == "ERROR"
        fine = await client.get(f"/lnurlp/{other}/callback", params={"amount": "x"})
        assert fine.status_code == 200
        # The payRequest is not counted: wallets fetch it freely.
        assert (await client.get(f"/.well-known/lnurlp/{busy}")).json()["tag"] == "payRequest"
