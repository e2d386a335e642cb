"""Balance reads per second through the HTTP service, against pgbench reading a balance on the
same cluster.

    python bench/balances.py                         # own cluster + `vnode serve --workers 1`
    python bench/balances.py --endpoint balances     # POST /virtual_balances (every asset)
    python bench/balances.py --url http://host:3001 --dsn postgresql://... --admin-key KEY

By default it starts an embedded PostgreSQL cluster in a temporary directory and `vnode serve`
against it, funds --users users through POST /admin/credit (so that each has a balance row), and
runs --clients concurrent keep-alive connections for --duration seconds, each looping
POST /virtual_assetbalance {"user_id": <random funded user>, "asset_id": "BTC"} (or
POST /virtual_balances {"user_id": ...} with --endpoint balances). Only 200 answers count as
reads. The load comes from the same generators as bench/transfers.py: `wrk` when installed, else
a raw-asyncio Python process.

The reference, in the same run on the same cluster: pgbench with the same clients and seconds on
a database `bench_ref` loaded with ../shared/bench/transfer_schema.sql (100,000 balances), each
transaction `SELECT balance FROM balances WHERE user_id = :id` for a random id. Printed last:

    ratio vnode/pgbench: 0.NN

With --url the service is not started; --dsn must name its PostgreSQL cluster (any database; the
bench drops and recreates `bench_ref` there) and --admin-key an admin key.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
import transfers

from harness import options as opt

console = Console(stderr=True)
out = Console(width=110)
FUND_MSAT = 100_000_000
READ_SCRIPT = """\\set id random(1, 100000)
SELECT balance FROM balances WHERE user_id = :id;
"""
# The body names one user: `b` and the amount of the transfer workload are unused.
WORKLOADS = {
    "assetbalance": transfers.Workload(
        "/virtual_assetbalance",
        'string.format(\'{"user_id":%d,"asset_id":"BTC"}\', base + a)',
        '{"user_id":%(a)d,"asset_id":"BTC"}',
    ),
    "balances": transfers.Workload(
        "/virtual_balances", "string.format('{\"user_id\":%d}', base + a)", '{"user_id":%(a)d}'
    ),
}


def main(
    url: opt.ServiceUrl = None,
    dsn: opt.ServiceDsn = None,
    admin_key: opt.AdminKey = None,
    endpoint: Annotated[
        str, typer.Option(help="assetbalance (one asset) or balances (all)")
    ] = "assetbalance",
    workers: opt.Workers = 1,
    clients: opt.Clients = 32,
    duration: opt.Seconds = 20,
    warmup: opt.Warmup = 3,
    users: opt.Users = 1000,
    user_base: opt.UserBase = 7_000_000_000,
    loadgen: opt.Loadgen = "auto",
    loadgen_threads: opt.LoadgenThreads = 2,
    pgbench_threads: opt.PgbenchThreads = 2,
    shared_dir: Annotated[
        Path, typer.Option(help="Directory of transfer_schema.sql")
    ] = common.SHARED_BENCH_DIR,
    json_path: opt.JsonOut = None,
) -> None:
    """Balance reads/s through vnode vs pgbench reading a balance on the same cluster."""
    schema = shared_dir / "transfer_schema.sql"
    if not schema.exists():
        raise typer.BadParameter(f"{schema} not found (see --shared-dir)")
    if endpoint not in WORKLOADS:
        raise typer.BadParameter("--endpoint is assetbalance or balances")
    loadgen = transfers.pick_loadgen(loadgen)
    common.Target.check_options(url, dsn, admin_key, users)

    workdir = Path(tempfile.mkdtemp(prefix="vnode-bench-balances-"))
    target: common.Target | None = None
    try:
        with console.status("starting PostgreSQL and vnode serve"):
            target = common.Target.start(url, dsn, admin_key, workdir, workers)
        url, dsn, admin_key, cpu_roots = (
            target.url,
            target.dsn,
            target.admin_key,
            target.cpu_roots(),
        )
        pg_version = common.server_version(dsn)
        out.print(f"machine: {common.machine_summary()}")
        out.print(
            f"PostgreSQL {pg_version}; vnode at {url}"
            + (f" (--workers {workers})" if target.running else "")
            + f"; POST {WORKLOADS[endpoint].path}; load from {loadgen}"
        )
        with console.status(f"funding {users} users"):
            started = time.monotonic()
            transfers.fund_users(url, admin_key, users, user_base, FUND_MSAT)
        out.print(f"funded {users} users in {time.monotonic() - started:.1f}s")

        load_args = (url, admin_key, clients, loadgen_threads)
        workload = WORKLOADS[endpoint]
        if warmup > 0:
            transfers.run_load(
                loadgen, *load_args, warmup, users, user_base, 1, workdir, {}, "warm-up", workload
            )
        common.checkpoint(dsn)
        result, meter = transfers.run_load(
            loadgen,
            *load_args,
            duration,
            users,
            user_base,
            1,
            workdir,
            cpu_roots,
            f"vnode, {clients} clients",
            workload,
        )

        with console.status("loading transfer_schema.sql into bench_ref"):
            ref_dsn = common.recreate_database(dsn, "bench_ref")
            common.psql(ref_dsn, "-f", str(schema))
            common.checkpoint(dsn)
        script = workdir / "read_balance.sql"
        script.write_text(READ_SCRIPT)
        reference = transfers.run_pgbench(
            ref_dsn,
            script,
            clients,
            pgbench_threads,
            duration,
            "pgbench SELECT balance",
            workdir,
            cpu_roots,
        )[0]

        _report(result, reference, clients, duration, workload.path)
        ratio = result.rate / reference.tps if reference.tps else 0.0
        figures = {
            "vnode reads/s": result.rate,
            "vnode p50 ms": result.p50_ms,
            "vnode p99 ms": result.p99_ms,
            "pgbench SELECT balance tps": reference.tps,
            "other programs during vnode run, cores": meter.foreign_user / result.seconds,
        }
        if target.running is not None:  # a service of its own: its database is the bench's
            figures["audit clean (1 = yes)"] = float(common.audit(dsn, workdir, out))
        common.finish(
            json_path,
            "balances",
            figures,
            ("vnode/pgbench", ratio),
            postgres=pg_version,
        )
    finally:
        with console.status("stopping"):
            if target is not None:
                target.stop()
            shutil.rmtree(workdir, ignore_errors=True)


def _report(
    result: transfers.LoadResult,
    reference: common.PgbenchResult,
    clients: int,
    duration: int,
    path: str,
) -> None:
    table = transfers.load_table(result, f"POST {path}/s", clients, duration)
    table.add_row("pgbench SELECT balance tps", f"{reference.tps:,.0f}")
    table.add_row("pgbench latency avg", f"{reference.latency_ms:.2f} ms")
    out.print(table)


if __name__ == "__main__":
    typer.run(main)
