"""The console's security: no page or action without a session, a `console` key looks but never
acts, CSRF missing or wrong is refused, a session ends at logout, expiry and key revocation,
and a double submit of one form moves money once. The app in-process, a real database."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from tests.console_support import form_fields, hidden, login
from tests.support import ADMIN_KEY, new_user_id
from vnode.apikeys import Scope, create_key

PAGES = ["", "/payments", "/users", "/alerts", "/keys", "/actions", "/traffic", "/users/1"]


@pytest.fixture
async def console(app_client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the in-process app with no API key: only its cookies."""
    transport = httpx.ASGITransport(app=app_client.app)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url="http://vnode") as client:
        yield client


async def spendable(conn: asyncpg.Connection, user_id: int) -> int:
    found = await conn.fetchval(
        "SELECT spendable FROM ln_user_balances WHERE user_id = $1 AND asset_id = 'BTC'", user_id
    )
    return int(found or 0)


async def on_user_page(
    console: httpx.AsyncClient, app_client: httpx.AsyncClient
) -> tuple[int, dict[str, str]]:
    """An admin logged in, on a funded user's page: the user and the page's form fields."""
    user = await funded_user(app_client)
    await login(console, ADMIN_KEY)
    return user, await form_fields(console, f"/console/users/{user}")


async def funded_user(app_client: httpx.AsyncClient, amount_msat: int = 5_000) -> int:
    user = new_user_id()
    answer = await app_client.post(
        "/admin/credit", json={"user_id": user, "amount_msat": amount_msat, "reason": "fund"}
    )
    assert answer.status_code == 200, answer.text
    return user


