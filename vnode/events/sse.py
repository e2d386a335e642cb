"""The live event stream of one user as Server-Sent Events (GET /virtual_events; docs/EVENTS.md).

Each event is one SSE frame, `id: <seq>`, `event: <type>`, `data: <envelope JSON>`. The stream
polls the outbox for that user only (no LISTEN: one indexed query every POLL_INTERVAL_S), so a
stream can never carry another user's events. Per-user sequence numbers have no gaps and
become visible in order (each is taken under the user's node row lock and committed with the
change), so "everything after seq N" never skips an event; a reconnecting client sends the last
id it saw as `Last-Event-ID` and receives exactly what it missed.

The stream ends when the client disconnects, when its API key is revoked, or when the
database fails (the client reconnects with `Last-Event-ID`, losing nothing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg

from vnode.events.envelope import OUTBOX_COLUMNS, Event

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.25
KEEPALIVE_S = 15.0
BATCH = 500
RETRY_MS = 1000  # how long an EventSource waits before reconnecting
MEDIA_TYPE = "text/event-stream"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

_active = 0

_AFTER = f"""
    SELECT {OUTBOX_COLUMNS} FROM outbox o
    WHERE o.user_id = $1 AND o.user_seq > $2
    ORDER BY o.user_seq LIMIT $3"""  # noqa: S608 - a constant; only values are parameters

Check = Callable[[], Awaitable[bool]]


def active_streams() -> int:
    """Streams open in this process (for tests and metrics)."""
    return _active


async def latest_seq(pool: asyncpg.Pool, user_id: int) -> int:
    """The sequence number of the user's latest committed event (0: none yet)."""
    seq = await pool.fetchval(
        "SELECT coalesce(max(user_seq), 0) FROM outbox WHERE user_id = $1", user_id)
    return int(seq)


def frame(event: Event) -> bytes:
    """One SSE frame; the envelope JSON has no newline, so it is one `data:` line."""
    return (f"id: {event.user_seq}\nevent: {event.event_type}\ndata: ".encode()
            + event.encode() + b"\n\n")


async def stream_events(pool: asyncpg.Pool, user_id: int, after_seq: int, *,
                        still_authorised: Check, disconnected: Check,
                        poll_s: float | None = None,
                        keepalive_s: float | None = None) -> AsyncIterator[bytes]:
    """The user's events with seq > after_seq, then live ones, until the client goes away."""
    global _active
    poll = POLL_INTERVAL_S if poll_s is None else poll_s
    keepalive = KEEPALIVE_S if keepalive_s is None else keepalive_s
    last = after_seq
    _active += 1
    try:
        # Sent at once: the client sees the stream open before any event exists.
        yield f"retry: {RETRY_MS}\n\n".encode()
        quiet_since = time.monotonic()
        while True:
            try:
                rows = await pool.fetch(_AFTER, user_id, last, BATCH)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                log.warning("event stream ended: database error", extra={
                    "user_id": user_id, "last_seq": last, "error": str(exc)[:200]})
                return
            for row in rows:
                event = Event.from_row(row)
                yield frame(event)
                last = event.user_seq
            if rows:
                quiet_since = time.monotonic()
                if len(rows) == BATCH:
                    continue  # more backlog: no pause
            if await disconnected():
                return
            if not await still_authorised():
                log.info("event stream ended: API key revoked", extra={"user_id": user_id})
                return
            if time.monotonic() - quiet_since >= keepalive:
                yield b": keep-alive\n\n"
                quiet_since = time.monotonic()
            await asyncio.sleep(poll)
    finally:
        _active -= 1
