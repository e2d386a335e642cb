"""The database code is source code: every function, trigger and view is defined once, in
vnode/db/functions/, and every database ends with the same catalog whatever schema it started
from. System account ids and the timestamp form are declared once per language, and agree."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import pytest

from tests.support import create_database, with_database
from tests.unit.db.test_result_codes import codes_in
from vnode.db.dsn import database_of
from vnode.db.migrate import (
    FUNCTIONS_DIR,
    MIGRATIONS_DIR,
    VNODE_MIGRATIONS,
    Migration,
    MigrationSet,
    load_functions,
    load_migrations,
    migrate,
)
from vnode.domain.accounts import SystemAccount
from vnode.domain.timestamps import format_timestamp, format_unix_timestamp
from vnode.errors import SUCCESS_STATUS, ErrorCode

Catalog = dict[str, dict[str, str]]

# What a database's schema is made of, each object by a stable key and its definition as
# PostgreSQL prints it. Only the public schema: vnode's (the bot keeps its tables elsewhere).
CATALOG_QUERIES = {
    "functions": """
        SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
               pg_get_functiondef(p.oid)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public'""",
    "triggers": """
        SELECT c.relname || '.' || t.tgname, pg_get_triggerdef(t.oid)
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND NOT t.tgisinternal""",
    "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
    "constraints": """
        SELECT c.conrelid::regclass::text || '.' || c.conname, pg_get_constraintdef(c.oid)
        FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE n.nspname = 'public'""",
    "views": "SELECT viewname, definition FROM pg_views WHERE schemaname = 'public'",
    "columns": """
        SELECT table_name || '.' || column_name,
               concat_ws(' ', ordinal_position, data_type, is_nullable, column_default)
        FROM information_schema.columns WHERE table_schema = 'public'""",
    "sequences": """
        SELECT sequencename, concat_ws(' ', data_type, start_value, increment_by)
        FROM pg_sequences WHERE schemaname = 'public'""",
}


async def catalog(conn: asyncpg.Connection) -> Catalog:
    return {
        kind: {row[0]: row[1] for row in await conn.fetch(sql)}
        for kind, sql in CATALOG_QUERIES.items()
    }


def differences(expected: Catalog, found: Catalog) -> list[str]:
    """Readable differences: 'functions vnode_x(...): missing | extra | differs'."""
    out = []
    for kind, objects in expected.items():
        for key in sorted(objects.keys() | found[kind].keys()):
            if key not in found[kind]:
                out.append(f"{kind} {key}: missing")
            elif key not in objects:
                out.append(f"{kind} {key}: extra")
            elif objects[key] != found[kind][key]:
                out.append(f"{kind} {key}: differs\n  {objects[key]}\n  {found[kind][key]}")
    return out


@pytest.fixture
async def databases(pg_server: str) -> AsyncIterator[list[str]]:
    """Names of the empty databases a test makes; dropped afterwards."""
    made: list[str] = []
    yield made
    admin = await asyncpg.connect(with_database(pg_server, "postgres"))
    try:
        for name in made:
            await admin.execute(f"DROP DATABASE IF EXISTS {name}")
    finally:
        await admin.close()


async def _empty(pg_server: str, databases: list[str], template: str | None = None) -> str:
    dsn = await create_database(pg_server, template)
    databases.append(database_of(dsn))
    return dsn


async def _earlier_schemas(
    pg_server: str, databases: list[str], tmp_path: Path
) -> AsyncIterator[tuple[int, str]]:
    """(k, a database that ran the first k migrations as vnode did before the functions folder
    existed: numbered migrations only), for k = 0 .. every migration. One database takes the
    migrations one at a time, and each stage is copied (CREATE DATABASE ... TEMPLATE) before the
    next: the same schema as running the first k on an empty database, for one migration per
    stage instead of k (this test migrated 190 of them before, the most time of the fast run)."""
    stage = await _empty(pg_server, databases)
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    old_way = MigrationSet(directory=earlier, functions=None)
    for applied, migration in enumerate([None, *load_migrations()]):
        if migration is not None:
            shutil.copy(MIGRATIONS_DIR / f"{migration.version:04d}_{migration.name}.sql", earlier)
            conn = await asyncpg.connect(stage)
            try:
                assert [m.version for m in await migrate(conn, old_way)] == [migration.version]
                assert await conn.fetchval("SELECT to_regclass('schema_functions')") is None
            finally:
                await conn.close()  # a template has no one connected
        yield applied, await _empty(pg_server, databases, database_of(stage))


