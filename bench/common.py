"""Helpers shared by the benchmarks in bench/: a throwaway cluster with `vnode serve` on it (from
the harness package, harness/, which the tests and the proving ground use too), pgbench runs,
the machine's description, the `--json` figures and a py-spy profile summary.

Everything here is Linux-only (it reads /proc) and meant for a benchmark run, not for the service.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from harness.postgres import TemporaryCluster
from harness.processes import VNODE as VNODE_COMMAND
from harness.processes import clean_env
from harness.serve import ServeProcess
from harness.usage import Cpu as Cpu
from harness.usage import CpuMeter as CpuMeter
from vnode.db.dsn import with_database
from vnode.db.embedded import bin_dir
from vnode.loopback import free_port_pair

# The repository lives beside `shared/` (here /work/main and /work/shared; CI clones the same way).
SHARED_BENCH_DIR = Path(__file__).resolve().parents[2] / "shared" / "bench"
STOP_TIMEOUT_S = 20.0  # SIGINT, then SIGKILL of the service's process group


# --------------------------------------------------------------------------------------------
# Machine description (for docs/PERFORMANCE.md)


def machine_facts() -> dict[str, str | int | float]:
    """CPUs, CPU model, memory and Python version (bench/run.py writes them into
    docs/PERFORMANCE.md)."""
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            cpu,
        )
    return {
        "cpus": os.cpu_count() or 0,
        "cpu": cpu,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": sys.version.split()[0],
    }


def machine_summary() -> str:
    facts = machine_facts()
    return (
        f"{facts['cpus']} CPUs ({facts['cpu']}), {facts['memory_gib']} GiB RAM, "
        f"Python {facts['python']}"
    )


def write_figures(
    path: Path | None,
    benchmark: str,
    figures: dict[str, float],
    ratio: tuple[str, float],
    *,
    postgres: str,
) -> None:
    """A benchmark's figures as JSON, for bench/run.py (nothing when `path` is None).

    `ratio` is (what against what, value): the comparable figure each benchmark prints last.
    """
    if path is None:
        return
    # JSON has no NaN: a figure a run could not measure (no sample) is null.
    measured = {name: None if math.isnan(value) else value for name, value in figures.items()}
    document = {
        "benchmark": benchmark,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "postgres": postgres,
        "figures": measured,
        "ratio": {"name": ratio[0], "value": ratio[1]},
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def finish(
    path: Path | None,
    benchmark: str,
    figures: dict[str, float],
    ratio: tuple[str, float],
    *,
    postgres: str,
) -> None:
    """write_figures, then the comparable figure as the last line: `ratio NAME: 0.NN`."""
    write_figures(path, benchmark, figures, ratio, postgres=postgres)
    print(f"ratio {ratio[0]}: {ratio[1]:.2f}", flush=True)


def audit(dsn: str, workdir: Path, out: Console) -> bool:
    """`vnode audit --no-node` on the bench's database after its load (issue 13: the audit is
    clean after every benchmark); prints its verdict, and its output when it is not clean."""
    done = subprocess.run(
        [VNODE_COMMAND, "audit", "--no-node", "--data-dir", str(workdir / "audit")],
        env=clean_env({"VNODE_DATABASE_URL": dsn}),
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    verdict = next((line for line in reversed(lines) if "audit" in line), "no verdict printed")
    colour = "green" if done.returncode == 0 else "red"
    out.print(f"vnode audit --no-node: [{colour}]{verdict.strip()}[/] (exit {done.returncode})")
    if done.returncode != 0:
        out.print(done.stdout[-3000:] + done.stderr[-2000:])
    return done.returncode == 0


# --------------------------------------------------------------------------------------------
# PostgreSQL


def psql(dsn: str, *args: str) -> str:
    """Run the wheel's psql against `dsn`; raises with psql's stderr on any error."""
    command = [str(bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"psql {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def recreate_database(dsn: str, name: str) -> str:
    """Drop and create database `name` on the server of `dsn`; returns its DSN."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"bad database name {name!r}")
    admin = with_database(dsn, "postgres")
    psql(admin, "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql(admin, "-c", f"CREATE DATABASE {name}")
    return with_database(dsn, name)


def server_version(dsn: str) -> str:
    return psql(dsn, "-tAc", "SHOW server_version").strip()


def checkpoint(dsn: str) -> None:
    """Flush dirty buffers so that one measurement does not pay for the previous one's writes."""
    psql(dsn, "-c", "CHECKPOINT")


def wal_counters(dsn: str) -> dict[str, float]:
    """The cluster's WAL and checkpoint counters (pg_stat_wal, pg_stat_checkpointer), for the
    WAL written per transaction during a run: records, full-page images, bytes, checkpoints."""
    line = psql(
        dsn,
        "-tAc",
        "SELECT w.wal_records, w.wal_fpi, w.wal_bytes, c.num_timed + c.num_requested "
        "FROM pg_stat_wal w, pg_stat_checkpointer c",
    ).strip()
    records, fpi, wal_bytes, checkpoints = (float(v) for v in line.split("|"))
    return {"records": records, "fpi": fpi, "bytes": wal_bytes, "checkpoints": checkpoints}


def wal_per(
    before: dict[str, float], after: dict[str, float], transactions: int
) -> dict[str, float]:
    """WAL per transaction between two wal_counters, and the checkpoints begun meanwhile."""
    n = max(transactions, 1)
    return {
        "records": (after["records"] - before["records"]) / n,
        "fpi": (after["fpi"] - before["fpi"]) / n,
        "bytes": (after["bytes"] - before["bytes"]) / n,
        "checkpoints": after["checkpoints"] - before["checkpoints"],
    }


def wal_lsn(dsn: str) -> str:
    """The cluster's current WAL position, the start or end of a wal_by_relation window."""
    return psql(dsn, "-tAc", "SELECT pg_current_wal_lsn()").strip()


@dataclass(frozen=True)
class RelationWal:
    """What one relation's pages took of the WAL written in a window, per transaction: block
    references (a row or index entry written, a page split...), of them full-page images, and
    bytes (block data and images; record headers are not counted)."""

    relation: str
    blocks: float
    fpi: float
    bytes: float


def wal_by_relation(dsn: str, start: str, end: str, transactions: int) -> list[RelationWal]:
    """The WAL between two wal_lsn positions by relation of `dsn`'s database (pg_walinspect;
    created here: for a throwaway cluster only), most bytes first; relations of other
    databases and of the cluster as one line each. Nothing when the WAL is gone."""
    n = max(transactions, 1)
    if not all(re.fullmatch(r"[0-9A-F]+/[0-9A-F]+", lsn) for lsn in (start, end)):
        raise ValueError(f"not WAL positions: {start!r}, {end!r}")
    query = " ".join(
        (
            "SELECT coalesce(c.relname, CASE WHEN b.reldatabase = d.oid",
            "THEN b.relfilenode::text ELSE '(other databases, cluster)' END), count(*),",
            "count(*) FILTER (WHERE b.block_fpi_length > 0),",
            "sum(b.block_data_length + coalesce(b.block_fpi_length, 0))",
            f"FROM pg_get_wal_block_info('{start}', '{end}') b",
            "CROSS JOIN (SELECT oid FROM pg_database WHERE datname = current_database()) d",
            "LEFT JOIN pg_class c ON b.reldatabase = d.oid AND c.relfilenode = b.relfilenode",
            "GROUP BY 1 ORDER BY 4 DESC",
        )
    )
    try:
        psql(dsn, "-c", "CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        text = psql(dsn, "-tA", "-F", "|", "-c", query)
    except RuntimeError:
        return []
    rows = []
    for line in text.splitlines():
        name, blocks, fpi, size = line.rsplit("|", 3)
        rows.append(RelationWal(name, int(blocks) / n, int(fpi) / n, float(size) / n))
    return rows


def wal_table(rows: list[RelationWal], what: str, limit: int = 12) -> Table:
    """wal_by_relation's rows as a table (the `limit` largest)."""
    table = Table(title=f"WAL per {what} by relation (pg_walinspect)")
    for column in ("relation", "block writes", "full-page images", "bytes"):
        table.add_column(column, justify="left" if column == "relation" else "right")
    for row in rows[:limit]:
        table.add_row(row.relation, f"{row.blocks:.2f}", f"{row.fpi:.3f}", f"{row.bytes:,.0f}")
    return table


def apply_settings(dsn: str, settings: list[str]) -> None:
    """`NAME=VALUE` server settings (ALTER SYSTEM, then a reload) on a throwaway cluster."""
    for setting in settings:
        name, sep, value = setting.partition("=")
        if not sep or not re.fullmatch(r"[a-z_.]+", name):
            raise ValueError(f"not a NAME=VALUE setting: {setting!r}")
        psql(dsn, "-c", f"ALTER SYSTEM SET {name} = '{value.replace(chr(39), '')}'")
    psql(dsn, "-c", "SELECT pg_reload_conf()")


@dataclass
class PgbenchResult:
    tps: float
    latency_ms: float
    transactions: int
    failed: int
    output: str


_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.M)
_LATENCY = re.compile(r"^latency average = ([0-9.]+) ms", re.M)
_PROCESSED = re.compile(r"^number of transactions actually processed: (\d+)", re.M)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.M)


