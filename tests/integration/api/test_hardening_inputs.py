"""Hostile input is answered 4xx, never 500, never buffered (security review 1: M3, L6, L7)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from starlette.types import Receive, Scope, Send

from tests.conftest import WEBHOOK_SECRET
from tests.integration.api.test_api_transfer import balance, fund
from tests.lightning_support import assert_audit_clean
from tests.support import ADMIN_KEY, RGB_ASSET, bearer, new_user_id
from vnode.bot.inbox import WebhookInbox
from vnode.domain.signing import SIGNATURE_HEADER, SignatureError, sign, verify

LIMIT = 64 * 1024  # the default VNODE_MAX_BODY_BYTES
EVERY_KIND_OF_ROUTE = [
    "/virtual_sendpayment",  # FastAPI, body model: read before the key was checked
    "/webhook/payment",  # no key at all; the route reads the body itself
    "/admin/credit",  # admin scope
    "/virtual_transfer",  # the fast path
    "/virtual_assetbalance",  # the fast path, read scope
]


@pytest.fixture
async def anonymous(app_client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """The same app, without the admin key the app_client sends."""
    transport = httpx.ASGITransport(app=app_client.app)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url="http://vnode") as client:
        yield client


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, (response.status_code, response.text[:300])
    body = response.json()
    assert body["error"]["code"] == "payload_too_large"
    assert str(LIMIT) in body["error"]["message"]
    assert body["request_id"] == response.headers["x-request-id"]
    # The server is asked to drop the connection rather than read the rest of the upload.
    assert response.headers["connection"] == "close"


# --- M3: one body limit for every route ---------------------------------------------------


@pytest.mark.parametrize("path", EVERY_KIND_OF_ROUTE)
async def test_m3_body_limit_every_route(anonymous: httpx.AsyncClient, path: str) -> None:
    # Content-Length above the limit: refused before auth, before JSON parsing.
    declared = await anonymous.post(
        path, content=b"{" + b" " * LIMIT + b"}", headers={"Content-Type": "application/json"}
    )
    assert_too_large(declared)
    # At the limit exactly, the route gets to say what it thinks (401, or the webhook's 401).
    at_limit = await anonymous.post(
        path, content=b"{" + b" " * (LIMIT - 2) + b"}", headers={"Content-Type": "application/json"}
    )
    assert at_limit.status_code == 401, at_limit.text


async def test_m3_body_limit_with_a_key(app_client: httpx.AsyncClient) -> None:
    # An admin key does not lift the limit either.
    for path in EVERY_KIND_OF_ROUTE:
        assert_too_large(await app_client.post(path, content=b"[" + b"0," * LIMIT + b"0]"))

    # A length no int() would parse (5,000 digits) is a 413 too, not a 500.
    async def huge_length(scope: Scope, receive: Receive, send: Send) -> None:
        scope["headers"] = [
            (n, b"9" * 5000 if n == b"content-length" else v) for n, v in scope["headers"]
        ]
        await app_client.app(scope, receive, send)  # type: ignore[attr-defined]

    transport = httpx.ASGITransport(app=huge_length)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://vnode", headers=bearer(ADMIN_KEY)
    ) as client:
        assert_too_large(await client.post("/admin/credit", content=b"{}"))
    # A chunked body of exactly the limit is served.
    user = new_user_id()
    raw = orjson.dumps({"user_id": user, "amount_msat": 7000, "reason": "streamed"})
    padded = raw[:-1] + b" " * (LIMIT - len(raw) - 1) + b"}"  # exactly the limit, in pieces

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(padded), 4096):
            yield padded[start : start + 4096]

    credited = await app_client.post(
        "/admin/credit", content=pieces(), headers={"Content-Type": "application/json"}
    )
    assert credited.status_code == 200, credited.text
    assert await balance(app_client, user) == 7000


@pytest.mark.parametrize(
    ("path", "with_key"),
    [
        ("/virtual_sendpayment", False),
        ("/webhook/payment", False),
        ("/admin/credit", True),
        ("/virtual_transfer", True),
    ],
)
async def test_m3_streamed_body_is_counted_while_read(
    anonymous: httpx.AsyncClient, path: str, with_key: bool
) -> None:
    """No Content-Length (chunked): the 413 comes once the limit is passed, and the app stops
    asking for more, however much the client would still send."""
    chunk = b" " * 8192
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        yield b"{"
        while pulled < 100 * 1024 * 1024:  # 100 MiB, if anything kept reading
            pulled += len(chunk)
            yield chunk

    headers = {"Content-Type": "application/json", **(bearer(ADMIN_KEY) if with_key else {})}
    response = await anonymous.post(path, content=endless(), headers=headers)
    assert "content-length" not in response.request.headers
    assert_too_large(response)
    assert pulled <= LIMIT + len(chunk), pulled


# --- L6: an RGB invoice without an amount ---------------------------------------------------


async def _make_legacy(conn: asyncpg.Connection, payment_hash: str) -> None:
    """Turn an invoice into one made before migration 0009 (RGB, no asset_amount): the table
    refuses such rows now, so lift its (NOT VALID) check for this one update."""
    async with conn.transaction():
        checked = await conn.fetchval(
            "SELECT true FROM pg_constraint WHERE conname = 'ln_invoices_rgb_asset_amount'"
        )
        await conn.execute(
            "ALTER TABLE ln_invoices DROP CONSTRAINT IF EXISTS ln_invoices_rgb_asset_amount"
        )
        await conn.execute(
            "UPDATE ln_invoices SET asset_amount = NULL WHERE payment_hash = $1", payment_hash
        )
        if checked:
            await conn.execute(
                "ALTER TABLE ln_invoices ADD CONSTRAINT ln_invoices_rgb_asset_amount "
                "CHECK (asset_id = 'BTC' OR asset_amount IS NOT NULL) NOT VALID"
            )


async def test_l6_rgb_invoice_without_asset_amount(
    app_client: httpx.AsyncClient, shared_conn: asyncpg.Connection, shared_db: str
) -> None:
    alice, bob = new_user_id(), new_user_id()
    refused = await app_client.post(
        "/virtual_lninvoice", json={"user_id": bob, "asset_id": RGB_ASSET}
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "amount_fields"
    assert "asset_amount" in refused.json()["error"]["message"]
    # An invoice made before this change: the internal payment is a 422 and moves nothing.
    created = await app_client.post(
        "/virtual_lninvoice", json={"user_id": bob, "asset_id": RGB_ASSET, "asset_amount": 10}
    )
    assert created.status_code == 200, created.text
    payment_hash = created.json()["payment_hash"]
    await _make_legacy(shared_conn, payment_hash)
    await fund(app_client, alice, 10_000_000)
    await fund(app_client, alice, asset_amount=500, asset_id=RGB_ASSET)
    # The table refuses such an invoice too, whatever path would try.
    with pytest.raises(asyncpg.CheckViolationError):
        await shared_conn.execute(
            "INSERT INTO ln_invoices (payment_hash, user_id, invoice, asset_id, expires_at) "
            "VALUES ($1, $2, $3, $4, now() + interval '1 hour')",
            "ab" * 32,
            alice,
            f"lnbcrt-legacy-{alice}",
            RGB_ASSET,
        )
    paid = await app_client.post(
        "/virtual_sendpayment", json={"user_id": alice, "invoice": created.json()["invoice"]}
    )
    assert paid.status_code == 422, paid.text
    assert paid.json()["error"]["code"] == "amount_required"
    assert await balance(app_client, alice) == 10_000_000
    assert await balance(app_client, alice, RGB_ASSET) == 500
    assert await balance(app_client, bob) == 0
    assert await balance(app_client, bob, RGB_ASSET) == 0
    assert (
        await shared_conn.fetchval(
            "SELECT count(*) FROM ln_payments WHERE payment_hash = $1", payment_hash
        )
        == 0
    )
    assert (
        await shared_conn.fetchval(
            "SELECT status FROM ln_invoices WHERE payment_hash = $1", payment_hash
        )
        == "open"
    )
    await assert_audit_clean(shared_db)


# --- L7: hostile inputs that gave 500 -------------------------------------------------------


async def test_l7_history_cursor_out_of_range(app_client: httpx.AsyncClient) -> None:
    user = new_user_id()
    await fund(app_client, user, 1000)
    for cursor in ("h9999999999999999999", "h9223372036854775808", "h²", "h0", "h007"):
        response = await app_client.post(
            "/virtual_history", json={"user_id": user, "cursor": cursor}
        )
        assert response.status_code == 422, (cursor, response.text)
        assert response.json()["error"]["code"] == "invalid_cursor"
    # The largest bigint is still a cursor (every entry is older than it).
    top = await app_client.post(
        "/virtual_history", json={"user_id": user, "cursor": "h9223372036854775807"}
    )
    assert top.status_code == 200 and len(top.json()["transactions"]) == 1


HOSTILE_TIMESTAMPS = ["9" * 400, "1" * 5000, "²", "-1", " 1", "1e9", ""]


async def test_l7_signature_huge_timestamp(anonymous: httpx.AsyncClient) -> None:
    body = b'{"payment_hash": "' + b"0" * 64 + b'"}'
    for t in HOSTILE_TIMESTAMPS:
        header = f"t={t},v1=00"
        with pytest.raises(SignatureError):
            verify(WEBHOOK_SECRET.encode(), header, body, 300)
        response = await anonymous.post(
            "/webhook/payment",
            content=body,
            headers=[
                (SIGNATURE_HEADER.encode(), header.encode()),
                (b"content-type", b"application/json"),
            ],
        )
        assert response.status_code == 401, (t[:10], response.text)
        assert response.json()["error"]["code"] == "invalid_signature"

    # The bot's inbox verifies vnode's webhooks with the same function.
    async def handle(_envelope: dict[str, Any]) -> None:
        raise AssertionError("an unsigned event must not be handled")

    inbox = WebhookInbox(b"bot-secret", 300, "/vnode", handle)
    async with TestClient(TestServer(inbox.app())) as bot:
        for t in HOSTILE_TIMESTAMPS:
            answer = await bot.post("/vnode", data=body, headers={SIGNATURE_HEADER: f"t={t},v1=00"})
            assert answer.status == 401, (t[:10], await answer.text())
            assert (await answer.json())["error"]["code"] == "invalid_signature"


async def test_l7_webhook_metadata_non_ascii_digit(
    app_client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    bob = new_user_id()
    created = await app_client.post("/virtual_lninvoice", json={"user_id": bob, "amt_msat": 5000})
    assert created.status_code == 200, created.text
    for claimed in ("vn_²", "²", "vn_" + "9" * 5000, "9" * 20, True, 1.5, [bob]):
        raw = orjson.dumps(
            {
                "payment_hash": created.json()["payment_hash"],
                "amount_msat": 5000,
                "metadata": orjson.dumps({"user_id": claimed}).decode(),
            }
        )
        response = await anonymous.post(
            "/webhook/payment",
            content=raw,
            headers={
                SIGNATURE_HEADER: sign(WEBHOOK_SECRET.encode(), raw),
                "Content-Type": "application/json",
            },
        )
        assert response.status_code == 422, (str(claimed)[:12], response.text)
        assert response.json()["error"]["code"] == "invalid_user_id"
    assert await balance(app_client, bob) == 0
