"""How a one-shot command (`vnode migrate`, `audit`, `keys`, `webhooks`) uses the database:
find or start it (runtime.database_url), apply pending migrations, do the work, close."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from vnode.db.migrate import migrate as apply_migrations
from vnode.db.pool import DbConnection, create_pool
from vnode.runtime import database_url
from vnode.settings import Settings

T = TypeVar("T")


def with_pool(settings: Settings, work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    """``work`` on a small pool of the migrated database; what it returns."""

    async def run(dsn: str) -> T:
        pool = await create_pool(dsn, min_size=1, max_size=2)
        try:
            async with pool.acquire() as conn:
                await apply_migrations(conn)
            return await work(pool)
        finally:
            await pool.close()

    with database_url(settings) as dsn:
        return asyncio.run(run(dsn))


def with_connection(settings: Settings, work: Callable[[DbConnection], Awaitable[T]]) -> T:
    """``work`` on one connection of the migrated database; what it returns."""

    async def on_one(pool: asyncpg.Pool) -> T:
        async with pool.acquire() as conn:
            return await work(conn)

    return with_pool(settings, on_one)
