"""Helpers of the console's tests (tests/integration/console, tests/e2e/console): logging in
over HTTP and reading the hidden fields of a page's forms."""

from __future__ import annotations

import re

import httpx

_HIDDEN = re.compile(r'<input type="hidden" name="(csrf|idem)" value="([^"]+)">')


def hidden(html: str, name: str) -> str:
    """The first hidden field `name` (csrf or idem) of a page."""
    for found, value in _HIDDEN.findall(html):
        if found == name:
            return str(value)
    raise AssertionError(f"no hidden {name} field in the page")


async def login(client: httpx.AsyncClient, key: str) -> httpx.Response:
    """Log in with `key` as the login form does; the client keeps the session cookie."""
    page = await client.get("/console/login")
    return await client.post("/console/login", data={"csrf": hidden(page.text, "csrf"), "key": key})


async def form_fields(client: httpx.AsyncClient, path: str) -> dict[str, str]:
    """The csrf and a fresh idem of a page's forms, as a person's browser would send them."""
    page = await client.get(path)
    assert page.status_code == 200, page.text[:300]
    return {"csrf": hidden(page.text, "csrf"), "idem": hidden(page.text, "idem")}
