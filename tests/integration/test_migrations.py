"""Forward-only migrations: concurrent starts apply each one once; changed history is refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.support import create_database
from vnode.db.migrate import (
    MigrationError,
    load_migrations,
    migrate,
    pending_migrations,
)

LOCK_KEY = 0x766E6F6465  # the advisory lock migrate takes


@pytest.fixture
async def empty_db(pg_server: str) -> str:
    """A brand-new database with no schema at all (not copied from the template)."""
    return await create_database(pg_server)


@pytest.fixture
async def migrated_conn(empty_db: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(empty_db)
    await migrate(conn)
    yield conn
    await conn.close()


async def test_concurrent_migrate_applies_each_once(empty_db: str) -> None:
    known = load_migrations()
    assert [m.version for m in known] == list(range(1, len(known) + 1))
    conns = [await asyncpg.connect(empty_db) for _ in range(5)]
    try:
        results = await asyncio.gather(*(migrate(conn) for conn in conns))

        applied = [[m.version for m in result] for result in results]
        assert sorted(applied, key=len) == [[]] * 4 + [[m.version for m in known]], applied
        rows = await conns[0].fetch(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version")
        assert [tuple(r.values()) for r in rows] == [
            (m.version, m.name, m.checksum) for m in known]
        # the schema is really there
        assert await conns[0].fetchval("SELECT to_regprocedure("
            "'vnode_transfer(bigint,bigint,text,text,bigint,text,text,text,bytea)') IS NOT NULL")
        names = await conns[0].fetch("SELECT name FROM system_accounts")
        assert {"operator_funding", "lightning_inbound", "lightning_outbound"} <= {
            r["name"] for r in names}

        assert await asyncio.gather(*(migrate(conn) for conn in conns)) == [[]] * 5
        assert await pending_migrations(conns[0]) == []
        assert await conns[0].fetchval("SELECT count(*) FROM schema_migrations") == len(known)
        # every migrate released the advisory lock it took
        assert await conns[1].fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY)
    finally:
        for conn in conns:
            await conn.close()


async def test_pending_on_empty_database_lists_everything(empty_db: str) -> None:
    conn = await asyncpg.connect(empty_db)
    try:
        pending = await pending_migrations(conn)
        assert [m.version for m in pending] == [m.version for m in load_migrations()]
        # asking does not create anything
        assert await conn.fetchval("SELECT to_regclass('schema_migrations')") is None
    finally:
        await conn.close()


CHANGED = "changed after it was applied"


@pytest.mark.parametrize(("tamper", "message"), [
    ("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1", CHANGED),
    ("UPDATE schema_migrations SET checksum = 'x' WHERE version = 2", CHANGED),
    ("INSERT INTO schema_migrations (version, name, checksum) VALUES (99, 'future', 'y')",
     "does not know"),
], ids=["checksum of 1", "checksum of 2", "unknown version"])
async def test_changed_history_is_refused(
    migrated_conn: asyncpg.Connection, empty_db: str, tamper: str, message: str
) -> None:
    await migrated_conn.execute(tamper)
    before = await migrated_conn.fetch("SELECT * FROM schema_migrations ORDER BY version")

    with pytest.raises(MigrationError, match=message):
        await migrate(migrated_conn)
    with pytest.raises(MigrationError, match=message):
        await pending_migrations(migrated_conn)

    assert await migrated_conn.fetch("SELECT * FROM schema_migrations ORDER BY version") == before
    other = await asyncpg.connect(empty_db)
    try:  # the failed migrate released its advisory lock
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY)
    finally:
        await other.close()


BAD_DIRECTORIES = [
    (["0001_a.sql", "0003_c.sql"], "without gaps"),
    (["0002_b.sql"], "without gaps"),
    (["0001_a.sql", "0001_b.sql"], "without gaps"),
    (["0000_zero.sql", "0001_a.sql"], "without gaps"),
    (["0001_a.sql", "2_b.sql"], "NNNN_name.sql"),
    (["0001_Upper.sql"], "NNNN_name.sql"),
    (["0001-a.sql"], "NNNN_name.sql"),
    (["0001_a.sql", "00002_b.sql"], "NNNN_name.sql"),
    (["0001_a b.sql"], "NNNN_name.sql"),
]


@pytest.mark.parametrize(("names", "message"), BAD_DIRECTORIES,
                         ids=["+".join(n) for n, _ in BAD_DIRECTORIES])
def test_load_migrations_refuses_bad_directory(
    tmp_path: Path, names: list[str], message: str
) -> None:
    for name in names:
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=message):
        load_migrations(tmp_path)


def test_load_migrations_reads_a_good_directory(tmp_path: Path) -> None:
    (tmp_path / "0002_second.sql").write_text("SELECT 2;")
    (tmp_path / "0001_first.sql").write_text("SELECT 1;")
    (tmp_path / "README.md").write_text("not a migration")
    found = load_migrations(tmp_path)
    assert [(m.version, m.name, m.sql) for m in found] == [
        (1, "first", "SELECT 1;"), (2, "second", "SELECT 2;")]
    assert found[0].checksum != found[1].checksum
    assert load_migrations(tmp_path / "missing") == []


def test_shipped_migrations_are_well_formed() -> None:
    found = load_migrations()
    assert [m.name for m in found[:2]] == ["ledger", "money_functions"]
    assert len({m.checksum for m in found}) == len(found)
