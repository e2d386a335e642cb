"""Which pool serves a read: the primary, or the read replica of VNODE_DATABASE_READ_URL.

Balances, history and the console's pages may read from a replica. The staleness rule
(docs/RELIABILITY.md, "Read replicas"):

- Every `check_s` the primary's WAL position is read (`pg_current_wal_lsn()`), then the
  replica's replay position; when the replica has replayed up to it, everything committed on
  the primary before that sample is on the replica: the sample's time is `fresh_at`.
- A read about a user this process wrote for (a transfer, a payment, a credit: `note_write`)
  goes to the primary until a sample taken after that write finds the replica caught up: a
  caller never reads older than its own write through this process.
- Any read goes to the primary while the replica is behind by more than `max_lag_s` (or
  unreachable): a write made through another vnode process is seen on the replica within at
  most `max_lag_s`.
- Writes never go to the replica: the replica pool is only ever handed to read queries, and a
  replica refuses writes anyway.

Without a read URL every read uses the primary, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import asyncpg

from vnode.db.unavailable import DATABASE_DOWN, describe
from vnode.logs import LogOnChange

log = logging.getLogger(__name__)

CHECK_S = 0.25
# The replica out of reach, or refusing (a replica being rebuilt): reads use the primary.
_REPLICA_TROUBLE: tuple[type[BaseException], ...] = (*DATABASE_DOWN, asyncpg.PostgresError)
MAX_WRITERS = 100_000  # users remembered as recently written for; past it: all to the primary


def _lsn(text: str | None) -> int | None:
    if text is None:
        return None
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


class ReadRouting:
    def __init__(
        self,
        primary: asyncpg.Pool,
        replica: asyncpg.Pool | None,
        *,
        max_lag_s: float = 1.0,
        check_s: float = CHECK_S,
    ) -> None:
        self.primary = primary
        self.replica = replica
        self.max_lag_s = max_lag_s
        self.check_s = check_s
        self._fresh_at = float("-inf")  # the replica has everything committed before this
        self._writes: dict[int, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._said = LogOnChange(log)
        self.replica_reads = 0
        self.primary_reads = 0

    async def start(self) -> None:
        if self.replica is not None:
            self._task = asyncio.create_task(self._watch(), name="read-replica-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def close(self) -> None:
        await self.stop()
        if self.replica is not None:
            await self.replica.close()

    def note_write(self, *user_ids: int) -> None:
        """This process wrote for these users now: their reads go to the primary until the
        replica has caught up past this moment."""
        if self.replica is None:
            return
        now = time.monotonic()
        if len(self._writes) > MAX_WRITERS:
            self._writes.clear()
            self._fresh_at = float("-inf")  # forgotten writers: trust nothing older than now
        for user_id in user_ids:
            self._writes[user_id] = now

    def for_user(self, user_id: int | None) -> asyncpg.Pool:
        """The pool for a read about `user_id` (None: a read about no one user)."""
        if self.replica is not None:
            now = time.monotonic()
            fresh_at = self._fresh_at
            written = self._writes.get(user_id, float("-inf")) if user_id is not None else None
            if now - fresh_at <= self.max_lag_s and (written is None or written < fresh_at):
                self.replica_reads += 1
                return self.replica
        self.primary_reads += 1
        return self.primary

    async def sample(self) -> None:
        """One measurement of the replica's lag (the module docstring)."""
        assert self.replica is not None
        started = time.monotonic()
        target = _lsn(await self.primary.fetchval("SELECT pg_current_wal_lsn()::text"))
        replayed = _lsn(
            await self.replica.fetchval(
                "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
                "ELSE pg_current_wal_lsn() END::text"
            )
        )
        if target is not None and replayed is not None and replayed >= target:
            self._fresh_at = started
            # Writes older than the sample are on the replica now: forget them.
            self._writes = {u: t for u, t in self._writes.items() if t >= started}

    async def _watch(self) -> None:
        while True:
            try:
                await self.sample()
                self._said.forget("replica")
            except _REPLICA_TROUBLE as exc:
                self._said.log(
                    "replica",
                    "down",
                    logging.WARNING,
                    "read replica not usable, reads go to the primary: %s",
                    describe(exc),
                )
            await asyncio.sleep(self.check_s)
