"""PostgreSQL for the harnesses: a throwaway embedded cluster in a directory of its own, and
databases created (from a template) and dropped on a server."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from vnode.db.dsn import with_database
from vnode.db.embedded import EmbeddedPostgres


class TemporaryCluster:
    """An embedded PostgreSQL cluster in `root` (a new temporary directory by default), which
    stop() removes with everything in it."""

    def __init__(self, root: Path | None = None, prefix: str = "vnode-cluster-") -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix=prefix))
        self.pg = EmbeddedPostgres(self.root / "pg")
        self.dsn = ""

    def start(self) -> str:
        self.dsn = self.pg.start()
        return self.dsn

    @property
    def postmaster_pid(self) -> int | None:
        try:
            return int((self.pg.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        self.pg.stop()
        shutil.rmtree(self.root, ignore_errors=True)


async def create_database(
    server_dsn: str, template: str | None = None, prefix: str = "vnode_t_"
) -> str:
    """A new empty (or template-copied) database with a random name; returns its DSN."""
    conn = await asyncpg.connect(with_database(server_dsn, "postgres"))
    try:
        return await _create(conn, server_dsn, template, prefix)
    finally:
        await conn.close()


async def _create(
    conn: asyncpg.Connection, server_dsn: str, template: str | None, prefix: str
) -> str:
    # FILE_COPY copies the template's files and waits for two checkpoints, where the default
    # (WAL_LOG) writes the whole copy through the WAL: as fast alone (about 0.1 s on a test
    # cluster, fsync off), but mostly waiting rather than working, so copies made side by side
    # share their checkpoints (4 at once: about 10 ms each) and leave the CPU to the tests.
    name = prefix + secrets.token_hex(6)
    clause = f" TEMPLATE {template}" if template else ""
    await conn.execute(f"CREATE DATABASE {name}{clause} STRATEGY FILE_COPY")
    return with_database(server_dsn, name)


class DatabaseStock:
    """Copies of a template database made ahead of need, and dropped after use, by a few tasks
    with a connection each.

    A copy takes about 0.1 s; a test suite that gives each test a database of its own would pay
    that per test. Made here while the tests await I/O, several at once, a copy is usually ready
    when a test asks for one. Dropping a used copy keeps the cluster, and the time to delete it
    after the run, small."""

    def __init__(self, server_dsn: str, template: str, depth: int = 4) -> None:
        self.server_dsn = server_dsn
        self.template = template
        self.depth = depth  # copies ready or being made, and tasks making them
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._making = 0
        self._used: list[str] = []
        self._changed = asyncio.Condition()
        self._workers: asyncio.Future[list[None]] | None = None

    async def take(self) -> str:
        """The DSN of a fresh copy of the template, for the caller alone."""
        if self._workers is None:
            self._workers = asyncio.gather(*(self._work() for _ in range(self.depth)))
        await self._changed_now()
        getting = asyncio.ensure_future(self._ready.get())
        either: set[asyncio.Future[Any]] = {getting, self._workers}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if not getting.done():
            getting.cancel()
            self._workers.result()  # raises what stopped them
            raise RuntimeError("the database stock stopped")
        await self._changed_now()
        return getting.result()

    async def give_back(self, dsn: str) -> None:
        """`dsn` is no longer used: drop it (closing any connection left to it)."""
        self._used.append(urlsplit(dsn).path.lstrip("/"))
        await self._changed_now()

    async def close(self) -> None:
        if self._workers is not None:
            self._workers.cancel()
            await asyncio.gather(self._workers, return_exceptions=True)

    async def _changed_now(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _short(self) -> bool:
        return self._ready.qsize() + self._making < self.depth

    async def _work(self) -> None:
        conn = await asyncpg.connect(with_database(self.server_dsn, "postgres"))
        try:
            while True:
                async with self._changed:
                    await self._changed.wait_for(lambda: bool(self._used) or self._short())
                    drop = self._used.pop() if self._used else None
                    self._making += drop is None
                if drop is not None:
                    await conn.execute(f"DROP DATABASE IF EXISTS {drop} WITH (FORCE)")
                    continue
                try:
                    made = await _create(conn, self.server_dsn, self.template, "vnode_t_")
                finally:
                    self._making -= 1
                self._ready.put_nowait(made)
        finally:
            await conn.close()


async def drop_database(dsn: str) -> None:
    """Drop the database of `dsn`, closing its connections."""
    name = urlsplit(dsn).path.lstrip("/")
    conn = await asyncpg.connect(with_database(dsn, "postgres"))
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()