def parse_pgbench(output: str) -> PgbenchResult:
    tps = _TPS.search(output)
    if tps is None:
        raise RuntimeError(f"no tps in pgbench output:\n{output}")
    latency = _LATENCY.search(output)
    processed = _PROCESSED.search(output)
    failed = _FAILED.search(output)
    return PgbenchResult(
        tps=float(tps.group(1)),
        latency_ms=float(latency.group(1)) if latency else float("nan"),
        transactions=int(processed.group(1)) if processed else 0,
        failed=int(failed.group(1)) if failed else 0,
        output=output,
    )


def pgbench_command(dsn: str, script: Path, clients: int, threads: int, seconds: int) -> list[str]:
    return [
        str(bin_dir() / "pgbench"),
        "-n",
        "-M",
        "prepared",
        "-c",
        str(clients),
        "-j",
        str(min(threads, clients)),
        "-T",
        str(seconds),
        "--max-tries=10",
        "-f",
        str(script),
        dsn,
    ]


# --------------------------------------------------------------------------------------------
# vnode serve as a process


def serve_process(
    database_url: str,
    data_dir: Path,
    workers: int,
    *,
    access_log: bool = False,
    extra_env: dict[str, str] | None = None,
) -> ServeProcess:
    """`vnode serve` against an existing database, on a free port, in its own process group
    (not started)."""
    port = free_port_pair()
    env = {
        # Workers (--workers > 1) read their settings from the environment only: without
        # this they would look for the simulated node beside the default port.
        "VNODE_PORT": str(port),
        "VNODE_ACCESS_LOG": "true" if access_log else "false",
        **(extra_env or {}),
    }
    return ServeProcess(
        data_dir,
        database_url,
        workers=workers,
        env=env,
        port=port,
        admin_key="bench-admin-" + secrets.token_urlsafe(24),
    )