async def _migrated_from(dsn: str, applied: int) -> Catalog:
    """The catalog after `migrate` on a database of the first `applied` numbered migrations."""
    conn = await asyncpg.connect(dsn)
    try:
        done = await migrate(conn)
        assert [m.version for m in done if m.version is not None] == [
            m.version for m in load_migrations()[applied:]
        ]
        # Every functions file ran: after a numbered migration all of them are applied again.
        assert [m.name for m in done if m.version is None] == [f.name for f in load_functions()]
        return await catalog(conn)
    finally:
        await conn.close()


async def test_fresh_and_upgraded_databases_have_one_catalog(
    pg_server: str, databases: list[str], tmp_path: Path
) -> None:
    """From an empty database and from each earlier schema (0001 only, 0001-0002, ... up to
    every migration without the functions folder, i.e. a database of the vnode before it),
    `migrate` reaches the same functions, triggers, indexes, constraints, views and columns."""
    # Two at a time: the machine has two cores, and each database is a few hundred statements.
    gate = asyncio.Semaphore(2)

    async def one(dsn: str, applied: int) -> Catalog:
        async with gate:
            return await _migrated_from(dsn, applied)

    migrating = [
        asyncio.create_task(one(dsn, applied))
        async for applied, dsn in _earlier_schemas(pg_server, databases, tmp_path)
    ]
    fresh, *upgraded = await asyncio.gather(*migrating)
    assert len(upgraded) == len(load_migrations())
    assert {"vnode_transfer", "vnode_payment_finish", "vnode_account"} <= {
        key.split("(")[0] for key in fresh["functions"]
    }
    assert "user_utxos.user_utxos_guard" in fresh["triggers"]
    for applied, found in enumerate(upgraded, start=1):
        assert differences(fresh, found) == [], f"upgraded from {applied} migrations"


async def test_the_functions_folder_defines_every_function_trigger_and_view(
    fresh_db: str,
) -> None:
    """Drop every function (and with them every trigger and view that uses one), apply the
    functions files: the catalog is what it was. Nothing lives only in a migration. Applying
    the files a second time changes nothing either (they are idempotent)."""
    conn = await asyncpg.connect(fresh_db)
    try:
        before = await catalog(conn)
        async with conn.transaction():
            for row in await conn.fetch(
                "SELECT p.oid::regprocedure::text AS f FROM pg_proc p"
                " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'"
            ):
                await conn.execute(f"DROP FUNCTION IF EXISTS {row['f']} CASCADE")
            assert (await catalog(conn))["triggers"] == {}
            for _ in range(2):
                for functions_file in load_functions():
                    await conn.execute(functions_file.sql)
        assert differences(before, await catalog(conn)) == []
    finally:
        await conn.close()


def _code(sql: str) -> str:
    """SQL without comments, string literals and dollar-quoted bodies."""
    sql = re.sub(r"\$(\w*)\$.*?\$\1\$", " $body$ ", sql, flags=re.S)
    sql = re.sub(r"--[^\n]*", " ", sql)
    return re.sub(r"'(?:[^']|'')*'", "''", sql)


def _statements(sql: str) -> list[str]:
    return [" ".join(s.split()) for s in _code(sql).split(";") if s.strip()]


def _defined_in_folder() -> set[str]:
    names = set()
    for functions_file in load_functions():
        names |= set(re.findall(r"CREATE OR REPLACE FUNCTION (\w+)\(", functions_file.sql))
    return names


def test_no_migration_calls_a_function_of_the_folder() -> None:
    """On a fresh database the migrations run before the functions files, against the
    definitions of their own time, so a data change must be plain SQL. A migration may still
    create, drop or attach (EXECUTE FUNCTION) a function; it never calls one."""
    folder = _defined_in_folder()
    assert {"vnode_transfer", "vnode_ts", "user_utxos_guard"} <= folder
    for migration in load_migrations():
        for statement in _statements(migration.sql):
            calls = set(re.findall(r"(?<!FUNCTION )\b(\w+)\s*\(", statement))
            assert not calls & folder, (migration.name, statement)


ALLOWED_STATEMENTS = re.compile(
    r"(CREATE OR REPLACE FUNCTION|DROP FUNCTION IF EXISTS|CREATE OR REPLACE VIEW"
    r"|DROP VIEW IF EXISTS|DROP TRIGGER IF EXISTS|CREATE TRIGGER|COMMENT ON) "
)


@pytest.mark.parametrize("functions_file", load_functions(), ids=lambda f: f.name)
def test_functions_files_are_idempotent_definitions(functions_file: Migration) -> None:
    """Only statements that can run again: no table, no data, no bare CREATE FUNCTION; each
    CREATE TRIGGER right after the DROP TRIGGER IF EXISTS of the same trigger."""
    statements = _statements(functions_file.sql)
    assert statements
    previous = ""
    for statement in statements:
        assert ALLOWED_STATEMENTS.match(statement), statement
        trigger = re.match(r"CREATE TRIGGER (\w+) \w+ .*? ON (\w+) ", statement)
        if statement.startswith("CREATE TRIGGER"):
            assert trigger, statement
            assert previous == f"DROP TRIGGER IF EXISTS {trigger[1]} ON {trigger[2]}", statement
        previous = statement


