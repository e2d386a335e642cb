"""Forward-only numbered SQL migrations, applied under an advisory lock.

Two processes starting together both call `migrate`; the lock makes the second wait and then
find nothing left to do. An applied migration whose file changed is refused, never re-run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from vnode.db.pool import DbConnection

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x766E6F6465  # "vnode"
_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.fullmatch(path.name)
        if not match:
            raise MigrationError(f"migration file name not of the form NNNN_name.sql: {path.name}")
        found.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration numbers must run 1, 2, 3... without gaps: {versions}")
    return found


@dataclass(frozen=True)
class MigrationSet:
    """Where a set of migrations lives and where their application is recorded. vnode's own
    is the default; the bot keeps its schema in the same database with a set of its own."""

    directory: Path = MIGRATIONS_DIR
    table: str = "schema_migrations"
    lock_key: int = _LOCK_KEY


VNODE_MIGRATIONS = MigrationSet()


async def _applied(conn: DbConnection, table: str) -> dict[int, str]:
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table)
    if not exists:
        return {}
    rows = await conn.fetch(f"SELECT version, checksum FROM {table}")  # noqa: S608 (constant)
    return {row["version"]: row["checksum"] for row in rows}


def _check_unchanged(known: list[Migration], applied: dict[int, str]) -> None:
    by_version = {m.version: m for m in known}
    for version, checksum in applied.items():
        migration = by_version.get(version)
        if migration is None:
            raise MigrationError(
                f"the database has migration {version}, which this vnode does not know: "
                "it is older than the database"
            )
        if migration.checksum != checksum:
            raise MigrationError(
                f"migration {version}_{migration.name} changed after it was applied"
            )


async def pending_migrations(conn: DbConnection,
                             which: MigrationSet = VNODE_MIGRATIONS) -> list[Migration]:
    known = load_migrations(which.directory)
    applied = await _applied(conn, which.table)
    _check_unchanged(known, applied)
    return [m for m in known if m.version not in applied]


async def migrate(conn: DbConnection,
                  which: MigrationSet = VNODE_MIGRATIONS) -> list[Migration]:
    """Apply every pending migration, each in its own transaction; returns those applied."""
    await conn.execute("SELECT pg_advisory_lock($1)", which.lock_key)
    try:
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {which.table} ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        todo = await pending_migrations(conn, which)
        for migration in todo:
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    f"INSERT INTO {which.table} (version, name, checksum)"  # noqa: S608
                    " VALUES ($1, $2, $3)",
                    migration.version, migration.name, migration.checksum,
                )
        return todo
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", which.lock_key)