def start_serve(
    database_url: str,
    data_dir: Path,
    workers: int,
    *,
    access_log: bool = False,
    extra_env: dict[str, str] | None = None,
) -> ServeProcess:
    """serve_process, started and ready (GET /readyz answers 200)."""
    service = serve_process(
        database_url, data_dir, workers, access_log=access_log, extra_env=extra_env
    )
    service.start()
    try:
        service.wait_ready_blocking(60.0)
    except BaseException:
        service.stop(signal.SIGINT, STOP_TIMEOUT_S)
        raise
    return service


@dataclass
class RunningService:
    """A throwaway cluster with `vnode serve` on it, as most benchmarks start them."""

    cluster: TemporaryCluster
    service: ServeProcess
    dsn: str

    @classmethod
    def start(
        cls,
        workdir: Path,
        workers: int,
        *,
        access_log: bool = False,
        extra_env: dict[str, str] | None = None,
        server_settings: tuple[str, ...] = (),
    ) -> RunningService:
        """`server_settings` (NAME=VALUE, e.g. a shared_preload_libraries) are set with ALTER
        SYSTEM and the cluster restarted before the service starts."""
        cluster = TemporaryCluster(prefix="vnode-bench-")
        try:
            dsn = cluster.start()
            if server_settings:
                apply_settings(dsn, list(server_settings))
                cluster.pg.stop()
                dsn = cluster.start()
            service = start_serve(
                dsn, workdir / "data", workers, access_log=access_log, extra_env=extra_env
            )
        except BaseException:
            cluster.stop()
            raise
        return cls(cluster, service, dsn)

    @property
    def url(self) -> str:
        return self.service.url

    @property
    def admin_key(self) -> str:
        return self.service.admin_key

    def cpu_roots(self) -> dict[str, int]:
        """Process trees for CpuMeter: the service and PostgreSQL (postmaster and backends),
        named as the benchmarks' CPU tables name them."""
        assert self.service.pid is not None
        roots = {"vnode serve": self.service.pid}
        if self.cluster.postmaster_pid is not None:
            roots["PostgreSQL"] = self.cluster.postmaster_pid
        return roots

    def stop(self) -> None:
        try:
            self.service.stop(signal.SIGINT, STOP_TIMEOUT_S)
        finally:
            self.cluster.stop()


