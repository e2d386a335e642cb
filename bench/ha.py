"""What synchronous replication and HAProxy cost a transfer: pgbench with the shared transfer
workload (../shared/bench/transfer.sql, the same as bench/transfers.py's reference) on the
3-node Patroni cluster of harness/ha.py (synchronous_mode_strict), three ways, each for
--duration seconds with --clients connections:

- straight to the primary with `synchronous_commit = local`: a commit waits for the primary's
  own disk only (the reference: one machine's durability);
- straight to the primary as the cluster is set (`synchronous_commit = on`, one synchronous
  standby): a commit also waits for the standby to flush it;
- through HAProxy's write port, synchronous: what vnode gets with one endpoint.

    .venv/bin/python bench/ha.py --duration 20 --clients 16

It prints last `ratio synchronous/local: 0.NN` (transactions per second, in the same run).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table

from harness import options as opt
from harness.ha import HACluster
from vnode.db.dsn import with_database

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

DATABASE = "bench_ref"
LOCAL = "-c synchronous_commit=local"


def _with_options(dsn: str, options: str) -> str:
    return f"{dsn}?options={quote(options)}"


def _roots(cluster: HACluster) -> dict[str, int]:
    """The cluster's process trees, for the CPU meter (the postmasters run in sessions of
    their own, apart from their Patroni)."""
    roots = {}
    for node in cluster.nodes:
        if node.process.pid is not None:
            roots[f"patroni {node.name}"] = node.process.pid
        postmaster = node.postmaster_pid()
        if postmaster is not None:
            roots[f"postgres {node.name}"] = postmaster
    for name, process in (("etcd", cluster.etcd), ("haproxy", cluster.haproxy)):
        if process.pid is not None:
            roots[name] = process.pid
    return roots


def _pgbench(
    dsn: str, script: Path, clients: int, seconds: int, label: str, roots: dict[str, int]
) -> tuple[common.PgbenchResult, float]:
    """One run; its result and the other programs' CPU meanwhile, in cores."""
    command = common.pgbench_command(dsn, script, clients, 2, seconds)
    meter = common.CpuMeter(roots, reaped_name="pgbench")
    meter.start()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    common.progress_wait(label, seconds, lambda: proc.poll() is not None)
    output = proc.communicate()[0]
    meter.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench failed ({proc.returncode}):\n{output}")
    return common.parse_pgbench(output), meter.foreign_user / seconds


def main(
    clients: opt.Clients = 16,
    duration: opt.Seconds = 20,
    json_path: opt.JsonOut = None,
    shared_dir: Annotated[
        Path, typer.Option(help="Where transfer.sql and transfer_schema.sql are")
    ] = common.SHARED_BENCH_DIR,
) -> None:
    """pgbench transfers on the HA cluster: local commit, synchronous, through HAProxy."""
    console = Console()
    with console.status("starting etcd, three Patroni nodes and HAProxy"):
        cluster = HACluster()
        cluster.start()
    try:
        leader = cluster.leader()
        assert leader is not None
        direct = common.recreate_database(leader.dsn(), DATABASE)
        common.psql(direct, "-f", str(shared_dir / "transfer_schema.sql"))
        proxied = with_database(cluster.write_dsn(), DATABASE)
        postgres = common.server_version(direct)
        script = shared_dir / "transfer.sql"
        runs = {
            "direct, synchronous_commit=local": _with_options(direct, LOCAL),
            "direct, synchronous (1 standby)": direct,
            "HAProxy, synchronous (1 standby)": proxied,
        }
        results: dict[str, tuple[common.PgbenchResult, float]] = {}
        for label, dsn in runs.items():
            common.checkpoint(direct)
            results[label] = _pgbench(dsn, script, clients, duration, label, _roots(cluster))
    finally:
        cluster.stop()
    table = Table(
        title=f"pgbench transfer.sql, {clients} clients, {duration} s each; PG {postgres}"
    )
    for column in ("run", "tps", "latency ms", "failed", "other programs, cores"):
        table.add_column(column, justify="left" if column == "run" else "right")
    figures: dict[str, float] = {}
    for label, (result, foreign) in results.items():
        table.add_row(
            label,
            f"{result.tps:,.0f}",
            f"{result.latency_ms:.2f}",
            str(result.failed),
            f"{foreign:.2f}",
        )
        figures[f"{label} tps"] = result.tps
        figures[f"{label} latency ms"] = result.latency_ms
        figures[f"other programs during {label}, cores"] = foreign
    console.print(table)
    console.print(common.machine_summary(), highlight=False)
    local, sync, proxy = (results[label][0].tps for label in runs)
    console.print(f"HAProxy/direct (both synchronous): {proxy / sync:.2f}", highlight=False)
    common.finish(json_path, "ha", figures, ("synchronous/local", sync / local), postgres=postgres)


if __name__ == "__main__":
    typer.run(main)
