"""The live event stream of one user as Server-Sent Events (GET /virtual_events; docs/EVENTS.md).

`StreamHub.stream` yields the user's events; the route frames each as one SSE event (`id:` its
seq, `event:` its type, `data:` the envelope JSON) with FastAPI's `ServerSentEvent`, and
FastAPI's `EventSourceResponse` sends a `: ping` comment after 15 s without one. A stream
reads the outbox for its user only, so it can never carry another user's events. Per-user
sequence numbers have no gaps and become visible in order (each is taken under the user's node
row lock and committed with the change), so "everything after seq N" never skips an event; a
reconnecting client sends the last id it saw as `Last-Event-ID` and receives exactly what it
missed.

What streams cost the database is bounded, whatever their number (L2), because streams share
the money endpoints' connection pool:

- One poller per process (`StreamHub`) asks, every POLL_INTERVAL_S, for the latest seq of every
  user someone is watching: one query for all streams, instead of one per stream. It wakes the
  streams whose user has something new, and only those read their events.
- Stream queries take at most `db_slots` pool connections at a time (a quarter of the pool, at
  most 2), and give up a connection wait after ACQUIRE_TIMEOUT_S (trying again at the next
  wake-up), so streams can never hold or queue for the connections money requests need.
- The number of open streams is capped per process and per API key (`try_open`; the route
  answers 429 too_many_streams beyond it).

The stream ends when the client disconnects, when its API key is revoked, or when the
database fails (the client reconnects with `Last-Event-ID`, losing nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg

from vnode.events.envelope import OUTBOX_COLUMNS, Event

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.25
# How often a stream with nothing to send checks that its client is there and its key valid
# (both answered without the database while the key is cached; a revocation empties the cache).
CHECK_INTERVAL_S = 1.0
ACQUIRE_TIMEOUT_S = 2.0
MAX_DB_SLOTS = 2
BATCH = 500
RETRY_MS = 1000  # how long an EventSource waits before reconnecting

_AFTER = f"""
    SELECT {OUTBOX_COLUMNS} FROM outbox o
    WHERE o.user_id = $1 AND o.user_seq > $2
    ORDER BY o.user_seq LIMIT $3"""  # noqa: S608 - a constant; only values are parameters

# One index probe per watched user (the UNIQUE (user_id, user_seq) index, read backwards).
_LATEST = """
    SELECT u.user_id, (SELECT max(o.user_seq) FROM outbox o WHERE o.user_id = u.user_id) AS seq
    FROM unnest($1::bigint[]) AS u(user_id)"""

# What opening a stream needs, in one round trip: does the user exist, where does "now" start.
_OPENING = """
    SELECT EXISTS (SELECT 1 FROM virtual_nodes WHERE user_id = $1) AS exists,
           (SELECT coalesce(max(user_seq), 0) FROM outbox WHERE user_id = $1) AS seq"""

Check = Callable[[], Awaitable[bool]]


async def latest_seq(pool: asyncpg.Pool, user_id: int) -> int:
    """The sequence number of the user's latest committed event (0: none yet)."""
    seq = await pool.fetchval(
        "SELECT coalesce(max(user_seq), 0) FROM outbox WHERE user_id = $1", user_id
    )
    return int(seq)


class Slot:
    """One admitted stream; release() (idempotent) gives its place back."""

    def __init__(self, hub: StreamHub, owner: str) -> None:
        self._hub = hub
        self.owner = owner
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._hub._release(self.owner)


