"""Fixtures of the integration tests (the app in-process)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from tests.support import close_pool
from vnode.workers import loops

QUICK_POLL_S = 0.5


@pytest.fixture(scope="session", autouse=True)
def _quick_node_polls() -> Iterator[None]:
    """Apps started in-process from here on check the node and refresh RGB transfers every
    0.5 s instead of every 2 s and 5 s (vnode/workers/loops.py), so a test that waits for a node
    state or an RGB receipt waits a fraction of a second. The periods are not what these tests
    check; `vnode serve` processes (tests/e2e, tests/bot) keep the service's own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loops, "NODE_CHECK_S", QUICK_POLL_S)
        patch.setattr(loops, "RGB_REFRESH_S", QUICK_POLL_S)
        yield


@pytest.fixture
async def pool(fresh_db: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on an otherwise empty ledger, large enough for the concurrency tests (the
    ledger's money functions and the proofs of liabilities, called directly)."""
    created = await asyncpg.create_pool(fresh_db, min_size=1, max_size=12)
    assert created is not None
    yield created
    await close_pool(created)
