"""LNURL-pay end to end, through the strict client PyPI `lnurl` 2.0.2 (its models forbid any
field the LUDs do not define): address -> payRequest -> callback -> invoice (description hash
checked with vnode's own BOLT 11 reader) -> paid from outside through the simulated node ->
credited once -> verify says settled; and paid by another vnode user, inside the ledger.

The app runs in-process under uvicorn on a real loopback port, since the client makes its own
HTTP requests; VNODE_PUBLIC_URL is that loopback URL (plain http is allowed for loopback only).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import lnurl
import pytest
import uvicorn
from lnurl.models import (
    LnurlErrorResponse,
    LnurlPayActionResponse,
    LnurlPayResponse,
    LnurlPayVerifyResponse,
    LnurlResponse,
)

from tests.conftest import make_settings, node_settings
from tests.integration.api.test_api_transfer import balance, fund
from tests.integration.events.test_catalogue import check, data_of, envelopes
from tests.lightning_support import SimControl, assert_audit_clean
from tests.support import ADMIN_KEY, bearer, free_port, new_user_id, wait_until
from vnode.app import create_app
from vnode.lightning import bolt11

MIN_MSAT, MAX_MSAT, COMMENT_CHARS = 1_000, 50_000_000, 40


@pytest.fixture(scope="module")
async def served(
    shared_db: str, sim_node: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    """vnode on http://127.0.0.1:<port>, addresses on; yields an admin client of it."""
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    settings = make_settings(
        tmp_path_factory.mktemp("lnurl"),
        public_url=public_url,
        lnurl_min_sendable_msat=MIN_MSAT,
        lnurl_max_sendable_msat=MAX_MSAT,
        lnurl_comment_max_chars=COMMENT_CHARS,
        **node_settings(sim_node),
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, shared_db), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    await wait_until(started, 30, "vnode to listen")
    async with httpx.AsyncClient(base_url=public_url, headers=bearer(ADMIN_KEY)) as client:
        yield client
    server.should_exit = True
    await asyncio.wait_for(task, 30)


@pytest.fixture
def sim(sim_node: str) -> SimControl:
    return SimControl(sim_node)


async def address_of(client: httpx.AsyncClient, user_id: int) -> dict[str, Any]:
    name = f"Pay-{secrets.token_hex(4)}"
    assert (await client.post("/virtual_node", json={"user_id": user_id})).status_code == 200
    response = await client.post("/virtual_address", json={"user_id": user_id, "name": name})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def pay_request(address: dict[str, Any]) -> LnurlPayResponse:
    """Step 1 as a wallet does it: from the LNURL (LUD-01) of the address."""
    found = await lnurl.handle(address["lnurl"])
    assert isinstance(found, LnurlPayResponse), found
    return found


async def verify(url: str) -> LnurlPayVerifyResponse:
    found = await lnurl.get(url, response_class=LnurlPayVerifyResponse)
    assert isinstance(found, LnurlPayVerifyResponse)
    return found


async def receipts(shared_db: str, payment_hash: str) -> list[str]:
    conn = await asyncpg.connect(shared_db)
    try:
        rows = await conn.fetch(
            "SELECT source FROM ln_receipts WHERE payment_hash = $1", payment_hash
        )
        return [row["source"] for row in rows]
    finally:
        await conn.close()


async def events_of(shared_db: str, user_id: int) -> dict[int, list[dict[str, Any]]]:
    conn = await asyncpg.connect(shared_db)
    try:
        return await envelopes(conn, user_id)
    finally:
        await conn.close()


async def receipt_history(client: httpx.AsyncClient, user_id: int) -> list[dict[str, Any]]:
    page = (await client.post("/virtual_history", json={"user_id": user_id})).json()
    return [t for t in page["transactions"] if t["kind"] == "invoice_receipt"]


