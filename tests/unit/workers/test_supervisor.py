"""The worker supervisor: a failing step is retried and counted; a locked node is waited
for without a traceback; a worker stops when told, whatever its step made of the cancel."""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg
import pytest

from tests.support import wait_until
from vnode.lightning.base import NodeLocked
from vnode.workers.supervisor import Supervisor


async def test_failures_are_counted_and_a_locked_node_only_waited_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = {"broken": 0, "locked": 0}

    async def broken() -> None:
        calls["broken"] += 1
        raise RuntimeError("bug")

    async def locked() -> None:
        calls["locked"] += 1
        raise NodeLocked("Node is locked", "LockedNode", 403)

    supervisor = Supervisor(min_backoff_s=0.01)
    with caplog.at_level(logging.WARNING, logger="vnode.workers.supervisor"):
        supervisor.every("broken", 0.01, broken)
        supervisor.every("locked", 0.01, locked)

        async def both_retried() -> bool:
            return calls["broken"] >= 2 and calls["locked"] >= 2

        await wait_until(both_retried, 10, "both steps retried")
        await supervisor.stop()
    assert supervisor.failures["broken"] >= 2 and supervisor.failures["locked"] == 0
    # Only this test's two workers: the session's event loop may still run other tests' apps,
    # whose supervisors log to the same logger.
    ours = [r for r in caplog.records if getattr(r, "worker", None) in calls]
    tracebacks = [r for r in ours if r.exc_info]
    assert tracebacks and all(getattr(r, "worker", None) == "broken" for r in tracebacks)
    assert all("bug" in str(r.exc_info[1]) for r in tracebacks if r.exc_info)
    assert any("waits for the node" in r.getMessage() for r in ours)


async def test_a_worker_waits_out_the_database_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The database gone (a real refused connection) is said once, without a traceback, and
    the worker completes passes again once it is back."""
    calls = {"n": 0}

    async def step() -> None:
        calls["n"] += 1
        if calls["n"] <= 3:  # the database is down for three passes
            await asyncpg.connect("postgresql://vnode@127.0.0.1:9/vnode", timeout=5)

    # Waits of 10, 20 and 40 ms between the passes, not the service's 0.5, 1 and 2 s.
    supervisor = Supervisor(min_backoff_s=0.01)
    with caplog.at_level(logging.WARNING, logger="vnode.workers.supervisor"):
        supervisor.every("db-worker", 0.01, step)
        await wait_until(
            lambda: "db-worker" in supervisor.last_success, 20, "a pass after the outage"
        )
        await supervisor.stop()
    assert supervisor.failures["db-worker"] == 3
    said = [r for r in caplog.records if getattr(r, "worker", None) == "db-worker"]
    assert len(said) == 1 and "waits for the database" in said[0].getMessage()
    assert said[0].exc_info is None


async def test_stop_ends_a_worker_whose_step_turned_the_cancel_into_an_error() -> None:
    """As asyncpg's transaction does when cancelled mid-statement: its rollback fails and that
    error replaces the CancelledError. The worker must not log it and sleep its backoff."""
    started = asyncio.Event()

    async def step() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise RuntimeError("cannot roll back: another operation is in progress") from None

    supervisor = Supervisor(min_backoff_s=0.01)
    supervisor.every("converts-its-cancel", 60, step)
    await asyncio.wait_for(started.wait(), 10)
    began = time.monotonic()
    await asyncio.wait_for(supervisor.stop(), 10)
    assert time.monotonic() - began < 5