async def test_no_page_and_no_action_without_a_session(
    console: httpx.AsyncClient, app_client: httpx.AsyncClient, shared_conn: asyncpg.Connection
) -> None:
    for page in PAGES:
        answer = await console.get("/console" + page)
        assert answer.status_code == 303, page
        assert answer.headers["location"] == "/console/login"
    user = await funded_user(app_client)
    form = {"move": "credit", "amount": "1000", "reason": "no session", "idem": "x" * 20}
    answer = await console.post(f"/console/users/{user}/move", data={**form, "csrf": "y" * 43})
    assert answer.status_code == 401
    assert await spendable(shared_conn, user) == 5_000
    # An API key is no session: the console reads only its cookie.
    answer = await console.get("/console", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert answer.status_code == 303


async def test_login_needs_a_console_or_admin_key_and_its_form_token(
    console: httpx.AsyncClient, scoped_keys: dict[Scope, str]
) -> None:
    for scope in (Scope.READ, Scope.RECEIVE, Scope.SPEND):
        answer = await login(console, scoped_keys[scope])
        assert answer.status_code == 403, scope
        assert "cannot open the console" in answer.text
    answer = await login(console, "vnk_" + "z" * 43)
    assert answer.status_code == 401 and "Unknown or revoked" in answer.text
    # The login form's CSRF token (a cookie of its own) is required too.
    console.cookies.clear()  # no login form was drawn: no token can match, empty or not
    for forged in ("forged" * 8, "", "\x00"):
        answer = await console.post("/console/login", data={"key": ADMIN_KEY, "csrf": forged})
        assert answer.status_code == (400 if forged == "\x00" else 403)  # 400: no NUL anywhere
    assert (await console.get("/console")).status_code == 303

    answer = await login(console, scoped_keys[Scope.CONSOLE])
    assert answer.status_code == 303 and answer.headers["location"] == "/console"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # no https public URL here
    page = await console.get("/console")
    assert page.status_code == 200 and "Solvency" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


async def test_a_console_key_looks_but_cannot_act(
    console: httpx.AsyncClient,
    app_client: httpx.AsyncClient,
    scoped_keys: dict[Scope, str],
    shared_conn: asyncpg.Connection,
) -> None:
    user = await funded_user(app_client)
    await login(console, scoped_keys[Scope.CONSOLE])
    page = await console.get(f"/console/users/{user}")
    assert page.status_code == 200
    assert 'id="move-form"' not in page.text  # no form to act with
    csrf = hidden((await console.get("/console")).text, "csrf")  # the logout form's
    before = await shared_conn.fetchval("SELECT count(*) FROM console_actions")
    for path, extra in [
        (f"/console/users/{user}/move", {"move": "credit", "amount": "1000"}),
        (f"/console/users/{user}/limits", {"send_max_msat": "1"}),
        ("/console/webhooks/retry", {}),
        ("/console/keys", {"name": "sneaky", "scope": "admin"}),
        ("/console/audit", {}),
    ]:
        form = {"csrf": csrf, "idem": "i" * 22 + path[-6:].replace("/", "-"), "reason": "try"}
        form.update(extra)
        answer = await console.post(path, data=form)
        assert answer.status_code == 403, path
        assert "can look but not act" in answer.text
    assert await spendable(shared_conn, user) == 5_000
    assert await shared_conn.fetchval("SELECT count(*) FROM console_actions") == before
    assert await shared_conn.fetchval("SELECT count(*) FROM api_keys WHERE name = 'sneaky'") == 0
    # The console scope reads the API as read does, and no more.
    headers = {"Authorization": f"Bearer {scoped_keys[Scope.CONSOLE]}"}
    balances = await console.post("/virtual_balances", json={"user_id": user}, headers=headers)
    assert balances.status_code == 200, balances.text
    credit = {"user_id": user, "amount_msat": 1, "reason": "x"}
    answer = await console.post("/admin/credit", json=credit, headers=headers)
    assert answer.status_code == 403


async def test_csrf_missing_or_wrong_is_refused(
    console: httpx.AsyncClient, app_client: httpx.AsyncClient, shared_conn: asyncpg.Connection
) -> None:
    user, fields = await on_user_page(console, app_client)
    form = {"move": "credit", "amount": "1000", "reason": "csrf test", "idem": fields["idem"]}
    for csrf in (None, "", "wrong" * 9, fields["csrf"][:-1]):
        data = form if csrf is None else {**form, "csrf": csrf}
        answer = await console.post(f"/console/users/{user}/move", data=data)
        assert answer.status_code == 403, csrf
        assert "CSRF" in answer.text
    assert await spendable(shared_conn, user) == 5_000
    # Logout is a form too.
    assert (await console.post("/console/logout", data={"csrf": "nope"})).status_code == 403
    assert (await console.get("/console")).status_code == 200


async def test_the_cookie_is_refused_after_logout_expiry_and_revocation(
    console: httpx.AsyncClient, shared_conn: asyncpg.Connection
) -> None:
    await login(console, ADMIN_KEY)
    cookie = console.cookies["vnode_console"]
    fields = await form_fields(console, "/console")
    answer = await console.post("/console/logout", data={"csrf": fields["csrf"]})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/login"
    console.cookies.set("vnode_console", cookie, path="/console")  # a copy kept from before
    assert (await console.get("/console")).status_code == 303
    answer = await console.post("/console/audit", data={**fields, "reason": "after logout"})
    assert answer.status_code == 401

    console.cookies.clear()
    await login(console, ADMIN_KEY)
    assert (await console.get("/console")).status_code == 200
    # Expiry is the server's: the row says when, whatever the browser keeps.
    await shared_conn.execute(
        "UPDATE console_sessions SET expires_at = now() - interval '1 second' "
        "WHERE ended_at IS NULL AND key_name = 'VNODE_ADMIN_KEY'"
    )
    assert (await console.get("/console")).status_code == 303

    info, key = await create_key(shared_conn, "console-revoked", Scope.CONSOLE)
    await login(console, key)
    assert (await console.get("/console/keys")).status_code == 200
    await shared_conn.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", info.id)
    assert (await console.get("/console/keys")).status_code == 303


async def test_a_double_submit_moves_money_once(
    console: httpx.AsyncClient, app_client: httpx.AsyncClient, shared_conn: asyncpg.Connection
) -> None:
    user, fields = await on_user_page(console, app_client)
    form = {**fields, "move": "credit", "amount": "7000", "reason": "goodwill", "asset_id": "BTC"}
    first = await console.post(f"/console/users/{user}/move", data=form)
    again = await console.post(f"/console/users/{user}/move", data=form)
    assert first.status_code == again.status_code == 200
    assert 'id="replayed"' not in first.text and 'id="replayed"' in again.text
    assert await spendable(shared_conn, user) == 12_000
    rows = await shared_conn.fetch(
        "SELECT action, reason, outcome FROM console_actions WHERE idempotency_key = $1",
        fields["idem"],
    )
    assert [tuple(r) for r in rows] == [("credit", "goodwill", "ok")]
    # The same form for another amount is another action: refused, nothing moved.
    answer = await console.post(f"/console/users/{user}/move", data={**form, "amount": "1"})
    assert answer.status_code == 422
    assert await spendable(shared_conn, user) == 12_000
    # The trail shows it.
    trail = await console.get("/console/actions")
    assert "goodwill" in trail.text and f"user:{user}" in trail.text


async def test_bad_forms_are_clear_4xx_and_change_nothing(
    console: httpx.AsyncClient, app_client: httpx.AsyncClient, shared_conn: asyncpg.Connection
) -> None:
    user, fields = await on_user_page(console, app_client)
    good = {**fields, "move": "debit", "amount": "1000", "reason": "fix"}
    path = f"/console/users/{user}/move"
    for change in (
        {"amount": "-5"},
        {"amount": "1.5"},
        {"amount": "9" * 30},
        {"amount": ""},
        {"move": "steal"},
        {"reason": "x"},
        {"asset_id": "DOGE"},
        {"idem": "short"},
    ):
        answer = await console.post(path, data={**good, **change})
        assert answer.status_code == 422, (change, answer.text[:200])
    answer = await console.post(path, data={**good, "reason": "two\nlines"})
    assert answer.status_code == 400 and "control character" in answer.text
    answer = await console.post(path, json=good)
    assert answer.status_code == 415
    answer = await console.post(
        path,
        content=b"csrf=a&csrf=b",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 400
    answer = await console.post(path, data={**good, "amount": "6000"})
    assert answer.status_code == 409 and "insufficient_balance" in answer.text
    assert await spendable(shared_conn, user) == 5_000
    for bad in ("/console/users/0", "/console/users/abc", "/console/payments/99999999999"):
        assert (await console.get(bad)).status_code in (404, 422), bad
    assert (await console.get("/console/traffic?window=year")).status_code == 400
    assert (await console.get("/console/static/../../settings.py")).status_code == 404
    assert hidden((await console.get("/console/users?q=nobody-here")).text, "csrf")


HOSTILE = [
    "",
    " ",
    "-1",
    "0",
    "1e3",
    "0x10",
    "１２",
    "²",
    "9" * 40,
    "\x00",
    "a\nb",
    "<script>",
    "%",
    "🙂" * 300,
]


async def test_hostile_values_in_every_field_are_4xx_never_500(
    console: httpx.AsyncClient, app_client: httpx.AsyncClient, shared_conn: asyncpg.Connection
) -> None:
    user, fields = await on_user_page(console, app_client)
    # Actions that do run act on this test's own things only (the database is shared): a key
    # of its own to revoke, and a webhook endpoint that does not exist.
    own, _ = await create_key(shared_conn, "hostile-test", Scope.READ)
    forms = {
        f"/console/users/{user}/move": ["move", "asset_id", "amount", "reason", "idem"],
        f"/console/users/{user}/limits": ["send_max_msat", "fee_max_msat", "reason", "idem"],
        "/console/webhooks/retry": ["webhook_id", "reason", "idem"],
        "/console/keys": ["name", "scope", "reason", "idem"],
        f"/console/keys/{own.id}/revoke": ["reason", "idem"],
        "/console/audit": ["reason", "idem"],
    }
    good = {"move": "debit", "asset_id": "BTC", "amount": "1", "reason": "fine reason"}
    good |= {"name": "k", "scope": "read", "send_max_msat": "", "fee_max_msat": ""}
    good |= {"webhook_id": "999999999"}
    for path, names in forms.items():
        for name in names:
            for value in HOSTILE:
                if name == "webhook_id" and not value.strip():
                    continue  # blank is "every endpoint": not this test's to retry
                # A fresh form key each time, so that each value is judged, not replayed.
                data = {**good, "csrf": fields["csrf"], "idem": secrets.token_urlsafe(18)}
                answer = await console.post(path, data={**data, name: value})
                assert answer.status_code < 500, (path, name, value, answer.text[:200])
    for query in HOSTILE:
        answer = await console.get("/console/users", params={"q": query})
        assert answer.status_code < 500, query
    # Whatever was accepted went through the money function: the ledger is consistent.
    assert await spendable(shared_conn, user) <= 5_000
    trail = await shared_conn.fetchval(
        "SELECT count(*) FROM console_actions WHERE outcome IS NULL AND target = $1",
        f"user:{user}",
    )
    assert trail == 0  # every recorded action finished with an outcome
