"""The proofs-publisher worker in the app (vnode/workers/loops.py): an epoch at start when none
is recent, with a heartbeat like the other workers; none with VNODE_PROOFS_INTERVAL_S=0."""

from __future__ import annotations

from pathlib import Path

import asyncpg
from fastapi import FastAPI

from tests.conftest import make_settings
from tests.support import wait_until
from vnode.app import create_app


async def _epochs(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM proof_epochs")
        return count
    finally:
        await conn.close()


def _workers(app: FastAPI) -> set[str]:
    return set(app.state.services.workers.started_at)


async def test_the_worker_publishes_at_start_and_beats(fresh_db: str, tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path), fresh_db)
    async with app.router.lifespan_context(app):
        assert "proofs-publisher" in _workers(app)
        supervisor = app.state.services.workers

        async def published() -> bool:
            return await _epochs(fresh_db) == 1 and "proofs-publisher" in supervisor.last_success

        await wait_until(published, timeout_s=30, what="the first epoch and its heartbeat")
    # A restart within the interval publishes nothing more: the schedule is the database's.
    again = create_app(make_settings(tmp_path), fresh_db)
    async with again.router.lifespan_context(again):
        supervisor = again.state.services.workers
        await wait_until(
            lambda: "proofs-publisher" in supervisor.last_success, timeout_s=30, what="a pass"
        )
    assert await _epochs(fresh_db) == 1


async def test_no_worker_with_a_zero_interval(fresh_db: str, tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, proofs_interval_s=0), fresh_db)
    async with app.router.lifespan_context(app):
        assert "proofs-publisher" not in _workers(app)
        assert "payment-reconciler" in _workers(app)
