"""Transfers per second and p99 against the number of clients (1, 2, 4, ... 256), through the
service and with pgbench `transfer.sql` on the same cluster, and a plot of both (issue 13).

    python bench/sweep.py                         # about 6 minutes: 9 client counts, 2 runs each
    python bench/sweep.py --clients 1,8,32,128 --duration 5 --svg /tmp/sweep.svg

Starts a throwaway cluster and `vnode serve` (--workers, 1) as bench/transfers.py does, funds
--users (1,000) through POST /admin/credit and loads `../shared/bench/transfer_schema.sql` into
`bench_ref`. Then for each client count: the service under the transfer load of transfers.py
(--warmup s not counted, a CHECKPOINT, --duration s), then pgbench `transfer.sql` with as many
clients for as long. Writes the plot (--svg, docs/images/transfers-clients.svg: throughput on
the left, latency on the right, clients on a log-2 axis), prints a table, the knee (the fewest
clients that reach 90% of the service's best rate), and last
`ratio vnode best/pgbench best: 0.NN`.

pgbench's latency is its average (it has no p99 without a per-transaction log); the service's
is the p99 the load generator measured.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
import svg_chart
import transfers

from harness import options as opt

console = Console(stderr=True)
out = Console(width=110)
KNEE = 0.9  # the knee: the fewest clients reaching this share of the best rate
DEFAULT_SVG = Path(__file__).resolve().parents[1] / "docs" / "images" / "transfers-clients.svg"


def main(
    clients: Annotated[
        str, typer.Option(help="Comma-separated client counts")
    ] = "1,2,4,8,16,32,64,128,256",
    workers: opt.Workers = 1,
    duration: opt.Seconds = 10,
    warmup: opt.Warmup = 2,
    users: opt.Users = 1000,
    user_base: opt.UserBase = 7_000_000_000,
    loadgen: opt.Loadgen = "auto",
    shared_dir: Annotated[
        Path, typer.Option(help="Directory of transfer.sql and transfer_schema.sql")
    ] = common.SHARED_BENCH_DIR,
    svg: Annotated[Path, typer.Option(help="Where to write the plot")] = DEFAULT_SVG,
    json_path: opt.JsonOut = None,
) -> None:
    """Transfers/s and latency against clients, vnode and pgbench, with a plot."""
    counts = sorted({int(c) for c in clients.split(",") if c.strip()})
    if not counts or counts[0] < 1:
        raise typer.BadParameter("--clients needs positive counts")
    script, schema = shared_dir / "transfer.sql", shared_dir / "transfer_schema.sql"
    for path in (script, schema):
        if not path.exists():
            raise typer.BadParameter(f"{path} not found (see --shared-dir)")
    loadgen = transfers.pick_loadgen(loadgen)
    workdir = Path(tempfile.mkdtemp(prefix="vnode-bench-sweep-"))
    running: common.RunningService | None = None
    try:
        with console.status("starting PostgreSQL and vnode serve"):
            running = common.RunningService.start(workdir, workers)
        pg_version = common.server_version(running.dsn)
        out.print(f"machine: {common.machine_summary()}")
        out.print(f"PostgreSQL {pg_version}; --workers {workers}; load from {loadgen}")
        transfers.fund_users(running.url, running.admin_key, users, user_base, transfers.FUND_MSAT)
        ref_dsn = common.recreate_database(running.dsn, "bench_ref")
        common.psql(ref_dsn, "-f", str(schema))
        roots = running.cpu_roots()
        rows: list[tuple[int, transfers.LoadResult, common.PgbenchResult, float]] = []
        for n in counts:
            args = (running.url, running.admin_key, n, min(n, 2))
            if warmup > 0:
                transfers.run_load(
                    loadgen, *args, warmup, users, user_base, 1000, workdir, {}, "warm-up"
                )
            common.checkpoint(running.dsn)
            result, meter = transfers.run_load(
                loadgen,
                *args,
                duration,
                users,
                user_base,
                1000,
                workdir,
                roots,
                f"vnode, {n} clients",
            )
            common.checkpoint(running.dsn)
            reference, _ = transfers.run_pgbench(
                ref_dsn, script, n, 2, duration, f"pgbench, {n} clients", workdir, roots
            )
            noise = meter.foreign_user / result.seconds
            rows.append((n, result, reference, noise))
            out.print(
                f"{n} clients: vnode {result.rate:,.0f}/s p99 {result.p99_ms:.1f} ms; "
                f"pgbench {reference.tps:,.0f} tps avg {reference.latency_ms:.1f} ms; "
                f"other programs {noise:.2f} cores"
            )
        _report(rows, svg)
        best = max(r.rate for _, r, _, _ in rows)
        best_ref = max(p.tps for _, _, p, _ in rows)
        knee = next(n for n, r, _, _ in rows if r.rate >= KNEE * best)
        out.print(
            f"knee: {knee} clients reach {KNEE:.0%} of the best rate ({best:,.0f}/s); plot "
            f"written to {svg}"
        )
        figures: dict[str, float] = {"knee, clients": knee}
        for n, result, reference, _ in rows:
            figures[f"{n} clients: vnode transfers/s"] = result.rate
            figures[f"{n} clients: vnode p99 ms"] = result.p99_ms
            figures[f"{n} clients: pgbench tps"] = reference.tps
        figures["other programs during vnode runs, cores (max)"] = max(r[3] for r in rows)
        figures["audit clean (1 = yes)"] = float(common.audit(running.dsn, workdir, out))
        common.finish(
            json_path,
            "sweep",
            figures,
            ("vnode best/pgbench best", best / best_ref if best_ref else 0.0),
            postgres=pg_version,
        )
    finally:
        with console.status("stopping"):
            if running is not None:
                running.stop()
            shutil.rmtree(workdir, ignore_errors=True)


def _report(
    rows: list[tuple[int, transfers.LoadResult, common.PgbenchResult, float]], svg: Path
) -> None:
    table = Table(title="transfers against clients")
    for column in (
        "clients",
        "vnode/s",
        "vnode p50 ms",
        "vnode p99 ms",
        "pgbench tps",
        "pgbench avg ms",
        "other programs, cores",
    ):
        table.add_column(column, justify="right")
    for n, result, reference, noise in rows:
        table.add_row(
            str(n),
            f"{result.rate:,.0f}",
            f"{result.p50_ms:.1f}",
            f"{result.p99_ms:.1f}",
            f"{reference.tps:,.0f}",
            f"{reference.latency_ms:.1f}",
            f"{noise:.2f}",
        )
    out.print(table)
    rates = svg_chart.chart(
        "Transfers per second",
        "transfers/s",
        [
            svg_chart.Series("vnode (HTTP)", [(n, r.rate) for n, r, _, _ in rows]),
            svg_chart.Series("pgbench transfer.sql", [(n, p.tps) for n, _, p, _ in rows]),
        ],
        "clients",
    )
    latency = svg_chart.chart(
        "Latency",
        "ms",
        [
            svg_chart.Series("vnode p99", [(n, r.p99_ms) for n, r, _, _ in rows]),
            svg_chart.Series("vnode p50", [(n, r.p50_ms) for n, r, _, _ in rows]),
            svg_chart.Series("pgbench average", [(n, p.latency_ms) for n, _, p, _ in rows]),
        ],
        "clients",
        dx=svg_chart.WIDTH,
    )
    svg.parent.mkdir(parents=True, exist_ok=True)
    svg.write_text(
        svg_chart.document(
            [rates, latency],
            f"bench/sweep.py on {common.machine_summary()}",
        )
    )


if __name__ == "__main__":
    typer.run(main)
