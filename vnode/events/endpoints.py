"""Webhook endpoints: subscriptions the operator adds, lists, rotates and removes, and their
dead letters.

An endpoint is a URL, the event types it wants (none: every type) and a secret that signs each
delivery (Standard Webhooks, vnode/events/webhooks.py), `whsec_` and the base64 of 32 random
bytes. The secret is kept in clear because every delivery needs it, and it is shown once, when
the endpoint is created or its secret rotated; listings never carry it. A rotation keeps the
replaced secret signing deliveries beside the new one for a grace period (24 h by default), so
the receiver can switch to the new secret at any time within it. A URL must pass the SSRF guard
(`ssrf.check_url`) when it is added, and again before each delivery. Removing an endpoint is
soft (`removed_at`): its pending deliveries stop, and the history of what it received stays.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeAlias
from urllib.parse import urlsplit

import asyncpg

from vnode.db.pool import DbConnection
from vnode.events.catalogue import EVENT_TYPES
from vnode.events.delivery import channel_lock_key, retry_dead
from vnode.events.ssrf import check_url
from vnode.events.webhooks import SECRET_PREFIX

SECRET_BYTES = 32
# How long a replaced secret still signs deliveries after a rotation, unless told otherwise.
DEFAULT_GRACE_S = 24 * 3600
MAX_GRACE_S = 7 * 24 * 3600
URL_MAX_CHARS = 2048
DESCRIPTION_MAX_CHARS = 200
DEAD_LETTERS_MAX = 1000
REMOVED_ERROR = "endpoint removed"

# The queries below run on a connection or straight on a pool.
Db: TypeAlias = "DbConnection | asyncpg.Pool"


class InvalidUrl(ValueError):
    """The text is not an http(s) URL a webhook can have."""


class InvalidEventType(ValueError):
    pass


@dataclass(frozen=True)
class WebhookInfo:
    id: int
    url: str
    event_types: tuple[str, ...]  # empty: every type
    description: str | None
    created_at: datetime
    removed_at: datetime | None
    pending: int = 0  # deliveries waiting (or backing off)
    dead: int = 0  # deliveries in the dead-letter list
    secret_rotated_at: datetime | None = None
    # While a rotation's grace period lasts: until when the replaced secret still signs.
    previous_secret_until: datetime | None = None

    @property
    def channel(self) -> str:
        return f"webhook:{self.id}"


@dataclass(frozen=True)
class DeadLetter:
    webhook_id: int
    url: str
    outbox_id: int
    event_id: str
    event_type: str
    user_id: int
    seq: int
    attempts: int
    last_error: str | None
    event_created_at: datetime
    first_tried_at: datetime  # when the delivery was queued (or last requeued)


@dataclass(frozen=True)
class Rotated:
    endpoint: WebhookInfo
    secret: str  # the new secret, only ever returned here
    previous_secret_until: datetime | None  # None: the replaced secret no longer signs


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def parse_url(text: str) -> str:
    """The URL in a normal form, or InvalidUrl: http(s), a host, no credentials, printable."""
    if len(text) > URL_MAX_CHARS:
        raise InvalidUrl(f"a webhook URL has at most {URL_MAX_CHARS} characters")
    if any(c.isspace() or not c.isprintable() for c in text):
        raise InvalidUrl("a webhook URL has no spaces or control characters")
    try:
        parts = urlsplit(text)
        port = parts.port  # ValueError on a port that is not a number in range
    except ValueError as exc:
        raise InvalidUrl(f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidUrl("a webhook URL is http(s)://host/...")
    if port == 0:
        raise InvalidUrl("port 0 is not a port a webhook can listen on")
    try:
        parts.hostname.encode("idna")  # what resolving it will do (empty or overlong labels)
    except UnicodeError:
        raise InvalidUrl(f"{parts.hostname[:100]!r} is not a valid host name") from None
    if parts.username is not None or parts.password is not None:
        raise InvalidUrl(
            "credentials in a webhook URL are not accepted; authenticate the "
            "deliveries by their signature"
        )
    if parts.fragment:
        raise InvalidUrl("a webhook URL has no #fragment")
    return parts.geturl()


def parse_event_types(types: Iterable[str]) -> tuple[str, ...]:
    """Known types, each once, in the catalogue's order; empty means every type."""
    wanted = set()
    for event_type in types:
        if event_type not in EVENT_TYPES:
            raise InvalidEventType(
                f"unknown event type {event_type!r}; known: {', '.join(EVENT_TYPES)}"
            )
        wanted.add(event_type)
    return tuple(t for t in EVENT_TYPES if t in wanted)


