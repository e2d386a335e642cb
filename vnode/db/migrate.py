"""Forward-only numbered SQL migrations, then the functions files, applied under an advisory lock.

Two kinds of SQL file (CONTRIBUTING.md, "Database code"):

- `migrations/NNNN_name.sql`: tables, constraints, indexes and data changes. Each runs once, in
  order, forward only; an applied migration whose file changed is refused, never re-run.
- `functions/NN_topic.sql`: the current definition of every function, trigger and view, each
  in one place. They are applied after the numbered migrations: a file whose text changed since
  it was last applied is applied again (Flyway's repeatable migrations); so is every file after a
  numbered migration ran, so that a migration may drop an object that its table change is in the
  way of and rely on the functions files to put it back. Their checksums are kept in a table of
  their own.

Two processes starting together both call `migrate`; the lock makes the second wait and then
find nothing left to do.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vnode.db.pool import DbConnection

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
FUNCTIONS_DIR = Path(__file__).parent / "functions"
_LOCK_KEY = 0x766E6F6465  # "vnode"
_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
_FUNCTIONS_FILE = re.compile(r"\d{2}_[a-z0-9_]+\.sql")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    """One SQL file to apply: a numbered migration (`version` 1, 2, ...), or a functions file
    (`version` None, `name` its file name without .sql), re-applied whenever it changes."""

    version: int | None
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


def load_functions(directory: Path = FUNCTIONS_DIR) -> list[Migration]:
    """The functions files in the order they are applied: by name, so `00_helpers.sql` comes
    before the files that use its helpers."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        if not _FUNCTIONS_FILE.fullmatch(path.name):
            raise MigrationError(f"functions file name not of the form NN_topic.sql: {path.name}")
        found.append(Migration(None, path.stem, path.read_text()))
    return found


@dataclass(frozen=True)
class MigrationSet:
    """Where a set of migrations lives and where their application is recorded. vnode's own
    is the default; the bot keeps its schema in the same database with a set of its own, and
    no functions files (`functions` None)."""

    directory: Path = MIGRATIONS_DIR
    table: str = "schema_migrations"
    lock_key: int = _LOCK_KEY
    functions: Path | None = None
    functions_table: str = "schema_functions"


VNODE_MIGRATIONS = MigrationSet(functions=FUNCTIONS_DIR)


async def _recorded(conn: DbConnection, table: str, key: str) -> dict[Any, str]:
    """`key` -> checksum of what `table` says was applied; nothing when there is no table."""
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table)
    if not exists:
        return {}
    rows = await conn.fetch(f"SELECT {key}, checksum FROM {table}")  # noqa: S608 (constant)
    return {row[key]: row["checksum"] for row in rows}


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


async def _pending_versions(conn: DbConnection, which: MigrationSet) -> list[Migration]:
    known = load_migrations(which.directory)
    applied = await _recorded(conn, which.table, "version")
    _check_unchanged(known, applied)
    return [m for m in known if m.version not in applied]


async def _changed_functions(conn: DbConnection, which: MigrationSet) -> list[Migration]:
    if which.functions is None:
        return []
    recorded = await _recorded(conn, which.functions_table, "name")
    return [f for f in load_functions(which.functions) if recorded.get(f.name) != f.checksum]


async def pending_migrations(
    conn: DbConnection, which: MigrationSet = VNODE_MIGRATIONS
) -> list[Migration]:
    """What `migrate` has yet to apply: numbered migrations never applied, then functions files
    whose text differs from what was last applied. Asking creates nothing."""
    return await _pending_versions(conn, which) + await _changed_functions(conn, which)


async def migrate(conn: DbConnection, which: MigrationSet = VNODE_MIGRATIONS) -> list[Migration]:
    """Apply every pending migration, each in its own transaction, then the functions files
    (those that changed, or all after a numbered migration) in one transaction; returns what
    was applied."""
    await conn.execute("SELECT pg_advisory_lock($1)", which.lock_key)
    try:
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {which.table} ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        todo = await _pending_versions(conn, which)
        for migration in todo:
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    f"INSERT INTO {which.table} (version, name, checksum)"  # noqa: S608
                    " VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
        return todo + await _apply_functions(conn, which, everything=bool(todo))
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", which.lock_key)


async def _apply_functions(
    conn: DbConnection, which: MigrationSet, everything: bool
) -> list[Migration]:
    if which.functions is None:
        return []
    table = which.functions_table
    await conn.execute(
        f"CREATE TABLE IF NOT EXISTS {table} ("
        " name text PRIMARY KEY, checksum text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    files = load_functions(which.functions)
    todo = files if everything else await _changed_functions(conn, which)
    async with conn.transaction():
        for function_file in todo:
            await conn.execute(function_file.sql)
            await conn.execute(
                f"INSERT INTO {table} (name, checksum) VALUES ($1, $2)"  # noqa: S608
                " ON CONFLICT (name) DO UPDATE"
                " SET checksum = excluded.checksum, applied_at = now()",
                function_file.name,
                function_file.checksum,
            )
        # A file that was removed or renamed: what it defined is dropped (or kept) by the files.
        await conn.execute(
            f"DELETE FROM {table} WHERE name <> ALL($1::text[])",  # noqa: S608 (constant)
            [f.name for f in files],
        )
    return todo