def test_system_account_ids_are_named_not_numbered_in_sql() -> None:
    """Every function names a system account through vnode_account('<name>'), and every name
    it uses exists; no function writes an account number of its own."""
    used: set[str] = set()
    for functions_file in load_functions():
        used |= set(re.findall(r"vnode_account\('(\w+)'\)", functions_file.sql))
        body = re.sub(
            r"CREATE OR REPLACE FUNCTION vnode_account\(.*?\$\$;",
            "",
            functions_file.sql,
            flags=re.S,
        )
        assert not re.search(r"constant bigint := -\d", body), functions_file.name
        assert not re.search(r"\bTHEN -\d", body), functions_file.name
    assert used <= {account.account_name for account in SystemAccount}
    assert {"operator_funding", "payments_in_flight", "operator_loss"} <= used


async def test_system_accounts_agree_in_python_sql_and_the_table(fresh_db: str) -> None:
    conn = await asyncpg.connect(fresh_db)
    try:
        rows = await conn.fetch(
            "SELECT name, account_id, vnode_account(name) AS named FROM system_accounts"
        )
        assert {row["name"]: row["account_id"] for row in rows} == {
            account.account_name: int(account) for account in SystemAccount
        }
        assert all(row["named"] == row["account_id"] for row in rows)
        with pytest.raises(asyncpg.RaiseError, match="unknown system account"):
            await conn.fetchval("SELECT vnode_account($1)", "operator_funds")
    finally:
        await conn.close()


async def test_the_database_functions_answer_only_catalogued_codes(fresh_db: str) -> None:
    """What the database runs, not only what the folder says: no function has an HTTP status
    among its columns, and every code any of them can set is in vnode/errors.py."""
    conn = await asyncpg.connect(fresh_db)
    try:
        rows = await conn.fetch(
            "SELECT p.proname, p.prosrc, coalesce(p.proargnames, '{}') AS names "
            "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public'"
        )
    finally:
        await conn.close()
    answering = {row["proname"] for row in rows if "code" in row["names"]}
    assert {
        "vnode_transfer",
        "vnode_admin_move",
        "vnode_payment_reserve",
        "vnode_payment_finish",
        "vnode_internal_pay",
        "vnode_receipt_credit",
        "vnode_rgb_receipt_credit",
        "vnode_idem_lookup",
    } <= answering
    assert not [row["proname"] for row in rows if "status" in row["names"]]
    found = set().union(*(codes_in(row["prosrc"]) for row in rows))
    assert found - set(SUCCESS_STATUS) - {code.value for code in ErrorCode} == set()


INSTANTS = [
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC),  # no microseconds
    datetime(2026, 11, 26, 10, 0, 0, 500, tzinfo=UTC),  # leading zeros kept
    datetime(2028, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(2026, 3, 29, 2, 30, 0, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(2026, 1, 1, 0, 0, 0, tzinfo=timezone(timedelta(hours=-8))),  # another UTC day
    # asyncpg sends datetime.min and datetime.max as -infinity and infinity: one step inside.
    datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999_998, tzinfo=UTC),
]


async def test_timestamps_are_written_alike_in_python_and_sql(fresh_db: str) -> None:
    conn = await asyncpg.connect(fresh_db)
    try:
        # The session's zone must not matter to either side.
        await conn.execute("SET TIME ZONE 'America/St_Johns'")
        now = await conn.fetchval("SELECT now()")
        for at in [*INSTANTS, now, datetime.now(UTC)]:
            assert format_timestamp(at) == await conn.fetchval("SELECT vnode_ts($1)", at), at
        for seconds in (0, 1_764_151_200, 253_402_300_799):
            assert format_unix_timestamp(seconds) == await conn.fetchval(
                "SELECT vnode_ts(to_timestamp($1))", seconds
            ), seconds
    finally:
        await conn.close()
    assert format_timestamp(INSTANTS[1]) == "2026-11-26T10:00:00.000000Z"
    assert format_timestamp(INSTANTS[4]) == "2026-03-28T21:00:00.000001Z"
    with pytest.raises(ValueError, match="time zone"):
        format_timestamp(datetime(2026, 1, 1))  # naive


def test_the_vnode_set_has_the_shipped_folder() -> None:
    assert VNODE_MIGRATIONS.functions == FUNCTIONS_DIR
    names = [f.name for f in load_functions()]
    assert names == sorted(names) and names[0] == "00_helpers"
