"""Supervised periodic workers: a failing step is logged and retried with bounded backoff,
never silently dropped; shutdown cancels them all."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from vnode.lightning.base import NodeLocked

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0


class Supervisor:
    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []
        self.failures: dict[str, int] = {}

    def every(self, name: str, interval_s: float, step: Callable[[], Awaitable[object]]) -> None:
        """Run `step` now and then every `interval_s`, for as long as the supervisor lives."""
        self.failures[name] = 0
        self._tasks.append(asyncio.create_task(self._loop(name, interval_s, step), name=name))

    async def _loop(self, name: str, interval_s: float,
                    step: Callable[[], Awaitable[object]]) -> None:
        backoff_s = interval_s
        while True:
            try:
                await step()
                backoff_s = interval_s
            except asyncio.CancelledError:
                raise
            except NodeLocked as exc:
                # Expected while an operator has the node locked: the monitor reports it and
                # /readyz says so; a traceback every step would only bury real errors.
                backoff_s = min(max(backoff_s * 2, 0.5), MAX_BACKOFF_S)
                log.warning("worker waits for the node: %s", exc, extra={
                    "worker": name, "retry_in_s": backoff_s})
            except Exception:
                self.failures[name] += 1
                backoff_s = min(max(backoff_s * 2, 0.5), MAX_BACKOFF_S)
                log.exception("worker step failed; retrying", extra={
                    "worker": name, "retry_in_s": backoff_s})
            await asyncio.sleep(backoff_s)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