async def test_paid_from_outside_credited_once_and_verified(
    served: httpx.AsyncClient, sim: SimControl, shared_db: str
) -> None:
    alice = new_user_id()
    address = await address_of(served, alice)
    assert str(lnurl.decode(address["lnurl"]).url) == address["url"]

    request = await pay_request(address)
    assert (request.minSendable, request.maxSendable) == (MIN_MSAT, MAX_MSAT)
    assert request.commentAllowed == COMMENT_CHARS
    assert ("text/identifier", address["address"]) in request.metadata.list()
    assert str(request.callback).startswith(str(served.base_url))

    amount_msat = 21_001  # not whole sats: honoured to the msat (LUD-06)
    comment = "for the coffee ☕"
    action = await lnurl.execute_pay_request(request, amount_msat, comment=comment)
    assert isinstance(action, LnurlPayActionResponse)
    invoice = bolt11.decode(str(action.pr))
    assert invoice.amount_msat == amount_msat
    assert invoice.description is None
    assert invoice.matches_description(str(request.metadata))  # h = SHA-256(metadata)
    assert action.routes == [] and action.verify is not None
    verify_url = str(action.verify)

    before = await verify(verify_url)
    assert (before.settled, before.preimage, str(before.pr)) == (False, None, str(action.pr))

    paid = await sim.pay(str(action.pr))
    assert paid.status_code == 200, paid.text

    async def credited() -> bool:
        return await balance(served, alice) == amount_msat

    await wait_until(credited, 15, "the address's invoice to be credited")

    async def settled() -> bool:
        return (await verify(verify_url)).settled

    await wait_until(settled, 15, "verify to say settled")
    after = await verify(verify_url)
    assert after.preimage is not None
    assert hashlib.sha256(bytes.fromhex(after.preimage)).hexdigest() == invoice.payment_hash
    assert await receipts(shared_db, invoice.payment_hash) == ["node"]  # credited once
    entries = await receipt_history(served, alice)
    assert [(e["amount_msat"], e["memo"]) for e in entries] == [(amount_msat, comment)]
    assert await balance(served, alice) == amount_msat
    events = await events_of(shared_db, alice)
    check(events, {alice: ["invoice.paid"]})  # valid against its schema, once
    paid_event = data_of(events[alice], "invoice.paid")
    assert (paid_event["comment"], paid_event["source"]) == (comment, "node")
    assert paid_event["description"] == f"Payment to {address['address']}"
    await assert_audit_clean(shared_db)


async def test_an_internal_payer_is_settled_in_the_ledger(
    served: httpx.AsyncClient, shared_db: str
) -> None:
    """Another vnode user pays the address's invoice: no node, no fee; the payee is credited
    in the same transaction, with the comment, and verify says settled (no preimage: none was
    revealed)."""
    alice, bob = new_user_id(), new_user_id()
    address = await address_of(served, alice)
    await fund(served, bob, 100_000)
    action = await lnurl.execute_pay_request(await pay_request(address), 30_000, comment="rent")
    assert isinstance(action, LnurlPayActionResponse)
    paid = await served.post(
        "/virtual_sendpayment", json={"user_id": bob, "invoice": str(action.pr)}
    )
    assert paid.status_code == 200, paid.text
    assert paid.json()["kind"] == "internal" and paid.json()["status"] == "succeeded"
    assert await balance(served, bob) == 70_000
    assert await balance(served, alice) == 30_000
    assert [e["memo"] for e in await receipt_history(served, alice)] == ["rent"]
    events = await events_of(shared_db, alice)
    check(events, {alice: ["invoice.paid"]})
    assert data_of(events[alice], "invoice.paid")["comment"] == "rent"
    result = await verify(str(action.verify))
    assert (result.settled, result.preimage) == (True, None)
    again = await served.post(
        "/virtual_sendpayment", json={"user_id": bob, "invoice": str(action.pr)}
    )
    assert again.status_code == 409  # never paid twice
    assert await balance(served, alice) == 30_000
    await assert_audit_clean(shared_db)


async def lud_error(client: httpx.AsyncClient, path: str) -> str:
    """A refusal as the LUDs write it: HTTP 200, exactly status and reason."""
    response = await client.get(path)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"status", "reason"} and body["status"] == "ERROR", body
    assert isinstance(LnurlResponse.from_dict(dict(body)), LnurlErrorResponse)
    return str(body["reason"])


