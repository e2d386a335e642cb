"""Forward-only migrations: concurrent starts apply each one once; changed history is refused.
The functions files: applied after them, again when one changes, all in one transaction."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import asyncpg
import pytest

from tests.support import create_database
from vnode.db.migrate import (
    FUNCTIONS_DIR,
    MIGRATIONS_DIR,
    MigrationError,
    MigrationSet,
    load_functions,
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
    functions = load_functions()
    assert [m.version for m in known] == list(range(1, len(known) + 1))
    conns = [await asyncpg.connect(empty_db) for _ in range(5)]
    try:
        results = await asyncio.gather(*(migrate(conn) for conn in conns))

        applied = [[(m.version, m.name) for m in result] for result in results]
        # the numbered migrations in order, then every functions file in name order
        everything = [(m.version, m.name) for m in known] + [(None, f.name) for f in functions]
        assert sorted(applied, key=len) == [[]] * 4 + [everything], applied
        rows = await conns[0].fetch(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
        )
        assert [tuple(r.values()) for r in rows] == [(m.version, m.name, m.checksum) for m in known]
        rows = await conns[0].fetch("SELECT name, checksum FROM schema_functions ORDER BY name")
        assert [tuple(r.values()) for r in rows] == [(f.name, f.checksum) for f in functions]
        # the schema is really there
        assert await conns[0].fetchval(
            "SELECT to_regprocedure("
            "'vnode_transfer(bigint,bigint,text,text,bigint,text,text,text,bytea)') IS NOT NULL"
        )
        names = await conns[0].fetch("SELECT name FROM system_accounts")
        assert {"operator_funding", "lightning_inbound", "lightning_outbound"} <= {
            r["name"] for r in names
        }

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
        assert [(m.version, m.name) for m in pending] == [
            (m.version, m.name) for m in load_migrations()
        ] + [(None, f.name) for f in load_functions()]
        # asking does not create anything
        assert await conn.fetchval("SELECT to_regclass('schema_migrations')") is None
        assert await conn.fetchval("SELECT to_regclass('schema_functions')") is None
    finally:
        await conn.close()


CHANGED = "changed after it was applied"


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1", CHANGED),
        ("UPDATE schema_migrations SET checksum = 'x' WHERE version = 2", CHANGED),
        (
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (99, 'future', 'y')",
            "does not know",
        ),
    ],
    ids=["checksum of 1", "checksum of 2", "unknown version"],
)
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


@pytest.mark.parametrize(
    ("names", "message"), BAD_DIRECTORIES, ids=["+".join(n) for n, _ in BAD_DIRECTORIES]
)
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
        (1, "first", "SELECT 1;"),
        (2, "second", "SELECT 2;"),
    ]
    assert found[0].checksum != found[1].checksum
    assert load_migrations(tmp_path / "missing") == []


def test_shipped_migrations_are_well_formed() -> None:
    found = load_migrations()
    assert [m.name for m in found[:2]] == ["ledger", "money_functions"]
    assert len({m.checksum for m in found}) == len(found)


BAD_FUNCTION_FILES = [["1_a.sql"], ["000_a.sql"], ["00_A.sql"], ["00-a.sql"], ["a.sql"]]


@pytest.mark.parametrize("names", BAD_FUNCTION_FILES, ids=["+".join(n) for n in BAD_FUNCTION_FILES])
def test_load_functions_refuses_bad_names(tmp_path: Path, names: list[str]) -> None:
    for name in names:
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="form NN_topic"):
        load_functions(tmp_path)


def test_load_functions_reads_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "20_later.sql").write_text("SELECT 2;")
    (tmp_path / "00_first.sql").write_text("SELECT 1;")
    (tmp_path / "README.md").write_text("not a functions file")
    assert [(f.version, f.name, f.sql) for f in load_functions(tmp_path)] == [
        (None, "00_first", "SELECT 1;"),
        (None, "20_later", "SELECT 2;"),
    ]


def _copy(source: Path, target: Path) -> Path:
    target.mkdir()
    for path in source.glob("*.sql"):
        (target / path.name).write_text(path.read_text())
    return target


async def _recorded(conn: asyncpg.Connection) -> dict[str, tuple[str, datetime]]:
    rows = await conn.fetch("SELECT name, checksum, applied_at FROM schema_functions")
    return {r["name"]: (r["checksum"], r["applied_at"]) for r in rows}


async def _definition(conn: asyncpg.Connection, function: str) -> str:
    return str(await conn.fetchval("SELECT pg_get_functiondef($1::regproc)", function))


async def test_a_changed_functions_file_is_applied_again_alone(
    fresh_db: str, tmp_path: Path
) -> None:
    folder = _copy(FUNCTIONS_DIR, tmp_path / "functions")
    which = MigrationSet(functions=folder)
    conn = await asyncpg.connect(fresh_db)
    try:
        assert await pending_migrations(conn, which) == []
        before = await _recorded(conn)
        assert set(before) == {f.name for f in load_functions()}

        ledger = folder / "40_ledger.sql"
        ledger.write_text(
            ledger.read_text().replace(
                "-- Lock both nodes in id order", "-- Lock both nodes in id order (edited)"
            )
        )
        assert [(m.version, m.name) for m in await pending_migrations(conn, which)] == [
            (None, "40_ledger")
        ]

        assert [(m.version, m.name) for m in await migrate(conn, which)] == [(None, "40_ledger")]
        assert "(edited)" in await _definition(conn, "vnode_transfer")
        after = await _recorded(conn)
        edited = {f.name: f.checksum for f in load_functions(folder)}["40_ledger"]
        assert after["40_ledger"][0] == edited != before["40_ledger"][0]
        assert after["40_ledger"][1] > before["40_ledger"][1]
        assert {k: v for k, v in after.items() if k != "40_ledger"} == {
            k: v for k, v in before.items() if k != "40_ledger"
        }
        assert await pending_migrations(conn, which) == []
        assert await migrate(conn, which) == []

        # A renamed file is applied under its new name; the old name's record goes.
        (folder / "40_ledger.sql").rename(folder / "45_ledger.sql")
        assert [m.name for m in await migrate(conn, which)] == ["45_ledger"]
        assert "40_ledger" not in await _recorded(conn)
    finally:
        await conn.close()


async def test_functions_files_apply_in_one_transaction(fresh_db: str, tmp_path: Path) -> None:
    """One broken file: none of the changed files is applied or recorded, the lock is free."""
    folder = _copy(FUNCTIONS_DIR, tmp_path / "functions")
    which = MigrationSet(functions=folder)
    helpers = folder / "00_helpers.sql"
    helpers.write_text(
        helpers.read_text().replace("'unknown system account %'", "'no such system account %'")
    )
    receipts = folder / "60_receipts.sql"
    receipts.write_text(receipts.read_text() + "\nCREATE OR REPLACE FUNCTION broken(;\n")
    conn = await asyncpg.connect(fresh_db)
    try:
        before = await _recorded(conn)
        with pytest.raises(asyncpg.PostgresSyntaxError):
            await migrate(conn, which)
        assert await _recorded(conn) == before
        assert "unknown system account" in await _definition(conn, "vnode_unknown_account")
        assert [m.name for m in await pending_migrations(conn, which)] == [
            "00_helpers",
            "60_receipts",
        ]
        assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY)
    finally:
        await conn.close()


async def test_after_a_migration_every_functions_file_is_applied(
    fresh_db: str, tmp_path: Path
) -> None:
    """A migration may drop a function its table change is in the way of: the functions files,
    all applied again after any numbered migration, put it back, changed or not."""
    migrations = _copy(MIGRATIONS_DIR, tmp_path / "migrations")
    number = len(load_migrations()) + 1
    (migrations / f"{number:04d}_drop_a_function.sql").write_text(
        "DROP FUNCTION vnode_payment_json(ln_payments) CASCADE;\n"
    )
    which = MigrationSet(directory=migrations, functions=FUNCTIONS_DIR)
    conn = await asyncpg.connect(fresh_db)
    try:
        pending = await pending_migrations(conn, which)
        assert [(m.version, m.name) for m in pending] == [(number, "drop_a_function")]
        applied = await migrate(conn, which)
        assert [(m.version, m.name) for m in applied] == [(number, "drop_a_function")] + [
            (None, f.name) for f in load_functions()
        ]
        assert "vnode_ts(p.created_at)" in await _definition(conn, "vnode_payment_json")
    finally:
        await conn.close()


async def test_a_set_without_functions_makes_no_functions_table(
    empty_db: str, tmp_path: Path
) -> None:
    """The bot's set: its migrations only, recorded in its own table."""
    (tmp_path / "0001_only.sql").write_text("CREATE TABLE only_one (id integer);")
    which = MigrationSet(directory=tmp_path, table="other_migrations", lock_key=LOCK_KEY + 1)
    conn = await asyncpg.connect(empty_db)
    try:
        assert [(m.version, m.name) for m in await migrate(conn, which)] == [(1, "only")]
        assert await pending_migrations(conn, which) == []
        assert await conn.fetchval("SELECT to_regclass('schema_functions')") is None
        assert await conn.fetchval("SELECT to_regclass('schema_migrations')") is None
    finally:
        await conn.close()
