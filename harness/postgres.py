"""PostgreSQL for the harnesses: a throwaway embedded cluster in a directory of its own, and
databases created (from a template) and dropped on a server."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path
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
    name = prefix + secrets.token_hex(6)
    conn = await asyncpg.connect(with_database(server_dsn, "postgres"))
    try:
        clause = f" TEMPLATE {template}" if template else ""
        await conn.execute(f"CREATE DATABASE {name}{clause}")
    finally:
        await conn.close()
    return with_database(server_dsn, name)


async def drop_database(dsn: str) -> None:
    """Drop the database of `dsn`, closing its connections."""
    name = urlsplit(dsn).path.lstrip("/")
    conn = await asyncpg.connect(with_database(dsn, "postgres"))
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()
