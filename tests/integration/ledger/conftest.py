"""Fixtures of the ledger's integration tests: the money functions called directly on a
database of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest


@pytest.fixture
async def pool(fresh_db: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on an otherwise empty ledger, large enough for the concurrency tests."""
    created = await asyncpg.create_pool(fresh_db, min_size=1, max_size=12)
    assert created is not None
    yield created
    await created.close()
