"""Supervised periodic workers: a failing step is logged and retried with bounded backoff,
never silently dropped; each completed pass is a heartbeat; shutdown cancels them all."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from enum import Enum

from vnode.cancelling import stop_if_cancelled
from vnode.db.unavailable import DATABASE_DOWN, describe
from vnode.lightning.base import NodeLocked
from vnode.logs import LogOnChange
from vnode.metrics import Metrics

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
# The first wait after a failure, doubled on each failure after it up to MAX_BACKOFF_S.
MIN_BACKOFF_S = 0.5


class Pass(Enum):
    # A step returns this when it had to skip its work (e.g. the node is not ready): the loop
    # goes on, but it is no heartbeat.
    SKIPPED = "skipped"


class Supervisor:
    def __init__(
        self, metrics: Metrics | None = None, *, min_backoff_s: float = MIN_BACKOFF_S
    ) -> None:
        self._min_backoff_s = min_backoff_s
        self._tasks: list[asyncio.Task[None]] = []
        self._metrics = metrics
        self.failures: dict[str, int] = {}
        self.started_at: dict[str, float] = {}
        self.intervals: dict[str, float] = {}
        self.last_success: dict[str, float] = {}
        self._said = LogOnChange(log)

    def every(
        self,
        name: str,
        interval_s: float,
        step: Callable[[], Awaitable[object]],
        *,
        wake: asyncio.Event | None = None,
    ) -> None:
        """Run `step` now and then every `interval_s`, for as long as the supervisor lives;
        sooner when `wake` is set (set during a pass, it starts the next one at once). After
        a failure the backoff applies, wake-ups or not."""
        self.failures[name] = 0
        self.started_at[name] = time.time()
        self.intervals[name] = interval_s
        self._tasks.append(asyncio.create_task(self._loop(name, interval_s, step, wake), name=name))

    def stale(self, names: Iterable[str], max_age_s: float, now: float | None = None) -> list[str]:
        """The workers among `names` running here that have not completed a pass for
        `max_age_s`, or three of their intervals if longer (counted from their start when
        they never have)."""
        current = time.time() if now is None else now
        return sorted(
            name
            for name in names
            if name in self.started_at
            and current - self.last_success.get(name, self.started_at[name])
            > max(max_age_s, 3 * self.intervals[name])
        )

    def _backoff_after(self, backoff_s: float) -> float:
        return min(max(backoff_s * 2, self._min_backoff_s), MAX_BACKOFF_S)

    def _beat(self, name: str) -> None:
        self.last_success[name] = time.time()
        if self._metrics is not None:
            self._metrics.worker_last_success.labels(name).set(self.last_success[name])

    async def _loop(
        self,
        name: str,
        interval_s: float,
        step: Callable[[], Awaitable[object]],
        wake: asyncio.Event | None,
    ) -> None:
        backoff_s = interval_s
        while True:
            if wake is not None:
                wake.clear()  # what is committed from here on is this pass's or sets it again
            try:
                if await step() is not Pass.SKIPPED:
                    self._beat(name)
                    self._said.forget(name)
                backoff_s = interval_s
            except asyncio.CancelledError:
                raise
            except NodeLocked as exc:
                # Expected while an operator has the node locked: the monitor reports it and
                # /readyz says so; said once per worker until a pass succeeds again.
                backoff_s = self._backoff_after(backoff_s)
                self._said.log(
                    name,
                    "locked",
                    logging.WARNING,
                    "worker waits for the node: %s",
                    exc,
                    extra={"worker": name, "retry_in_s": backoff_s},
                )
            except DATABASE_DOWN as exc:
                # A restart or a failover: the pool reconnects on the next pass (or finds the
                # new primary, vnode/db/connect.py). Counted, and said once per outage in one
                # line: a traceback per pass per worker would bury the log.
                self.failures[name] += 1
                backoff_s = self._backoff_after(backoff_s)
                self._said.log(
                    name,
                    "database",
                    logging.WARNING,
                    "worker waits for the database: %s",
                    describe(exc),
                    extra={"worker": name, "retry_in_s": backoff_s},
                )
            except Exception:
                self.failures[name] += 1
                backoff_s = self._backoff_after(backoff_s)
                log.exception(
                    "worker step failed; retrying", extra={"worker": name, "retry_in_s": backoff_s}
                )
            stop_if_cancelled()  # a step may have lost the cancel (vnode/cancelling.py)
            if wake is None or backoff_s > interval_s:
                await asyncio.sleep(backoff_s)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), backoff_s)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
