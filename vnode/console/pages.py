"""Rendering the console's pages: the Jinja2 environment, its filters, and the headers every
page carries (no caching of money figures, no framing, scripts and styles from vnode only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

HEADERS = {
    "Cache-Control": "no-store",
    # Inline SVG plots need no script; styles come only from /console/static.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def amount(value: int | None, asset_id: str | None = "BTC") -> str:
    """An amount as a person reads it: msat of BTC as sats (with the msat when not whole),
    an asset's base units as they are; thousands separated by a thin space."""
    if value is None:
        return "—"
    if asset_id in (None, "BTC"):
        sats, msat = divmod(value, 1000)
        text = f"{sats:,}".replace(",", "\u2009") + " sat"
        return text if msat == 0 else f"{text} + {msat} msat"
    return f"{value:,}".replace(",", "\u2009")


def age(value: timedelta | datetime | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        value = datetime.now(UTC) - value
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{max(seconds, 0)} s"


def when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["amount"] = amount
    env.filters["age"] = age
    env.filters["when"] = when
    return env


def render(name: str, status_code: int, **context: object) -> HTMLResponse:
    html = environment().get_template(name).render(**context)
    return HTMLResponse(html, status_code, headers=HEADERS)
