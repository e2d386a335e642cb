"""How a one-shot command (`vnode migrate`, `audit`, `keys`, `webhooks`, `limits`, `proofs`)
uses the database: find or start it (runtime.database_url), apply pending migrations, do the
work, close. And what those commands share: the --data-dir option, their settings, the seed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import asyncpg
import typer

from vnode.db.migrate import migrate as apply_migrations
from vnode.db.pool import DbConnection, create_pool
from vnode.keys import load_or_create_seed
from vnode.runtime import database_url
from vnode.settings import Settings

T = TypeVar("T")
DataDir = Annotated[Path | None, typer.Option(help="Data directory (default ./.vnode)")]


def command_settings(data_dir: Path | None) -> Settings:
    """The settings of a command given --data-dir (else VNODE_DATA_DIR or ./.vnode)."""
    return Settings(data_dir=data_dir) if data_dir is not None else Settings()


def master_seed(settings: Settings) -> bytes:
    """VNODE_MASTER_SEED, else the data directory's seed file (made on first use)."""
    env_seed = settings.master_seed.get_secret_value() if settings.master_seed else None
    return load_or_create_seed(settings.seed_path, env_seed)


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
