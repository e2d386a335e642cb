"""PostgreSQL for the harnesses: a throwaway embedded cluster in a directory of its own, and
databases created (from a template), reset for reuse or dropped on a server."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import io
import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from vnode.db.dsn import database_of, with_database
from vnode.db.embedded import EmbeddedPostgres, bin_dir


def initialised_cluster(pgdata: Path) -> EmbeddedPostgres:
    """An embedded cluster in `pgdata`, which, when it does not exist yet, is made a copy of a
    cluster initialised once per machine and PostgreSQL build: initdb costs about 1 s of CPU
    (every test run started one or more), a copy of its 46 MB 0.1 s. The copy is of a cluster
    stopped cleanly, as initdb and one start left it; PostgreSQL's data directories do not
    depend on their path."""
    if not pgdata.exists():
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        # Copied beside it, then renamed into place: processes that share `pgdata` (the
        # pytest-xdist workers) never see a copy half made, whose folder `cp` has not yet given
        # to the server's user. `cp -a`: the files keep their owner, that user when run as root.
        partial = pgdata.with_name(f".{pgdata.name}-{secrets.token_hex(4)}")
        subprocess.run(["cp", "-a", str(_initdb_cache()), str(partial)], check=True)
        try:
            partial.rename(pgdata)
        except OSError:  # another process put its copy there first: use that one
            shutil.rmtree(partial, ignore_errors=True)
            if not pgdata.is_dir():
                raise
    return EmbeddedPostgres(pgdata)


def _initdb_cache() -> Path:
    initdb = bin_dir() / "initdb"
    build = f"{initdb.resolve()}:{initdb.stat().st_mtime_ns}:{os.geteuid()}"
    cache = (
        Path(tempfile.gettempdir())
        / "vnode-initdb-cache"
        / hashlib.sha256(build.encode()).hexdigest()[:16]
    )
    data = cache / "pg" / "data"
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # one maker; the others wait and copy its result
        # Remade when a maker was interrupted, or when a cleaner of the temporary folder took
        # some of its files.
        whole = all((data / part).exists() for part in ("PG_VERSION", "global/pg_control", "base"))
        if not ((cache / "ready").exists() and whole):
            (cache / "ready").unlink(missing_ok=True)
            shutil.rmtree(cache / "pg", ignore_errors=True)
            cluster = EmbeddedPostgres(data)
            try:
                cluster.start()
            finally:
                cluster.stop()
            with contextlib.suppress(FileNotFoundError):
                (data / "postmaster.opts").unlink()
            (cache / "ready").touch()
    return data


class TemporaryCluster:
    """An embedded PostgreSQL cluster in `root` (a new temporary directory by default), which
    stop() removes with everything in it."""

    def __init__(self, root: Path | None = None, prefix: str = "vnode-cluster-") -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix=prefix))
        self.pg = initialised_cluster(self.root / "pg")
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


# Catalogs that change with a database's data alone: the planner's statistics.
_STATISTICS = ("pg_statistic", "pg_statistic_ext_data")


class Recycler:
    """Puts a used copy of a template database back to the template's state, when the test that
    used it changed only rows: some 20-40 ms, where a new copy costs 50-250 ms of PostgreSQL's CPU
    (on 2 cores, most of the fast tests' run went there).

    A copy is reused only when its catalog is still the template's (catalog_state); anything
    else is dropped and replaced by a new copy. Reset, it holds the template's rows and sequence
    values again, so a test sees what a fresh copy would show it."""

    def __init__(self) -> None:
        self.catalog = ""
        self._tables: list[str] = []
        self._seeds: dict[str, _Seed] = {}  # table -> the template's rows
        self._sequences: list[tuple[str, int, bool]] = []

    async def learn(self, template: asyncpg.Connection) -> None:
        """Read the template's catalog state, rows and sequences (once, before any reuse)."""
        self.catalog = await catalog_state(template)
        self._tables = [
            row["name"]
            for row in await template.fetch(
                "SELECT format('%I.%I', n.nspname, c.relname) AS name FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
                "AND NOT c.relispartition AND n.nspname <> 'information_schema' "
                "AND n.nspname !~ '^pg_' ORDER BY 1"
            )
        ]
        for table in await _filled(template, self._tables):
            self._seeds[table] = await _Seed.read(template, table)
        for row in await template.fetch(
            "SELECT format('%I.%I', schemaname, sequencename) AS name FROM pg_sequences ORDER BY 1"
        ):
            # Sequence names come from the catalog, quoted by format(); nothing from outside.
            value = await template.fetchrow(f"SELECT last_value, is_called FROM {row['name']}")  # noqa: S608
            assert value is not None
            self._sequences.append((row["name"], value["last_value"], value["is_called"]))

    async def reset(self, conn: asyncpg.Connection, since: int) -> bool:
        """Reset the database `conn` is connected to (no one else may be), which was in the
        template's state when transaction id `since` was next; False, changing nothing, when
        its catalog has changed since."""
        if await catalog_state(conn, since) != self.catalog:
            return False
        emptied = set(await _filled(conn, self._tables)) | set(self._seeds)
        async with conn.transaction():
            # Triggers that guard the ledger's append-only tables, and foreign keys, are the
            # ledger's rules for its own writes, not for putting back a template's rows. DELETE,
            # not TRUNCATE: a few rows in each table, where TRUNCATE makes new files for every
            # table and index.
            await conn.execute("SET LOCAL session_replication_role = replica")
            if emptied:
                deletes = (f"DELETE FROM {table}" for table in sorted(emptied))  # noqa: S608
                await conn.execute("; ".join(deletes))
            for seed in self._seeds.values():
                await seed.write(conn)
            await conn.executemany("SELECT setval($1::regclass, $2, $3)", self._sequences)
        return True


async def _filled(conn: asyncpg.Connection, tables: list[str]) -> list[str]:
    """Those of `tables` (quoted names) that hold a row."""
    if not tables:
        return []
    # Table names come from the catalog, quoted by format(); nothing from outside.
    probes = " UNION ALL ".join(
        f"SELECT {i} WHERE EXISTS (SELECT FROM {table})"  # noqa: S608
        for i, table in enumerate(tables)
    )
    return [tables[row[0]] for row in await conn.fetch(probes)]


@dataclass(frozen=True)
class _Seed:
    """A template table's rows (COPY binary) and where they go back."""

    schema: str
    name: str
    columns: list[str]  # the columns COPY can write: not dropped, not generated
    rows: bytes

    @classmethod
    async def read(cls, conn: asyncpg.Connection, table: str) -> _Seed:
        where = await conn.fetchrow(
            "SELECT n.nspname, c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::regclass",
            table,
        )
        assert where is not None
        columns = [
            row["attname"]
            for row in await conn.fetch(
                "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 "
                "AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
                table,
            )
        ]
        sink = io.BytesIO()
        await conn.copy_from_table(
            where["relname"],
            schema_name=where["nspname"],
            columns=columns,
            output=sink,
            format="binary",
        )
        return cls(where["nspname"], where["relname"], columns, sink.getvalue())

    async def write(self, conn: asyncpg.Connection) -> None:
        await conn.copy_to_table(
            self.name,
            schema_name=self.schema,
            columns=self.columns,
            source=io.BytesIO(self.rows),
            format="binary",
        )


async def catalog_state(conn: asyncpg.Connection, since: int = 2**62) -> str:
    """What the catalog of the database `conn` is connected to holds, in a few numbers: the rows
    of each of its catalogs, and how many of them a transaction from `since` (a transaction id)
    on wrote. A definition made, changed or dropped changes it; rows written do not.

    Counting is cheap where comparing every definition is not (a digest of them costs more
    than the copy it would save); no DDL leaves a catalog's row count and every row's xmin as
    they were. The database's own settings are in shared catalogs, and are compared whole."""
    catalogs = await conn.fetch(
        "SELECT format('%I', c.relname) AS name FROM pg_class c "
        "WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relkind = 'r' "
        "AND NOT c.relisshared AND NOT c.relname = ANY($1::text[]) ORDER BY 1",
        list(_STATISTICS),
    )
    counts = " UNION ALL ".join(
        # Catalog names come from pg_class, quoted by format(); nothing from outside.
        f"SELECT {i}, count(*), count(*) FILTER (WHERE xmin::text::bigint >= $1) "  # noqa: S608
        f"FROM pg_catalog.{row['name']}"
        for i, row in enumerate(catalogs)
    )
    rows = await conn.fetch(f"SELECT * FROM ({counts}) c ORDER BY 1", since)  # noqa: S608
    settings = await conn.fetchval(
        "SELECT jsonb_build_array(d.datconnlimit, d.datallowconn, d.datacl, "
        "(SELECT array_agg(s.setconfig) FROM pg_db_role_setting s WHERE s.setdatabase = d.oid))"
        "::text FROM pg_database d WHERE d.datname = current_database()"
    )
    return f"{[tuple(row) for row in rows]} {settings}"


class DatabaseStock:
    """Copies of a template database made ahead of need, and reset or dropped after use, by a
    few tasks with a connection each.

    A copy takes about 0.1 s; a test suite that gives each test a database of its own would pay
    that per test. Made here while the tests await I/O, several at once, a copy is usually ready
    when a test asks for one. A used copy whose definitions are still the template's is reset
    (Recycler) under a new name, so that nothing still holding its old DSN reaches it; any other
    is dropped, which keeps the cluster, and the time to delete it after the run, small."""

    def __init__(self, server_dsn: str, template: str, depth: int = 4) -> None:
        self.server_dsn = server_dsn
        self.template = template
        self.depth = depth  # copies ready or being made, and tasks making them
        self.recycled = 0  # copies reset for reuse
        self.dropped = 0  # used copies dropped: their definitions had changed
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._making = 0
        self._used: list[str] = []
        self._changed = asyncio.Condition()
        self._workers: asyncio.Future[list[None]] | None = None
        self._recycler: Recycler | None = None
        self._since: dict[str, int] = {}  # database -> the next transaction id when it was ready
        self._learning = asyncio.Lock()

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
        """`dsn` is no longer used: reset it for reuse, or drop it (closing any connection left
        to it)."""
        self._used.append(database_of(dsn))
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
                    used = self._used.pop() if self._used else None
                    self._making += 1
                try:
                    made = await (
                        self._reuse(conn, used)
                        if used is not None
                        else _create(conn, self.server_dsn, self.template, "vnode_t_")
                    )
                finally:
                    self._making -= 1
                if made is not None:
                    self._since[database_of(made)] = await _next_xid(conn)
                    self._ready.put_nowait(made)
        finally:
            await conn.close()

    async def _reuse(self, admin: asyncpg.Connection, name: str) -> str | None:
        """The DSN of `name` reset and renamed, or None when it was dropped instead."""
        since = self._since.pop(name)
        renamed = await _rename_closed(admin, name, "vnode_t_" + secrets.token_hex(6))
        if renamed is not None:
            dsn = with_database(self.server_dsn, renamed)
            conn = await asyncpg.connect(dsn)
            try:
                if await (await self._learned()).reset(conn, since):
                    self.recycled += 1
                    return dsn
            finally:
                await conn.close()
            name = renamed
        self.dropped += 1
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        return None

    async def _learned(self) -> Recycler:
        async with self._learning:
            if self._recycler is None:
                recycler = Recycler()
                conn = await asyncpg.connect(with_database(self.server_dsn, self.template))
                try:
                    await recycler.learn(conn)
                finally:
                    await conn.close()
                self._recycler = recycler
            return self._recycler


async def _next_xid(conn: asyncpg.Connection) -> int:
    """The id the next transaction of the cluster will have: every write from now on has one
    at least as high."""
    return int(await conn.fetchval("SELECT pg_snapshot_xmax(pg_current_snapshot())::text"))


async def _rename_closed(admin: asyncpg.Connection, name: str, new_name: str) -> str | None:
    """Close every connection to database `name` and rename it `new_name`; None when a
    connection came back in between (then it is left as it is, to be dropped)."""
    await admin.execute(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = $1", name
    )
    try:
        await admin.execute(f"ALTER DATABASE {name} RENAME TO {new_name}")
    except asyncpg.ObjectInUseError:
        return None
    return new_name


async def drop_database(dsn: str) -> None:
    """Drop the database of `dsn`, closing its connections."""
    name = database_of(dsn)
    conn = await asyncpg.connect(with_database(dsn, "postgres"))
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()