@dataclass
class Target:
    """The service a benchmark measures: one started here (`running`), or one already running
    (--url, --dsn, --admin-key)."""

    url: str
    dsn: str
    admin_key: str
    running: RunningService | None = None

    @classmethod
    def check_options(
        cls, url: str | None, dsn: str | None, admin_key: str | None, users: int
    ) -> None:
        if url is not None and (dsn is None or admin_key is None):
            raise typer.BadParameter("--url needs --dsn (for pgbench) and --admin-key")
        if users < 2:
            raise typer.BadParameter("--users must be at least 2")

    @classmethod
    def start(
        cls,
        url: str | None,
        dsn: str | None,
        admin_key: str | None,
        workdir: Path,
        workers: int,
        *,
        access_log: bool = False,
        extra_env: dict[str, str] | None = None,
    ) -> Target:
        """The running service, or a throwaway cluster and `vnode serve` started here (with
        `extra_env` added to its environment)."""
        if url is None:
            running = RunningService.start(
                workdir, workers, access_log=access_log, extra_env=extra_env
            )
            return cls(running.url, running.dsn, running.admin_key, running)
        assert dsn is not None and admin_key is not None  # check_options
        return cls(url, dsn, admin_key)

    @property
    def service(self) -> ServeProcess | None:
        return None if self.running is None else self.running.service

    def cpu_roots(self) -> dict[str, int]:
        """RunningService.cpu_roots, or nothing for a service not started here."""
        return {} if self.running is None else self.running.cpu_roots()

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()


# --------------------------------------------------------------------------------------------
# A load generator in a process of its own


