"""Waiting for something to happen: poll a condition until it holds or a deadline passes (an
HTTP endpoint answering 200, for readiness). Never a bare sleep to synchronise with another
process."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

import httpx

from vnode.tls import tls_context

PERIOD_S = 0.05


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout_s: float = 20.0,
    what: str = "condition",
    period_s: float = PERIOD_S,
) -> None:
    """Poll `condition` (plain or async) every `period_s` until it holds; TimeoutError once
    `timeout_s` has passed. The condition may raise to give up early (a process died)."""
    deadline = time.monotonic() + timeout_s
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(period_s)


def wait_until_blocking(
    condition: Callable[[], bool],
    timeout_s: float = 20.0,
    what: str = "condition",
    period_s: float = PERIOD_S,
) -> None:
    """wait_until for code without an event loop (benchmarks, session fixtures)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(period_s)


def _no_check() -> None:
    return None


async def wait_http_ok(
    url: str, timeout_s: float, what: str, check: Callable[[], None] = _no_check
) -> None:
    """Until GET `url` answers 200. `check` runs before each try and raises to give up (the
    process that should answer has exited)."""
    async with httpx.AsyncClient(timeout=2.0, verify=tls_context()) as client:

        async def answers() -> bool:
            check()
            try:
                return (await client.get(url)).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(answers, timeout_s, what)


def wait_http_ok_blocking(
    url: str, timeout_s: float, what: str, check: Callable[[], None] = _no_check
) -> None:
    """wait_http_ok for code without an event loop."""
    with httpx.Client(timeout=2.0, verify=tls_context()) as client:

        def answers() -> bool:
            check()
            try:
                return client.get(url).status_code == 200
            except httpx.TransportError:
                return False

        wait_until_blocking(answers, timeout_s, what)