async def check_endpoint_url(text: str, allow_hosts: frozenset[str]) -> str:
    """parse_url, then the SSRF guard (UnsafeUrl for private, link-local, metadata targets)."""
    url = parse_url(text)
    await check_url(url, allow_hosts)
    return url


async def create_endpoint(
    db: Db,
    url: str,
    event_types: Iterable[str],
    allow_hosts: frozenset[str],
    description: str | None = None,
) -> tuple[WebhookInfo, str]:
    """Add an endpoint; returns it and its signing secret (only ever returned here).

    Raises InvalidUrl, UnsafeUrl (ssrf) or InvalidEventType, before anything is stored."""
    types = parse_event_types(event_types)
    checked = await check_endpoint_url(url, allow_hosts)
    secret = new_secret()
    row = await db.fetchrow(
        "INSERT INTO webhook_endpoints (url, event_types, secret, description) "
        "VALUES ($1, $2, $3, $4) "
        "RETURNING id, url, event_types, description, created_at, removed_at, "
        "  secret_rotated_at, "
        "  CASE WHEN previous_secret_until > now() THEN previous_secret_until END "
        "  AS previous_secret_until",
        checked,
        list(types),
        secret,
        description,
    )
    assert row is not None
    return _info(row), secret


_LIST = """
    SELECT w.id, w.url, w.event_types, w.description, w.created_at, w.removed_at,
           w.secret_rotated_at,
           CASE WHEN w.previous_secret_until > now() THEN w.previous_secret_until END
           AS previous_secret_until,
           (SELECT count(*) FROM event_deliveries d
            WHERE d.channel = 'webhook:' || w.id AND d.status = 'pending') AS pending,
           (SELECT count(*) FROM event_deliveries d
            WHERE d.channel = 'webhook:' || w.id AND d.status = 'dead') AS dead
    FROM webhook_endpoints w
    WHERE ($1 OR w.removed_at IS NULL) AND ($2::bigint IS NULL OR w.id = $2)
    ORDER BY w.id"""


async def list_endpoints(db: Db, *, include_removed: bool = False) -> list[WebhookInfo]:
    """Endpoints with their queue sizes; never their secrets."""
    return [_info(row) for row in await db.fetch(_LIST, include_removed, None)]


async def get_endpoint(db: Db, webhook_id: int) -> WebhookInfo | None:
    """An active endpoint, or None."""
    row = await db.fetchrow(_LIST, False, webhook_id)
    return None if row is None else _info(row)


async def remove_endpoint(db: Db, webhook_id: int) -> WebhookInfo | None:
    """Remove an active endpoint (None if there is none with this id). Its deliveries still
    pending are closed as dead with last_error 'endpoint removed'; nothing more is sent to it.

    Waits for a delivery to this endpoint in flight in any process (the channel's delivery
    lock), so nothing is sent to the endpoint once this returns."""
    async with _transaction(db) as conn:
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1)", channel_lock_key(f"webhook:{webhook_id}")
        )
        row = await conn.fetchrow(
            "UPDATE webhook_endpoints SET removed_at = now() "
            "WHERE id = $1 AND removed_at IS NULL "
            "RETURNING id, url, event_types, description, created_at, removed_at, "
            "  secret_rotated_at, "
            "  CASE WHEN previous_secret_until > now() THEN previous_secret_until END "
            "  AS previous_secret_until",
            webhook_id,
        )
        if row is None:
            return None
        await conn.execute(
            "UPDATE event_deliveries SET status = 'dead', last_error = $2 "
            "WHERE channel = $1 AND status = 'pending'",
            f"webhook:{webhook_id}",
            REMOVED_ERROR,
        )
        return _info(row)