def progress_wait(what: str, seconds: float, done: Callable[[], bool]) -> None:
    """A progress bar (on stderr) over `seconds` until `done()`."""
    with Progress(
        TextColumn("  {task.description}"),
        BarColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task(what, total=seconds)
        started = time.monotonic()
        while not done():
            progress.update(task, completed=min(seconds, time.monotonic() - started))
            time.sleep(0.2)


def run_load_process(
    main: Callable[..., None],
    args: tuple[Any, ...],
    label: str,
    seconds: float,
    cpu_roots: dict[str, int],
    client: str,
    result_timeout_s: float = 30.0,
) -> tuple[dict[str, Any], CpuMeter]:
    """`main(*args, ready, go, queue)` in a spawned process: it sets `ready` once it has
    started, runs the load when `go` is set, and puts its result on `queue`, with its own CPU
    during the load as `cpu_user` and `cpu_system`. The meter runs from `go` to the result;
    the client's CPU is named `client`."""
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[dict[str, Any]] = context.Queue()
    ready, go = context.Event(), context.Event()
    worker = context.Process(target=main, args=(*args, ready, go, queue))
    worker.start()
    if not ready.wait(60):
        worker.kill()
        raise RuntimeError(f"the load generator ({label}) did not start")
    meter = CpuMeter(cpu_roots, reaped_name=client)
    meter.start()
    go.set()
    progress_wait(label, seconds, lambda: not queue.empty() or not worker.is_alive())
    raw = queue.get(timeout=result_timeout_s)
    meter.stop()
    worker.join(10)
    # The generator's own CPU during the load (its start-up and imports are left out).
    meter.used[client] = Cpu(raw["cpu_user"], raw["cpu_system"])
    return raw, meter


# --------------------------------------------------------------------------------------------
# py-spy profiles (collapsed stacks from `py-spy record --format raw`)

# Leaf-first: a sample belongs to the first rule matching one of its frames, innermost first
# (a frame is "function (file:line)" for Python, "symbol (library)" or "symbol (file.c:line)" for
# native code with --native).
PROFILE_RULES: list[tuple[str, tuple[str, ...]]] = [
    ("Python garbage collector", ("gc_collect_main",)),
    ("asyncpg (driver, protocol, pool)", ("asyncpg/", "(protocol.c", "(pgproto.c", "(record.c")),
    (
        "pydantic validation (incl. vnode validators)",
        ("pydantic", "vnode/api/schemas.py", "vnode/domain/"),
    ),
    ("auth (API key check, HTTPBearer)", ("vnode/apikeys.py", "fastapi/security/")),
    ("metrics (prometheus_client)", ("prometheus_client/",)),
    ("FastAPI routing, dependencies, body parsing", ("fastapi/",)),
    ("Starlette (routing, Request, Response)", ("starlette/",)),
    ("uvicorn HTTP protocol (httptools)", ("uvicorn/", "httptools", "(parser.c")),
    ("vnode middleware", ("vnode/api/middleware.py", "vnode/logs.py")),
    ("vnode handler, ledger call, signer", ("vnode/",)),
    ("logging", ("logging/",)),
    ("anyio thread pool", ("anyio/", "threading.py", "queue.py")),
    ("asyncio / uvloop event loop", ("asyncio/", "uvloop", "(loop.c", "(_asynciomodule.c")),
]
# Innermost native frames that mean "in a system call": the thread may be waiting for a CPU
# (preempted after waking another process) rather than running; and frames that mean "blocked
# on a lock or the GIL" (idle thread-pool threads, GIL hand-offs). Such samples are counted apart
# and left out of the shares. Only visible with `py-spy record --native`.
_SYSCALL_LEAF = re.compile(
    r"^(write|read|epoll_p?wait|sendmsg|recvmsg|sendto|recvfrom|getpid|getrandom|syscall|"
    r"0x[0-9a-f]+) \(libc"
)
_WAIT_MARKERS = (
    "PyThread_acquire_lock",
    "pthread_cond_",
    "take_gil",
    "sem_wait",
    "sem_timedwait",
    "sem_clockwait",
)
IN_SYSCALL = "in a system call (write, read, epoll...)"
WAITING = "blocked on a lock or the GIL (idle threads)"
APART = (IN_SYSCALL, WAITING)


def categorize_profile(collapsed: Path) -> list[tuple[str, int]]:
    """Samples per category, largest first, from py-spy's raw (collapsed) output.

    The categories in APART, if present, are listed last.
    """
    counts: Counter[str] = Counter()
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        frames = [f.strip() for f in stack.split(";")[1:]]  # the first is the process
        if any(marker in frame for frame in frames for marker in _WAIT_MARKERS):
            counts[WAITING] += int(number)
            continue
        if frames and _SYSCALL_LEAF.match(frames[-1]):
            counts[IN_SYSCALL] += int(number)
            continue
        category = "other"
        for frame in reversed(frames):
            hit = next(
                (name for name, needles in PROFILE_RULES if any(n in frame for n in needles)), None
            )
            if hit is not None:
                category = hit
                break
        counts[category] += int(number)
    apart = [(name, counts.pop(name)) for name in APART if name in counts]
    return counts.most_common() + apart


def py_spy_path() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")
