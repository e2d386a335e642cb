"""The service on a ledger of a million users and ten million history rows (issue 13, "Scale"),
against the same service on an empty database, in the same run.

    python bench/scale.py                         # 1,000,000 users, 10,000,000 history rows
    python bench/scale.py --minutes 2             # a shorter mixed load before the RSS figure
    python bench/scale.py --users 20000 --history 200000 --duration 5 --minutes 0.2  # plumbing

On one throwaway cluster:

1. the empty database: `vnode serve`, --empty-users funded through POST /admin/credit, then
   balance reads (POST /virtual_assetbalance) and transfers (POST /virtual_transfer), each
   --clients connections for --warmup + --duration seconds: the reference figures;
2. the large database: migrated, then filled by COPY with what the money functions would have
   written (bench/ledger_fill.py: operator credits, transfers with their coins, history and
   events, consistent with every invariant `vnode audit` checks);
3. on it: the migrations (every functions file applied again, as an upgrade does), the start of
   `vnode serve` until GET /readyz answers, balance reads and transfers over all users as in 1,
   history pages (POST /virtual_history, 50 rows, a random cursor) for --history-clients
   clients over the users with long histories and over all users, a mixed load of the three
   for --minutes, after which the service process's RSS is read, and last `vnode audit` on the
   whole database (its time, and it must be clean).

The service runs with VNODE_PROOFS_INTERVAL_S=0 in both databases: the proofs publisher would
otherwise publish a million-user epoch during the measurements (bench/proofs.py measures that).
Printed last: `ratio transfers large/empty: 0.NN` (issue 13's target: at least 0.9).
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import asyncpg
import typer
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import balances
import common
import ledger_fill
import transfers

from harness import options as opt
from harness.postgres import TemporaryCluster
from harness.serve import ServeProcess
from harness.usage import rss_kib, tree_pids
from vnode.db.dsn import with_database
from vnode.db.migrate import migrate

console = Console(stderr=True)
out = Console(width=110)
SERVICE_ENV = {"VNODE_PROOFS_INTERVAL_S": "0"}
EMPTY_BASE = 7_000_000_000  # user ids of the empty database's funded users: base+1 ..
BALANCE = balances.WORKLOADS["assetbalance"]
# The amount of the load generator's body is the cursor here: a random row id below the last.
HISTORY = transfers.Workload(
    "/virtual_history",
    'string.format(\'{"user_id":%d,"limit":50,"cursor":"h%d"}\', base + a, '
    "math.random(max_amount))",
    '{"user_id":%(a)d,"limit":50,"cursor":"h%(amount)d"}',
)


@dataclass
class Figure:
    name: str
    value: float
    target: str


def main(
    users: Annotated[int, typer.Option(help="Virtual nodes of the large database")] = 1_000_000,
    history: Annotated[
        int,
        typer.Option(help="History rows of the large database (one per credit, two per transfer)"),
    ] = 10_000_000,
    busy: Annotated[int, typer.Option(help="Users with long histories")] = 1000,
    empty_users: Annotated[int, typer.Option(help="Users funded in the empty database")] = 1000,
    clients: opt.Clients = 32,
    history_clients: Annotated[int, typer.Option(help="Clients of the history pages")] = 4,
    duration: opt.Seconds = 20,
    warmup: opt.Warmup = 3,
    minutes: Annotated[
        float, typer.Option(help="Minutes of mixed load before the RSS is read (issue: 10)")
    ] = 10.0,
    loadgen: opt.Loadgen = "auto",
    pg_set: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=VALUE server setting of the cluster (ALTER SYSTEM, reload), repeatable: "
            "e.g. wal_compression=lz4"
        ),
    ] = None,
    json_path: opt.JsonOut = None,
) -> None:
    """Balance reads, history pages, transfers, audit, start-up and RSS with a million users."""
    loadgen = transfers.pick_loadgen(loadgen)
    mixed_loadgen = "python" if loadgen == "wrk" else loadgen  # wrk runs one workload
    if users < 2 or history < users:
        raise typer.BadParameter("--users must be at least 2 and --history at least --users")
    workdir = Path(tempfile.mkdtemp(prefix="vnode-bench-scale-"))
    cluster = TemporaryCluster(prefix="vnode-bench-scale-")
    service: ServeProcess | None = None
    figures: list[Figure] = []
    noise: list[float] = []
    wal: dict[str, dict[str, float]] = {}

    def load(
        workload: transfers.Workload | tuple[transfers.Workload, ...],
        label: str,
        n_users: int,
        base: int,
        max_amount: int,
        seconds: float,
        n_clients: int,
        mode: str = loadgen,
        wal_of: str | None = None,
    ) -> transfers.LoadResult:
        """One measured load (after --warmup); with `wal_of` (a DSN), the WAL per answer of the
        measured part is kept in `wal[label]`."""
        assert service is not None and service.pid is not None
        args = (service.url, service.admin_key, n_clients, 2)
        if warmup > 0:
            transfers.run_load(
                mode, *args, warmup, n_users, base, max_amount, workdir, {}, "warm-up", workload
            )
        roots = {"vnode serve": service.pid}
        if cluster.postmaster_pid is not None:
            roots["PostgreSQL"] = cluster.postmaster_pid
        before = common.wal_counters(wal_of) if wal_of else None
        lsn_before = common.wal_lsn(wal_of) if wal_of else ""
        result, meter = transfers.run_load(
            mode, *args, seconds, n_users, base, max_amount, workdir, roots, label, workload
        )
        if wal_of and before is not None:
            wal[label] = common.wal_per(before, common.wal_counters(wal_of), result.ok)
            relations = common.wal_by_relation(
                wal_of, lsn_before, common.wal_lsn(wal_of), result.ok
            )
            out.print(common.wal_table(relations, f"transfer ({label})"))
            out.print(
                f"  WAL per transfer: {wal[label]['bytes']:,.0f} bytes, "
                f"{wal[label]['fpi']:.2f} full-page images, {wal[label]['records']:.1f} records"
            )
        noise.append(meter.foreign_user / result.seconds)
        others = {s: n for s, n in result.statuses.items() if s != 200}
        out.print(
            f"{label}: {result.rate:,.0f}/s, p50 {result.p50_ms:.1f} ms, p99 "
            f"{result.p99_ms:.1f} ms"
            + (f", non-200 answers {others}" if others else "")
            + (f", errors {result.socket_errors}" if result.socket_errors else "")
            + f"; other programs {noise[-1]:.2f} cores"
        )
        return result

    try:
        with console.status("starting PostgreSQL"):
            server = cluster.start()
        if pg_set:
            common.apply_settings(server, pg_set)
        pg_version = common.server_version(server)
        out.print(f"machine: {common.machine_summary()}")
        out.print(
            f"PostgreSQL {pg_version}; load from {loadgen}"
            + (f"; {', '.join(pg_set)}" if pg_set else "")
        )

        # 1. The empty database: the reference figures.
        empty_dsn = common.recreate_database(server, "scale_empty")
        with console.status("vnode serve on the empty database"):
            service = common.start_serve(empty_dsn, workdir / "empty", 1, extra_env=SERVICE_ENV)
        transfers.fund_users(
            service.url, service.admin_key, empty_users, EMPTY_BASE, ledger_fill.FUND_MSAT
        )
        common.checkpoint(empty_dsn)
        empty_reads = load(
            BALANCE, "empty: balance reads", empty_users, EMPTY_BASE, 1, duration, clients
        )
        common.checkpoint(empty_dsn)
        empty_transfers = load(
            transfers.TRANSFER,
            "empty: transfers",
            empty_users,
            EMPTY_BASE,
            1000,
            duration,
            clients,
            wal_of=empty_dsn,
        )
        service.stop(signal.SIGINT, common.STOP_TIMEOUT_S)
        service = None
        common.psql(with_database(server, "postgres"), "-c", "DROP DATABASE scale_empty")

        # 2. The large database, by COPY.
        big_dsn = common.recreate_database(server, "scale_big")
        asyncio.run(_migrate(big_dsn))
        plan = ledger_fill.Plan(users, history, busy)
        started = time.monotonic()
        now = int(time.time())
        rows = ledger_fill.fill(big_dsn, plan, now, console.log)
        filled_s = time.monotonic() - started
        with console.status("VACUUM ANALYZE"):
            asyncio.run(ledger_fill.finish(big_dsn, plan, rows))
        built_s = time.monotonic() - started
        size = common.psql(
            big_dsn, "-tAc", "SELECT pg_size_pretty(pg_database_size(current_database()))"
        ).strip()
        out.print(
            f"built {users:,} users, {rows['ln_user_transactions']:,} history rows, "
            f"{rows['virtual_transactions']:,} journal rows, {rows['user_utxos']:,} coins, "
            f"{rows['outbox']:,} events in {built_s:.0f}s (COPY {filled_s:.0f}s, then VACUUM "
            f"ANALYZE); database {size}"
        )
        common.checkpoint(big_dsn)

        # 3. On it: migrations, start-up, reads, history, transfers, mixed load, audit.
        migrate_s = asyncio.run(_migrate_again(big_dsn))
        started = time.monotonic()
        with console.status("vnode serve on the large database"):
            service = common.start_serve(big_dsn, workdir / "big", 1, extra_env=SERVICE_ENV)
        startup_s = time.monotonic() - started
        out.print(
            f"functions applied again (an upgrade's migration) in {migrate_s:.2f}s; "
            f"vnode serve ready in {startup_s:.2f}s"
        )
        common.checkpoint(big_dsn)
        big_reads = load(BALANCE, "large: balance reads", users, 0, 1, duration, clients)
        last_row = rows["ln_user_transactions"]
        busy_pages = load(
            HISTORY,
            f"large: history pages, {min(busy, users)} busiest users",
            min(busy, users),
            0,
            last_row,
            duration,
            history_clients,
        )
        any_pages = load(
            HISTORY, "large: history pages, any user", users, 0, last_row, duration, history_clients
        )
        common.checkpoint(big_dsn)
        big_transfers = load(
            transfers.TRANSFER,
            "large: transfers",
            users,
            0,
            1000,
            duration,
            clients,
            wal_of=big_dsn,
        )
        rss_before = _rss_mib(service)
        mixed = load(
            (transfers.TRANSFER, BALANCE, HISTORY),
            f"large: mixed load, {minutes:g} min",
            users,
            0,
            1000,
            minutes * 60,
            clients,
            mixed_loadgen,
        )
        rss_after = _rss_mib(service)
        service.stop(signal.SIGINT, common.STOP_TIMEOUT_S)
        service = None
        audit_s, audit_clean = _audit(big_dsn, workdir)

        figures = [
            Figure("empty: balance reads/s", empty_reads.rate, ""),
            Figure("large: balance reads/s", big_reads.rate, ">= empty"),
            Figure("large/empty balance reads", _ratio(big_reads, empty_reads), ">= 1.0"),
            Figure("large: history page p99 ms, busiest users", busy_pages.p99_ms, "<= 10"),
            Figure("large: history page p99 ms, any user", any_pages.p99_ms, "<= 10"),
            Figure("large: history pages/s, busiest users", busy_pages.rate, ""),
            Figure("empty: transfers/s", empty_transfers.rate, ""),
            Figure("large: transfers/s", big_transfers.rate, ""),
            Figure("large: transfers p99 ms", big_transfers.p99_ms, ""),
            Figure("empty: WAL bytes/transfer", wal["empty: transfers"]["bytes"], ""),
            Figure("large: WAL bytes/transfer", wal["large: transfers"]["bytes"], ""),
            Figure("empty: full-page images/transfer", wal["empty: transfers"]["fpi"], ""),
            Figure("large: full-page images/transfer", wal["large: transfers"]["fpi"], ""),
            Figure("large: vnode audit s", audit_s, "<= 60"),
            Figure("large: audit clean (1 = yes)", 1.0 if audit_clean else 0.0, "1"),
            Figure("large: functions re-applied s", migrate_s, ""),
            Figure("large: vnode serve ready s", startup_s, "<= 10"),
            Figure("large: mixed load requests/s", mixed.rate, ""),
            Figure("large: RSS before mixed load MiB", rss_before, ""),
            Figure(f"large: RSS after {minutes:g} min mixed load MiB", rss_after, "<= 200"),
            Figure("build s", built_s, ""),
            Figure("other programs during the loads, cores (max)", max(noise), "~0"),
        ]
        table = Table(title=f"{users:,} users, {history:,} history rows vs an empty database")
        for column in ("figure", "value", "target"):
            table.add_column(column, justify="left" if column == "figure" else "right")
        for figure in figures:
            table.add_row(figure.name, f"{figure.value:,.2f}", figure.target)
        out.print(table)
        if not audit_clean:
            out.print("[red]vnode audit found differences on the large database[/]")
        common.finish(
            json_path,
            "scale",
            {figure.name: figure.value for figure in figures},
            ("transfers large/empty", _ratio(big_transfers, empty_transfers)),
            postgres=pg_version,
        )
        if not audit_clean:
            raise typer.Exit(1)
    finally:
        with console.status("stopping"):
            if service is not None:
                service.stop(signal.SIGINT, common.STOP_TIMEOUT_S)
            cluster.stop()
            shutil.rmtree(workdir, ignore_errors=True)


def _ratio(a: transfers.LoadResult, b: transfers.LoadResult) -> float:
    return a.rate / b.rate if b.rate else 0.0


async def _migrate(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()


async def _migrate_again(dsn: str) -> float:
    """Every functions file applied again (what an upgrade that changes them does); seconds."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DELETE FROM schema_functions")
        started = time.monotonic()
        await migrate(conn)
        return time.monotonic() - started
    finally:
        await conn.close()


def _rss_mib(service: ServeProcess) -> float:
    """RSS of the service process (with --workers 1 it serves the requests itself); its
    children (if any) are listed apart."""
    assert service.pid is not None
    own = rss_kib(service.pid) / 1024
    children = sum(rss_kib(pid) for pid in tree_pids(service.pid) if pid != service.pid) / 1024
    if children:
        out.print(f"  (its child processes: {children:.0f} MiB more)")
    return own


def _audit(dsn: str, workdir: Path) -> tuple[float, bool]:
    """`vnode audit --no-node` on the database, as an operator runs it: seconds and verdict."""
    started = time.monotonic()
    clean = common.audit(dsn, workdir, out)
    return time.monotonic() - started, clean


if __name__ == "__main__":
    typer.run(main)