async def rotate_secret(db: Db, webhook_id: int, grace_s: int = DEFAULT_GRACE_S) -> Rotated | None:
    """Give an active endpoint a new secret (None if there is none with this id).

    For `grace_s` seconds the replaced secret still signs every delivery beside the new one
    (two signatures in `webhook-signature`), then only the new one does; with 0 the replaced
    secret stops at once. A rotation during another one's grace period drops the secret
    replaced then: at most two secrets sign a delivery."""
    if not 0 <= grace_s <= MAX_GRACE_S:
        raise ValueError(f"the grace period is 0 to {MAX_GRACE_S} seconds")
    secret = new_secret()
    grace = timedelta(seconds=grace_s) if grace_s else None
    # (On the right-hand side, `secret` is the value being replaced. A replaced secret past its
    # grace period is as good as gone: never shown, never signing.)
    row = await db.fetchrow(
        "UPDATE webhook_endpoints SET "
        "  previous_secret = CASE WHEN $3::interval IS NULL THEN NULL ELSE secret END, "
        "  previous_secret_until = now() + $3::interval, "
        "  secret = $2, secret_rotated_at = now() "
        "WHERE id = $1 AND removed_at IS NULL "
        "RETURNING id, url, event_types, description, created_at, removed_at, "
        "  secret_rotated_at, "
        "  CASE WHEN previous_secret_until > now() THEN previous_secret_until END "
        "  AS previous_secret_until",
        webhook_id,
        secret,
        grace,
    )
    if row is None:
        return None
    info = _info(row)
    return Rotated(info, secret, info.previous_secret_until)


async def dead_letters(db: Db, webhook_id: int | None = None, limit: int = 100) -> list[DeadLetter]:
    """Deliveries that kept failing past the retry period, of active endpoints, oldest first."""
    rows = await db.fetch(
        "SELECT w.id AS webhook_id, w.url, o.id AS outbox_id, o.event_id, o.event_type, "
        "       o.user_id, o.user_seq, d.attempts, d.last_error, o.created_at, d.created_at "
        "       AS first_tried_at "
        "FROM event_deliveries d "
        "JOIN webhook_endpoints w ON d.channel = 'webhook:' || w.id AND w.removed_at IS NULL "
        "JOIN outbox o ON o.id = d.outbox_id "
        "WHERE d.status = 'dead' AND ($1::bigint IS NULL OR w.id = $1) "
        "ORDER BY d.outbox_id, w.id LIMIT $2",
        webhook_id,
        max(1, min(limit, DEAD_LETTERS_MAX)),
    )
    return [
        DeadLetter(
            row["webhook_id"],
            row["url"],
            row["outbox_id"],
            str(row["event_id"]),
            row["event_type"],
            row["user_id"],
            row["user_seq"],
            row["attempts"],
            row["last_error"],
            row["created_at"],
            row["first_tried_at"],
        )
        for row in rows
    ]


async def retry_dead_letters(pool: asyncpg.Pool, webhook_id: int | None = None) -> int | None:
    """Queue an endpoint's dead deliveries again (or those of every active endpoint), for
    another full retry period; returns how many, or None when there is no such endpoint."""
    if webhook_id is not None:
        if await get_endpoint(pool, webhook_id) is None:
            return None
        return await retry_dead(pool, f"webhook:{webhook_id}")
    requeued = 0
    for endpoint in await list_endpoints(pool):
        if endpoint.dead:
            requeued += await retry_dead(pool, endpoint.channel)
    return requeued


def _info(row: asyncpg.Record) -> WebhookInfo:
    keys = row.keys()
    return WebhookInfo(
        row["id"],
        row["url"],
        tuple(row["event_types"]),
        row["description"],
        row["created_at"],
        row["removed_at"],
        row["pending"] if "pending" in keys else 0,
        row["dead"] if "dead" in keys else 0,
        row["secret_rotated_at"],
        row["previous_secret_until"],
    )


@asynccontextmanager
async def _transaction(db: Db) -> AsyncIterator[DbConnection]:
    """A transaction on `db`, or on a connection borrowed from it when it is a pool."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn, conn.transaction():
            yield conn
    else:
        async with db.transaction():
            yield db