async def test_the_callback_refuses_what_the_payrequest_does_not_allow(
    served: httpx.AsyncClient,
) -> None:
    alice = new_user_id()
    address = await address_of(served, alice)
    callback = f"/lnurlp/{address['name']}/callback"
    assert "not between" in await lud_error(served, f"{callback}?amount={MIN_MSAT - 1}")
    assert "not between" in await lud_error(served, f"{callback}?amount={MAX_MSAT + 1}")
    for bad in ("", "abc", "-5", "1.5", "1e6", "99999999999999999999"):
        assert "whole number" in await lud_error(served, f"{callback}?amount={bad}")
    assert "whole number" in await lud_error(served, callback)
    long = "x" * (COMMENT_CHARS + 1)
    reason = await lud_error(served, f"{callback}?amount=5000&comment={long}")
    assert reason == f"Got a comment with {COMMENT_CHARS + 1} characters, but can only accept 40"
    assert "control" in await lud_error(served, f"{callback}?amount=5000&comment=a%0Ab")
    assert await lud_error(served, "/lnurlp/nobody-here/callback?amount=5000") == (
        "Lightning address not found"
    )
    assert await lud_error(served, "/.well-known/lnurlp/nobody-here") == (
        "Lightning address not found"
    )
    assert await lud_error(served, "/lnurlp/verify/" + "ab" * 32) == "Not found"
    assert await lud_error(served, "/lnurlp/verify/not-a-hash") == "Not found"
    # Nothing was made for the refused requests.
    assert await receipt_history(served, alice) == []


async def test_verify_reports_only_address_invoices(served: httpx.AsyncClient) -> None:
    """An ordinary invoice of a user is not LUD-21's to report, to anyone asking."""
    alice = new_user_id()
    made = await served.post("/virtual_lninvoice", json={"user_id": alice, "amt_msat": 5000})
    assert made.status_code == 200, made.text
    path = f"/lnurlp/verify/{made.json()['payment_hash']}"
    assert await lud_error(served, path) == "Not found"


async def test_the_strict_client_refuses_nothing_we_send(served: httpx.AsyncClient) -> None:
    """Every answer parses with the client's models, which forbid unknown fields."""
    address = await address_of(served, new_user_id())
    raw = (await served.get(f"/.well-known/lnurlp/{address['name']}")).json()
    assert set(raw) == {
        "tag",
        "callback",
        "minSendable",
        "maxSendable",
        "metadata",
        "commentAllowed",
    }
    LnurlPayResponse(**raw)
    action = (await served.get(f"/lnurlp/{address['name']}/callback?amount=2000")).json()
    assert set(action) == {"pr", "routes", "verify"}
    LnurlPayActionResponse(**action)
    status = (await served.get(action["verify"].removeprefix(str(served.base_url)))).json()
    assert set(status) == {"status", "settled", "preimage", "pr"}
    LnurlPayVerifyResponse(**status)


async def test_a_name_given_up_still_pays_its_former_owner(served: httpx.AsyncClient) -> None:
    """During the hold, payers who still use the old address pay its former owner, and the
    name cannot be claimed by someone else to catch those payments."""
    alice, mallory, payer = new_user_id(), new_user_id(), new_user_id()
    old = await address_of(served, alice)
    await address_of(served, alice)  # alice moves to a new name
    await served.post("/virtual_node", json={"user_id": mallory})
    taken = await served.post("/virtual_address", json={"user_id": mallory, "name": old["name"]})
    assert taken.status_code == 409
    await fund(served, payer, 50_000)
    action = await lnurl.execute_pay_request(await pay_request(old), 12_000)
    assert isinstance(action, LnurlPayActionResponse)
    paid = await served.post(
        "/virtual_sendpayment", json={"user_id": payer, "invoice": str(action.pr)}
    )
    assert paid.status_code == 200, paid.text
    assert await balance(served, alice) == 12_000
    assert await balance(served, mallory) == 0


async def test_the_range_follows_the_users_receive_limits(served: httpx.AsyncClient) -> None:
    """maxSendable is what the user's receive limits leave room for (docs/LIMITS.md); with no
    room at all, the address says so instead of offering an empty range."""
    alice = new_user_id()
    address = await address_of(served, alice)
    limited = await served.post(
        "/admin/limits", json={"user_id": alice, "receive_max_msat": 30_000}
    )
    assert limited.status_code == 200, limited.text
    request = await pay_request(address)
    assert (request.minSendable, request.maxSendable) == (MIN_MSAT, 30_000)
    callback = f"/lnurlp/{address['name']}/callback"
    assert "not between 1000 and 30000" in await lud_error(served, f"{callback}?amount=30001")
    action = await lnurl.execute_pay_request(request, 30_000)
    assert isinstance(action, LnurlPayActionResponse)

    await served.post("/admin/limits", json={"user_id": alice, "receive_max_msat": MIN_MSAT - 1})
    reason = await lud_error(served, f"/.well-known/lnurlp/{address['name']}")
    assert "receive limits leave no room" in reason
    assert "receive limits leave no room" in await lud_error(served, f"{callback}?amount=1000")
