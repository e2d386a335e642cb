"""Per-item isolation for the money workers (security review H1, M2, L8).

A worker pass handles many items: pending payments, the node's inbound payments, RGB
transfers. One item that raises (a row no client can decode, a node answer out of range, a
constraint it violates) must not stop the items after it, nor every later pass: it is logged
with its id, counted in `vnode_worker_item_errors_total{worker}`, and retried later with a
growing delay, while the pass goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from vnode.metrics import Metrics

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_CONCURRENCY = 16
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 300.0


def backoff_s(errors: int) -> float:
    """How long an item that failed `errors` times in a row waits before its next try."""
    return float(min(BACKOFF_BASE_S * 2 ** min(max(errors - 1, 0), 16), BACKOFF_MAX_S))


class ItemErrors:
    """Where a worker reports an item that raised: the log (with the item's id) and a metric."""

    def __init__(self, worker: str, metrics: Metrics | None) -> None:
        self.worker = worker
        self._counter = None if metrics is None else metrics.worker_item_errors.labels(worker)

    def report(self, item_id: object, exc: BaseException) -> None:
        if self._counter is not None:
            self._counter.inc()
        log.error(
            "worker item failed; the pass goes on and the item is retried later",
            exc_info=exc,
            extra={"worker": self.worker, "item": str(item_id)},
        )


async def each_isolated(
    items: Iterable[T],
    work: Callable[[T], Awaitable[object]],
    *,
    item_id: Callable[[T], object],
    errors: ItemErrors,
    on_error: Callable[[T, BaseException], Awaitable[None]] | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> int:
    """Run `work` on every item, at most `concurrency` at once; returns how many raised.

    A raising item is reported and handed to `on_error` (which must not raise either: its
    own failure is reported too); cancellation still stops the whole pass."""
    gate = asyncio.Semaphore(concurrency)
    failed = 0

    async def one(item: T) -> None:
        nonlocal failed
        async with gate:
            try:
                await work(item)
            except Exception as exc:
                failed += 1
                errors.report(item_id(item), exc)
                if on_error is not None:
                    try:
                        await on_error(item, exc)
                    except Exception as again:
                        errors.report(item_id(item), again)

    await asyncio.gather(*(one(item) for item in items))
    return failed


class ItemBackoff:
    """Which items of an outside listing (the node's payments, transfers) are waiting after a
    failure, in memory and bounded: the oldest entries are forgotten first."""

    def __init__(self, max_items: int = 100_000) -> None:
        self._max_items = max_items
        self._entries: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def due(self, key: str, now: float | None = None) -> bool:
        entry = self._entries.get(key)
        return entry is None or entry[1] <= (time.monotonic() if now is None else now)

    def failed(self, key: str, now: float | None = None) -> None:
        errors = self._entries.pop(key, (0, 0.0))[0] + 1
        self._entries[key] = (
            errors,
            (time.monotonic() if now is None else now) + backoff_s(errors),
        )
        while len(self._entries) > self._max_items:
            self._entries.popitem(last=False)

    def succeeded(self, key: str) -> None:
        self._entries.pop(key, None)


class BoundedSet:
    """A set that forgets its oldest members past `max_items` (a cache of work already done;
    the database's unique keys are the real guard, so forgetting only costs a lookup)."""

    def __init__(self, max_items: int = 100_000) -> None:
        self._max_items = max_items
        self._items: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: str) -> None:
        self._items[item] = None
        self._items.move_to_end(item)
        while len(self._items) > self._max_items:
            self._items.popitem(last=False)
