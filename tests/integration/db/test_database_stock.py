"""The test databases the suite reuses (harness/postgres.py): a database reset after a test shows
the next test exactly what a new copy of the template would, and one whose definitions a test
changed is never reused."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from harness.postgres import DatabaseStock, Recycler, _next_xid, create_database, drop_database
from harness.waits import wait_until
from tests.integration.ledger.support import NO_KEY, SIGNER, credit
from vnode.db.dsn import database_of, with_database
from vnode.ledger.transfers import TransferCommand, transfer

Change = Callable[[asyncpg.Connection], Awaitable[object]]


async def contents(conn: asyncpg.Connection) -> dict[str, list[str]]:
    """Every row of every table of vnode's schema, and every sequence's state, as text."""
    found: dict[str, list[str]] = {}
    for row in await conn.fetch(
        "SELECT format('%I.%I', schemaname, tablename) AS name FROM pg_tables "
        "WHERE schemaname = 'public' ORDER BY 1"
    ):
        rows = await conn.fetch(f"SELECT t::text AS r FROM {row['name']} t")
        found[row["name"]] = sorted(r["r"] for r in rows)
    for row in await conn.fetch(
        "SELECT format('%I.%I', schemaname, sequencename) AS name FROM pg_sequences ORDER BY 1"
    ):
        state = await conn.fetchrow(f"SELECT last_value, is_called FROM {row['name']}")
        found[row["name"]] = [repr(tuple(state or ()))]
    return found


@pytest.fixture
async def learned(template_db: str, pg_server: str) -> Recycler:
    recycler = Recycler()
    conn = await asyncpg.connect(with_database(pg_server, template_db))
    try:
        await recycler.learn(conn)
    finally:
        await conn.close()
    return recycler


@pytest.fixture
async def copy(pg_server: str, template_db: str) -> AsyncIterator[tuple[str, int]]:
    """A new copy of the template, and the next transaction id when it was made."""
    dsn = await create_database(pg_server, template_db)
    admin = await asyncpg.connect(with_database(pg_server, "postgres"))
    try:
        since = await _next_xid(admin)
    finally:
        await admin.close()
    yield dsn, since
    await drop_database(dsn)


async def use_the_ledger(dsn: str) -> None:
    """What a test does to a database: money moved, users and their nodes made, events and
    idempotency keys written, sequences advanced."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    try:
        await credit(pool, 501, 10_000)
        answer = await transfer(pool, SIGNER, TransferCommand(501, 502, "BTC", 2_500, "m"), NO_KEY)
        assert answer.status == 200, answer.body
    finally:
        await pool.close()


async def test_a_reset_database_holds_exactly_the_templates_rows_and_sequences(
    pg_server: str, template_db: str, learned: Recycler, copy: tuple[str, int]
) -> None:
    dsn, since = copy
    template = await asyncpg.connect(with_database(pg_server, template_db))
    try:
        expected = await contents(template)
    finally:
        await template.close()
    await use_the_ledger(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        assert await contents(conn) != expected  # the test wrote rows and used sequences
        assert await learned.reset(conn, since)
        assert await contents(conn) == expected
    finally:
        await conn.close()
    await use_the_ledger(dsn)  # and it works as a new copy does


async def _create_table(conn: asyncpg.Connection) -> object:
    return await conn.execute("CREATE TABLE left_behind (a int)")


async def _replace_function(conn: asyncpg.Connection) -> object:
    source = await conn.fetchval("SELECT pg_get_functiondef('vnode_ts'::regproc)")
    return await conn.execute(str(source).replace("$function$", "$function$ ", 1))


async def _drop_index(conn: asyncpg.Connection) -> object:
    name = await conn.fetchval(
        "SELECT indexrelid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE NOT i.indisunique AND c.relnamespace = 'public'::regnamespace LIMIT 1"
    )
    return await conn.execute(f"DROP INDEX {name}")


async def _add_column(conn: asyncpg.Connection) -> object:
    return await conn.execute("ALTER TABLE outbox ADD COLUMN extra int")


async def _disable_trigger(conn: asyncpg.Connection) -> object:
    table = await conn.fetchval(
        "SELECT tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal LIMIT 1"
    )
    return await conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")


async def _database_setting(conn: asyncpg.Connection) -> object:
    name = await conn.fetchval("SELECT current_database()")
    return await conn.execute(f"ALTER DATABASE {name} SET work_mem = '8MB'")


@pytest.mark.parametrize(
    "change",
    [
        _create_table,
        _replace_function,
        _drop_index,
        _add_column,
        _disable_trigger,
        _database_setting,
    ],
)
async def test_a_database_whose_definitions_changed_is_not_reset(
    learned: Recycler, copy: tuple[str, int], change: Change
) -> None:
    dsn, since = copy
    await use_the_ledger(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await change(conn)
        before = await contents(conn)
        assert not await learned.reset(conn, since)
        assert await contents(conn) == before  # nothing was changed by the refusal
    finally:
        await conn.close()


async def test_a_reused_database_has_a_new_name_and_a_changed_one_is_dropped(
    pg_server: str, template_db: str
) -> None:
    stock = DatabaseStock(pg_server, template_db, depth=1)
    admin = await asyncpg.connect(with_database(pg_server, "postgres"))
    try:
        used = await stock.take()
        await use_the_ledger(used)
        held = await asyncpg.connect(used)  # a connection the test forgot to close
        await stock.give_back(used)
        changed = await stock.take()
        conn = await asyncpg.connect(changed)
        await _create_table(conn)
        await conn.close()
        await stock.give_back(changed)
        await wait_until(lambda: (stock.recycled, stock.dropped) == (1, 1), what="both back")
        first, second = await stock.take(), await stock.take()
        assert used not in (first, second)
        with pytest.raises(asyncpg.InvalidCatalogNameError):
            await asyncpg.connect(used)  # whatever still has the old DSN reaches nothing
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
            await held.fetchval("SELECT 1")  # and what was still connected was cut off
        names = {row["datname"] for row in await admin.fetch("SELECT datname FROM pg_database")}
        assert database_of(changed) not in names
    finally:
        await stock.close()
        await admin.close()