@dataclass(eq=False)
class _Watch:
    user_id: int
    last_seq: int
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class StreamHub:
    """The streams of one process: admission caps, the shared poller, bounded DB access."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        max_streams: int,
        max_per_key: int,
        poll_s: float | None = None,
        db_slots: int | None = None,
    ) -> None:
        self.pool = pool
        self.max_streams = max_streams
        self.max_per_key = max_per_key
        self._poll_s = poll_s
        slots = db_slots if db_slots is not None else min(MAX_DB_SLOTS, pool.get_max_size() // 4)
        self.db_slots = max(1, slots)
        self._gate = asyncio.Semaphore(self.db_slots)
        self._open: Counter[str] = Counter()
        self._watches: dict[int, set[_Watch]] = {}
        self._poller: asyncio.Task[None] | None = None
        self.polls = 0  # latest-seq queries made (for tests and measurements)

    # --- admission ------------------------------------------------------------------------

    @property
    def open_streams(self) -> int:
        return sum(self._open.values())

    def try_open(self, owner: str) -> Slot | None:
        """A place for one more stream of `owner` (an API key), or None when full."""
        if self.open_streams >= self.max_streams or self._open[owner] >= self.max_per_key:
            return None
        self._open[owner] += 1
        return Slot(self, owner)

    def _release(self, owner: str) -> None:
        self._open[owner] -= 1
        if self._open[owner] <= 0:
            del self._open[owner]

    # --- database access ------------------------------------------------------------------

    async def _fetch(self, query: str, *args: object) -> list[asyncpg.Record] | None:
        """Rows, or None when no connection was free in time (the caller tries later)."""
        async with self._gate:
            try:
                async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                    return list(await conn.fetch(query, *args))
            except TimeoutError:
                return None

    async def opening(self, user_id: int) -> int | None:
        """The user's latest seq (0: no event yet), or None if the user has no node; raises
        TimeoutError when no connection was free in time."""
        rows = await self._fetch(_OPENING, user_id)
        if rows is None:
            raise TimeoutError("no database connection free for the event stream")
        return None if not rows[0]["exists"] else int(rows[0]["seq"])

    async def events_after(self, user_id: int, after_seq: int) -> list[Event] | None:
        rows = await self._fetch(_AFTER, user_id, after_seq, BATCH)
        return None if rows is None else [Event.from_row(row) for row in rows]

    # --- the shared poller ----------------------------------------------------------------

    def _watch(self, user_id: int, last_seq: int) -> _Watch:
        watch = _Watch(user_id, last_seq)
        self._watches.setdefault(user_id, set()).add(watch)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="sse-poller")
        return watch

    def _unwatch(self, watch: _Watch) -> None:
        watchers = self._watches.get(watch.user_id)
        if watchers is not None:
            watchers.discard(watch)
            if not watchers:
                del self._watches[watch.user_id]

    async def _poll(self) -> None:
        """Runs while anyone watches; ends by itself when the last stream has gone."""
        while self._watches:
            await asyncio.sleep(POLL_INTERVAL_S if self._poll_s is None else self._poll_s)
            if not self._watches:
                return
            try:
                rows = await self._fetch(_LATEST, list(self._watches))
            except Exception as exc:  # the poller must outlive any failure while streams run
                # Wake everyone: each stream's own query meets a database failure and ends
                # the stream, as it did before there was a shared poller.
                log.warning("event stream poll failed", extra={"error": str(exc)[:200]})
                for watchers in list(self._watches.values()):
                    for watch in watchers:
                        watch.wake.set()
                continue
            self.polls += 1
            for row in rows or ():
                seq = row["seq"]
                for watch in self._watches.get(row["user_id"], ()):
                    if seq is not None and seq > watch.last_seq:
                        watch.wake.set()

    # --- one stream -----------------------------------------------------------------------

    async def stream(
        self, user_id: int, after_seq: int, *, still_authorised: Check, disconnected: Check
    ) -> AsyncIterator[Event]:
        """The user's events with seq > after_seq, then live ones, until the client goes."""
        watch = self._watch(user_id, after_seq)
        watch.wake.set()  # read what is already there (a Last-Event-ID backlog) at once
        try:
            while True:
                busy = False
                if watch.wake.is_set():
                    watch.wake.clear()
                    try:
                        events = await self.events_after(user_id, watch.last_seq)
                    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                        log.warning(
                            "event stream ended: database error",
                            extra={
                                "user_id": user_id,
                                "last_seq": watch.last_seq,
                                "error": str(exc)[:200],
                            },
                        )
                        return
                    if events is None:
                        busy = True  # no connection free in time: try again shortly
                        watch.wake.set()
                    else:
                        for event in events:
                            yield event
                            watch.last_seq = event.user_seq
                        if len(events) == BATCH:
                            watch.wake.set()
                            continue  # more backlog: no pause
                if await disconnected():
                    return
                if not await still_authorised():
                    log.info("event stream ended: API key revoked", extra={"user_id": user_id})
                    return
                if busy:
                    # Wait a poll interval instead of queueing for the pool again at once.
                    await asyncio.sleep(POLL_INTERVAL_S)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(watch.wake.wait(), CHECK_INTERVAL_S)
        finally:
            self._unwatch(watch)
