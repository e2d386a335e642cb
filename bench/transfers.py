"""Internal transfers per second through the HTTP service, against pgbench on the same cluster.

    python bench/transfers.py                        # own cluster + `vnode serve --workers 1`
    python bench/transfers.py --workers 2 --db-ceiling --py-spy /tmp/w2.txt
    python bench/transfers.py --url http://host:3001 --dsn postgresql://... --admin-key KEY

By default it starts an embedded PostgreSQL cluster in a temporary directory and `vnode serve`
against it, funds --users users through POST /admin/credit, and runs --clients concurrent
keep-alive connections for --duration seconds, each looping POST /virtual_transfer between two
random distinct users with a small random amount. Only 200 answers count as transfers; other
answers are reported by status. The load comes from `wrk` with a Lua script when it is installed
(apt-get install -y wrk), otherwise from httpx in a separate Python process; the CPU each side
used is printed, since on a small machine the load generator competes with the service.

It then runs pgbench with ../shared/bench/transfer.sql (schema transfer_schema.sql) on a database
`bench_ref` of the same cluster, with the same number of clients and seconds, and prints last:

    ratio vnode/pgbench: 0.NN

With --url the service is not started; --dsn must name its PostgreSQL cluster (any database; the
bench drops and recreates `bench_ref` there) and --admin-key an admin key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
import typer
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

from harness import options as opt
from harness.serve import ServeProcess

console = Console(stderr=True)  # progress and notes
out = Console(width=110)  # results
SERVICE, POSTGRES, CLIENT = "vnode serve", "PostgreSQL", "client"  # CPU meter names
FUND_MSAT = 100_000_000  # 100,000 sats per user: far more than a run can move at <= max amount


@dataclass
class LoadResult:
    seconds: float
    statuses: Counter[int]
    p50_ms: float
    p99_ms: float
    socket_errors: dict[str, int] = field(default_factory=dict)
    tool: str = ""

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Workload:
    """The request every client loops on: `path` with a JSON body built from two random
    distinct users a and b and a random amount. `lua_body` is a Lua expression for wrk (a and b
    are indexes in 1..users; base and max_amount are in scope); `body_format` the same for the
    Python generators, with %(a)d and %(b)d the user ids and %(amount)d the amount."""

    path: str
    lua_body: str
    body_format: str
    # A fresh Idempotency-Key on every request, as the bot and the wallets send (issue 13).
    idempotency_key: bool = False

    def keyed(self) -> Workload:
        """The same requests, each with an Idempotency-Key of its own."""
        return dataclasses.replace(self, idempotency_key=True)


TRANSFER = Workload(
    "/virtual_transfer",
    'string.format(\'{"from_user_id":%d,"to_user_id":%d,"amount_msat":%d}\', '
    "base + a, base + b, math.random(max_amount))",
    '{"from_user_id":%(a)d,"to_user_id":%(b)d,"amount_msat":%(amount)d}',
)


# --------------------------------------------------------------------------------------------
# Load generator 1: wrk with a Lua script (C, cheap per request)

WRK_SCRIPT = r"""
local threads = {}
local counter = 1
function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

local base, users, max_amount, headers, seed, sent
function init(args)
  base = tonumber(args[1]); users = tonumber(args[2]); max_amount = tonumber(args[3])
  seed = tonumber(args[4])
  math.randomseed(seed + id * 7919)
  headers = {["Authorization"] = "Bearer " .. args[5], ["Content-Type"] = "application/json"}
  statuses = {}
end

function request()
  local a = math.random(users)
  local b = 1 + (a - 1 + math.random(users - 1)) % users
  local body = __BODY__
  if __IDEMPOTENT__ then
    sent = (sent or 0) + 1
    headers["Idempotency-Key"] = string.format("wrk-%d-%d-%d", seed, id, sent)
  end
  return wrk.format("POST", "__PATH__", headers, body)
end

function response(status, hdrs, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("statuses")) do
      merged[status] = (merged[status] or 0) + n
    end
  end
  io.write(string.format("RESULT duration_us=%d p50_us=%d p99_us=%d connect=%d read=%d " ..
    "write=%d timeout=%d\n", summary.duration, latency:percentile(50),
    latency:percentile(99), summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout))
  for status, n in pairs(merged) do
    io.write(string.format("STATUS %d %d\n", status, n))
  end
end
"""


def wrk_command(
    url: str,
    key: str,
    clients: int,
    threads: int,
    seconds: float,
    users: int,
    base: int,
    max_amount: int,
    script: Path,
) -> list[str]:
    return [
        "wrk",
        "-t",
        str(min(threads, clients)),
        "-c",
        str(clients),
        "-d",
        f"{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
        "--",
        str(base),
        str(users),
        str(max_amount),
        str(random.randrange(1, 10**6)),
        key,
    ]


def parse_wrk(output: str) -> LoadResult:
    statuses: Counter[int] = Counter()
    result: dict[str, int] = {}
    for line in output.splitlines():
        if line.startswith("RESULT "):
            result = {k: int(float(v)) for k, v in (item.split("=") for item in line.split()[1:])}
        elif line.startswith("STATUS "):
            _, status, count = line.split()
            statuses[int(status)] += int(count)
    if not result:
        raise RuntimeError(f"no result from wrk:\n{output}")
    errors = {k: result[k] for k in ("connect", "read", "write", "timeout") if result[k]}
    return LoadResult(
        result["duration_us"] / 1e6,
        statuses,
        result["p50_us"] / 1000,
        result["p99_us"] / 1000,
        errors,
        "wrk",
    )


# --------------------------------------------------------------------------------------------
# Load generator 2: Python in a separate process (used when wrk is not installed).
# "python" speaks HTTP/1.1 keep-alive on raw asyncio streams with uvloop: a few tens of us of CPU
# per request. "httpx" uses httpx.AsyncClient, which costs several times more CPU per request and
# so takes a large share of a small machine away from the service.


def _python_load(
    mode: str,
    url: str,
    key: str,
    clients: int,
    seconds: float,
    users: int,
    base: int,
    max_amount: int,
    workloads: tuple[Workload, ...],
    ready: Any,
    go: Any,
    queue: multiprocessing.Queue[dict[str, Any]],
) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    run = _raw_load if mode == "python" else _httpx_load
    queue.put(
        asyncio.run(
            _timed_load(
                run, url, key, clients, seconds, users, base, max_amount, ready, go, workloads
            )
        )
    )


# What a client sends next: the path, the JSON body and the Idempotency-Key (or None).
Request = Callable[[random.Random], tuple[str, bytes, str | None]]


async def _timed_load(
    run: Any,
    url: str,
    key: str,
    clients: int,
    seconds: float,
    users: int,
    base: int,
    max_amount: int,
    ready: Any,
    go: Any,
    workloads: tuple[Workload, ...],
) -> dict[str, Any]:
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    latencies: list[float] = []

    def request(rng: random.Random) -> tuple[str, bytes, str | None]:
        # Several workloads: each request is one of them, at random (a mixed load).
        workload = workloads[0] if len(workloads) == 1 else rng.choice(workloads)
        a = rng.randrange(users)
        b = (a + rng.randrange(1, users)) % users
        body = (
            workload.body_format
            % {"a": base + a + 1, "b": base + b + 1, "amount": rng.randint(1, max_amount)}
        ).encode()
        idempotency_key = f"{rng.getrandbits(128):032x}" if workload.idempotency_key else None
        return workload.path, body, idempotency_key

    ready.set()
    await asyncio.get_running_loop().run_in_executor(None, go.wait)
    cpu_before = os.times()
    started = time.perf_counter()
    await run(url, key, clients, started + seconds, request, statuses, errors, latencies)
    elapsed = time.perf_counter() - started
    cpu_after = os.times()
    latencies.sort()
    return {
        "seconds": elapsed,
        "statuses": dict(statuses),
        "errors": dict(errors),
        "p50": _percentile(latencies, 50),
        "p99": _percentile(latencies, 99),
        "cpu_user": cpu_after.user - cpu_before.user,
        "cpu_system": cpu_after.system - cpu_before.system,
    }


async def _raw_load(
    url: str,
    key: str,
    clients: int,
    end: float,
    request: Request,
    statuses: Counter[int],
    errors: Counter[str],
    latencies: list[float],
) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    common_headers = (
        f"Host: {host}:{port}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n"
    )

    def head(path: str, length: int, idempotency_key: str | None) -> bytes:
        keyed = f"Idempotency-Key: {idempotency_key}\r\n" if idempotency_key else ""
        return (
            f"POST {path} HTTP/1.1\r\n{common_headers}{keyed}Content-Length: {length}\r\n\r\n"
        ).encode()

    async def client() -> None:
        rng = random.Random()
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < end:
                path, payload, idempotency_key = request(rng)
                t0 = time.perf_counter()
                writer.write(head(path, len(payload), idempotency_key) + payload)
                header = await reader.readuntil(b"\r\n\r\n")
                status = int(header[9:12])
                length = 0
                for line in header.split(b"\r\n")[1:]:
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                statuses[status] += 1
                if b"connection: close" in header.lower():
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        except (OSError, asyncio.IncompleteReadError) as exc:
            errors[type(exc).__name__] += 1
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))


async def _httpx_load(
    url: str,
    key: str,
    clients: int,
    end: float,
    request: Request,
    statuses: Counter[int],
    errors: Counter[str],
    latencies: list[float],
) -> None:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(
        base_url=url, limits=limits, headers=headers, timeout=10.0
    ) as http:

        async def client() -> None:
            rng = random.Random()
            while time.perf_counter() < end:
                path, payload, idempotency_key = request(rng)
                extra = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
                t0 = time.perf_counter()
                try:
                    response = await http.post(path, content=payload, headers=extra)
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1
                    continue
                latencies.append(time.perf_counter() - t0)
                statuses[response.status_code] += 1

        await asyncio.gather(*(client() for _ in range(clients)))


def _percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * pct / 100))]


# --------------------------------------------------------------------------------------------
# Running things while showing progress


def run_load(
    mode: str,
    url: str,
    key: str,
    clients: int,
    threads: int,
    seconds: float,
    users: int,
    base: int,
    max_amount: int,
    workdir: Path,
    cpu_roots: dict[str, int],
    label: str,
    workload: Workload | tuple[Workload, ...] = TRANSFER,
) -> tuple[LoadResult, common.CpuMeter]:
    """One timed load run; returns its result and the CPU each process tree used meanwhile.
    Several workloads make a mixed load (each request one of them at random; Python
    generators only)."""
    workloads = workload if isinstance(workload, tuple) else (workload,)
    if mode == "wrk":
        if len(workloads) != 1:
            raise ValueError("wrk runs one workload; a mixed load needs --loadgen python")
        workload = workloads[0]
        script = workdir / "load.lua"
        script.write_text(
            WRK_SCRIPT.replace("__BODY__", workload.lua_body)
            .replace("__PATH__", workload.path)
            .replace("__IDEMPOTENT__", "true" if workload.idempotency_key else "false")
        )
        command = wrk_command(url, key, clients, threads, seconds, users, base, max_amount, script)
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        meter = common.CpuMeter(cpu_roots, reaped_name=CLIENT)
        meter.start()
        common.progress_wait(label, seconds, lambda: proc.poll() is not None)
        output = proc.communicate()[0]
        meter.stop()  # after wrk was reaped: its CPU is in this process's RUSAGE_CHILDREN
        if proc.returncode != 0:
            raise RuntimeError(f"wrk failed ({proc.returncode}):\n{output}")
        return parse_wrk(output), meter

    raw, meter = common.run_load_process(
        _python_load,
        (mode, url, key, clients, seconds, users, base, max_amount, workloads),
        label,
        seconds,
        cpu_roots,
        CLIENT,
    )
    statuses: Counter[int] = Counter({int(k): v for k, v in raw["statuses"].items()})
    return LoadResult(
        raw["seconds"], statuses, raw["p50"] * 1000, raw["p99"] * 1000, dict(raw["errors"]), mode
    ), meter


def pick_loadgen(loadgen: str) -> str:
    """`auto` means wrk when installed, else the raw-asyncio Python generator."""
    if loadgen == "auto":
        loadgen = "wrk" if shutil.which("wrk") else "python"
    if loadgen == "wrk" and not shutil.which("wrk"):
        raise typer.BadParameter("wrk is not installed (apt-get install -y wrk)")
    if loadgen not in ("wrk", "python", "httpx"):
        raise typer.BadParameter("--loadgen is auto, wrk, python or httpx")
    return loadgen


def fund_users(url: str, key: str, users: int, base: int, amount: int) -> None:
    async def run() -> None:
        failures: Counter[int] = Counter()
        semaphore = asyncio.Semaphore(16)
        async with httpx.AsyncClient(
            base_url=url, timeout=30.0, headers={"Authorization": f"Bearer {key}"}
        ) as client:

            async def credit(user_id: int) -> None:
                async with semaphore:
                    response = await client.post(
                        "/admin/credit",
                        json={"user_id": user_id, "amount_msat": amount, "reason": "bench funding"},
                    )
                    if response.status_code != 200:
                        failures[response.status_code] += 1
                        if sum(failures.values()) == 1:
                            console.print(
                                f"[red]credit {user_id}: {response.status_code} "
                                f"{response.text[:300]}[/]"
                            )

            await asyncio.gather(*(credit(base + i) for i in range(1, users + 1)))
        if failures:
            raise RuntimeError(f"funding failed: {dict(failures)}")

    asyncio.run(run())


def run_pgbench(
    dsn: str,
    script: Path,
    clients: int,
    threads: int,
    seconds: int,
    label: str,
    cwd: Path,
    cpu_roots: dict[str, int],
) -> tuple[common.PgbenchResult, common.CpuMeter]:
    command = common.pgbench_command(dsn, script, clients, threads, seconds)
    meter = common.CpuMeter(cpu_roots, reaped_name=CLIENT)
    meter.start()
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd
    )
    common.progress_wait(label, seconds, lambda: proc.poll() is not None)
    output = proc.communicate()[0]
    meter.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench failed ({proc.returncode}):\n{output}")
    return common.parse_pgbench(output), meter


CEILING_SCRIPT = """\\set a random(1, {users})
\\set b 1 + (:a - 1 + random(1, {users} - 1)) % {users}
\\set amt random(1, {max_amount})
SELECT code FROM vnode_transfer({base} + :a, {base} + :b, 'unused', 'BTC', :amt, NULL,
    'bench', NULL, NULL);
"""


# --------------------------------------------------------------------------------------------


def main(
    url: opt.ServiceUrl = None,
    dsn: opt.ServiceDsn = None,
    admin_key: opt.AdminKey = None,
    workers: opt.Workers = 1,
    clients: opt.Clients = 32,
    duration: opt.Seconds = 20,
    warmup: opt.Warmup = 3,
    users: opt.Users = 1000,
    user_base: opt.UserBase = 7_000_000_000,
    max_amount: Annotated[int, typer.Option(help="Transfers move 1..max msat")] = 1000,
    loadgen: opt.Loadgen = "auto",
    loadgen_threads: opt.LoadgenThreads = 2,
    pgbench_threads: opt.PgbenchThreads = 2,
    shared_dir: Annotated[
        Path, typer.Option(help="Directory of transfer.sql and transfer_schema.sql")
    ] = common.SHARED_BENCH_DIR,
    access_log: Annotated[
        bool, typer.Option(help="VNODE_ACCESS_LOG of the started service")
    ] = False,
    db_ceiling: Annotated[
        bool,
        typer.Option(
            help="Also run pgbench calling vnode_transfer() directly (the DB-only ceiling)"
        ),
    ] = False,
    py_spy: Annotated[
        Path | None,
        typer.Option(
            help="Record the service workers with py-spy during the measured run (collapsed "
            "stacks to this file) and print where the Python time goes"
        ),
    ] = None,
    batch: Annotated[
        int,
        typer.Option(
            help="VNODE_TRANSFER_BATCH_MAX of the started service: micro-batched transfers "
            "(docs/adr/0026); 1: each alone; 0: the service's default"
        ),
    ] = 0,
    batch_in_flight: Annotated[
        int, typer.Option(help="VNODE_TRANSFER_BATCH_IN_FLIGHT of the started service; 0: default")
    ] = 0,
    pg_set: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=VALUE server setting of the started cluster (ALTER SYSTEM, reload), "
            "repeatable: e.g. checkpoint_timeout=30s"
        ),
    ] = None,
    json_path: opt.JsonOut = None,
) -> None:
    """Internal transfers/s through vnode vs pgbench transfer.sql on the same cluster."""
    script = shared_dir / "transfer.sql"
    schema = shared_dir / "transfer_schema.sql"
    for path in (script, schema):
        if not path.exists():
            raise typer.BadParameter(f"{path} not found (see --shared-dir)")
    loadgen = pick_loadgen(loadgen)
    common.Target.check_options(url, dsn, admin_key, users)

    workdir = Path(tempfile.mkdtemp(prefix="vnode-bench-work-"))
    target: common.Target | None = None
    try:
        with console.status("starting PostgreSQL and vnode serve"):
            env = {}
            if batch:
                env["VNODE_TRANSFER_BATCH_MAX"] = str(batch)
            if batch_in_flight:
                env["VNODE_TRANSFER_BATCH_IN_FLIGHT"] = str(batch_in_flight)
            target = common.Target.start(
                url, dsn, admin_key, workdir, workers, access_log=access_log, extra_env=env
            )
        url, dsn, admin_key, cpu_roots = (
            target.url,
            target.dsn,
            target.admin_key,
            target.cpu_roots(),
        )
        service = target.service
        if pg_set:
            if target.running is None:
                raise typer.BadParameter("--pg-set only on a cluster started here (no --url)")
            common.apply_settings(dsn, pg_set)
        pg_version = common.server_version(dsn)
        out.print(f"machine: {common.machine_summary()}")
        out.print(
            f"PostgreSQL {pg_version}; vnode at {url}"
            + (
                f" (--workers {workers}, access log {'on' if access_log else 'off'})"
                if service
                else ""
            )
            + f"; load from {loadgen}"
            + (f"; VNODE_TRANSFER_BATCH_MAX={batch}" if batch else "")
            + (f"; {', '.join(pg_set)}" if pg_set else "")
        )

        with console.status(f"funding {users} users"):
            started = time.monotonic()
            fund_users(url, admin_key, users, user_base, FUND_MSAT)
        out.print(f"funded {users} users in {time.monotonic() - started:.1f}s")

        load_args = (url, admin_key, clients, loadgen_threads)
        if warmup > 0:
            run_load(
                loadgen, *load_args, warmup, users, user_base, max_amount, workdir, {}, "warm-up"
            )
        common.checkpoint(dsn)
        spies = start_py_spy(service, workdir, duration) if py_spy is not None else []
        spy_roots = {f"py-spy {i}": proc.pid for i, (proc, _) in enumerate(spies)}
        wal_before = common.wal_counters(dsn)
        lsn_before = common.wal_lsn(dsn)
        result, meter = run_load(
            loadgen,
            *load_args,
            duration,
            users,
            user_base,
            max_amount,
            workdir,
            {**cpu_roots, **spy_roots},
            f"vnode, {clients} clients",
        )
        vnode_wal = common.wal_per(wal_before, common.wal_counters(dsn), result.ok)
        vnode_relations = common.wal_by_relation(dsn, lsn_before, common.wal_lsn(dsn), result.ok)
        # The same with an Idempotency-Key on every request, as the bot and the wallets send
        # (each key new: the stored answer is written, never replayed).
        common.checkpoint(dsn)
        lsn_before = common.wal_lsn(dsn)
        keyed, keyed_meter = run_load(
            loadgen,
            *load_args,
            duration,
            users,
            user_base,
            max_amount,
            workdir,
            cpu_roots,
            f"vnode with Idempotency-Key, {clients} clients",
            TRANSFER.keyed(),
        )
        keyed_relations = common.wal_by_relation(dsn, lsn_before, common.wal_lsn(dsn), keyed.ok)
        if spies and py_spy is not None:
            merge_py_spy(spies, py_spy)
            spy_cpu = sum(meter.seconds(name) for name in spy_roots)
            out.print(f"py-spy used {spy_cpu / result.seconds:.2f} cores while sampling")

        db_roots = cpu_roots  # the idle service too, so that its background work is not "other"
        ceiling = None
        if db_ceiling:
            ceiling_script = workdir / "vnode_transfer.sql"
            ceiling_script.write_text(
                CEILING_SCRIPT.format(users=users, base=user_base, max_amount=max_amount)
            )
            common.checkpoint(dsn)
            ceiling = run_pgbench(
                dsn,
                ceiling_script,
                clients,
                pgbench_threads,
                duration,
                "pgbench SELECT vnode_transfer()",
                workdir,
                db_roots,
            )

        with console.status("loading transfer_schema.sql into bench_ref"):
            ref_dsn = common.recreate_database(dsn, "bench_ref")
            common.psql(ref_dsn, "-f", str(schema))
            common.checkpoint(dsn)
        wal_before = common.wal_counters(dsn)
        reference = run_pgbench(
            ref_dsn,
            script,
            clients,
            pgbench_threads,
            duration,
            "pgbench transfer.sql",
            workdir,
            db_roots,
        )
        reference_wal = common.wal_per(
            wal_before, common.wal_counters(dsn), reference[0].transactions
        )
        out.print(
            "WAL per transaction: "
            + "; ".join(
                f"{name} {w['records']:.1f} records, {w['fpi']:.2f} full-page images, "
                f"{w['bytes']:,.0f} bytes ({w['checkpoints']:.0f} checkpoints began)"
                for name, w in (("vnode", vnode_wal), ("pgbench transfer.sql", reference_wal))
            ),
            soft_wrap=True,
        )

        # Which rows and index entries the WAL is made of (docs/PERFORMANCE.md, issue 13).
        out.print(common.wal_table(vnode_relations, "transfer"))
        out.print(common.wal_table(keyed_relations, "transfer with an Idempotency-Key"))
        _report(result, meter, ceiling, reference, clients, duration, (keyed, keyed_meter))
        if py_spy is not None and py_spy.exists():
            print_profile(py_spy)
        ratio = result.rate / reference[0].tps if reference[0].tps else 0.0
        figures = {
            "vnode transfers/s": result.rate,
            "vnode p50 ms": result.p50_ms,
            "vnode p99 ms": result.p99_ms,
            "pgbench transfer.sql tps": reference[0].tps,
            "other programs during vnode run, cores": meter.foreign_user / result.seconds,
            "vnode with Idempotency-Key transfers/s": keyed.rate,
            "vnode with Idempotency-Key p99 ms": keyed.p99_ms,
            "ratio with Idempotency-Key vnode/pgbench": (
                keyed.rate / reference[0].tps if reference[0].tps else 0.0
            ),
            "other programs during keyed run, cores": keyed_meter.foreign_user / keyed.seconds,
            "vnode WAL bytes/transfer": vnode_wal["bytes"],
            "vnode full-page images/transfer": vnode_wal["fpi"],
            "pgbench WAL bytes/transaction": reference_wal["bytes"],
            "pgbench full-page images/transaction": reference_wal["fpi"],
        }
        if ceiling is not None:
            figures["pgbench SELECT vnode_transfer() tps"] = ceiling[0].tps
        if target.running is not None:  # a service of its own: its database is the bench's
            figures["audit clean (1 = yes)"] = float(common.audit(dsn, workdir, out))
        common.finish(
            json_path, "transfers", figures, ("vnode/pgbench", ratio), postgres=pg_version
        )
    finally:
        with console.status("stopping"):
            if target is not None:
                target.stop()
            shutil.rmtree(workdir, ignore_errors=True)


def start_py_spy(
    service: ServeProcess | None, workdir: Path, duration: int
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    """One `py-spy record` per worker process; returns each with its output file."""
    binary = common.py_spy_path()
    if binary is None or service is None or service.pid is None:
        console.print("[yellow]py-spy not found or no service started here: no profile[/]")
        return []
    spies = []
    for pid in service.worker_pids():
        part = workdir / f"py-spy-{pid}.txt"
        # --native: C frames too, so that time in system calls can be told apart (a worker woken
        # and preempted in write() looks busy to a wall-clock sampler). It pauses the worker for
        # each sample, so the figures of a profiled run are a little lower.
        command = [
            binary,
            "record",
            "--pid",
            str(pid),
            "--native",
            "--rate",
            "100",
            "--duration",
            str(duration),
            "--format",
            "raw",
            "--output",
            str(part),
        ]
        spies.append(
            (subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), part)
        )
    return spies


def load_table(result: LoadResult, what: str, clients: int, duration: int) -> Table:
    """The results table, with the load's rows: rate, latency, non-200 answers, socket errors;
    the caller adds its reference's rows and prints it."""
    table = Table(title=f"{clients} clients, {duration}s each")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row(f"vnode {what} (200 only, {result.tool})", f"{result.rate:,.0f}")
    table.add_row("vnode latency p50 / p99", f"{result.p50_ms:.1f} / {result.p99_ms:.1f} ms")
    other = {s: n for s, n in sorted(result.statuses.items()) if s != 200}
    table.add_row(
        "vnode non-200 answers", ", ".join(f"{s}: {n}" for s, n in other.items()) or "none"
    )
    if result.socket_errors:
        table.add_row(
            "vnode socket errors", ", ".join(f"{k}: {v}" for k, v in result.socket_errors.items())
        )
    return table


def _report(
    result: LoadResult,
    meter: common.CpuMeter,
    ceiling: tuple[common.PgbenchResult, common.CpuMeter] | None,
    reference: tuple[common.PgbenchResult, common.CpuMeter],
    clients: int,
    duration: int,
    keyed_run: tuple[LoadResult, common.CpuMeter],
) -> None:
    keyed = keyed_run[0]
    table = load_table(result, "transfers/s", clients, duration)
    table.add_row("vnode transfers/s with Idempotency-Key (200 only)", f"{keyed.rate:,.0f}")
    table.add_row(
        "vnode with Idempotency-Key p50 / p99", f"{keyed.p50_ms:.1f} / {keyed.p99_ms:.1f} ms"
    )
    keyed_other = {s: n for s, n in sorted(keyed.statuses.items()) if s != 200}
    if keyed_other:
        table.add_row(
            "vnode with Idempotency-Key non-200",
            ", ".join(f"{s}: {n}" for s, n in keyed_other.items()),
        )
    if ceiling is not None:
        table.add_row("pgbench SELECT vnode_transfer() tps", f"{ceiling[0].tps:,.0f}")
    table.add_row("pgbench transfer.sql tps", f"{reference[0].tps:,.0f}")
    table.add_row("pgbench transfer.sql latency avg", f"{reference[0].latency_ms:.1f} ms")
    if reference[0].failed:
        table.add_row("pgbench failed transactions", str(reference[0].failed))
    out.print(table)

    if POSTGRES not in meter.used:
        return  # --url: the processes are not ours to measure
    cpu = Table(title="CPU per transaction (us) and machine idle during each run")
    for column in ("run", "tx/s", SERVICE, POSTGRES, "client", "rest (kernel, bench)", "idle"):
        cpu.add_column(column, justify="left" if column == "run" else "right")
    rows = [
        ("vnode HTTP", result.ok, result.seconds, meter),
        ("vnode HTTP, Idempotency-Key", keyed.ok, keyed.seconds, keyed_run[1]),
    ]
    if ceiling is not None:
        rows.append(("pgbench vnode_transfer()", ceiling[0].transactions, duration, ceiling[1]))
    rows.append(("pgbench transfer.sql", reference[0].transactions, duration, reference[1]))
    noisy = []
    for name, count, seconds, m in rows:
        if not count:
            continue
        total = m.machine_busy.total + m.machine_idle
        cpu.add_row(
            name,
            f"{count / seconds:,.0f}",
            *(
                f"{m.seconds(k) / count * 1e6:.0f}" if k in m.used else "-"
                for k in (SERVICE, POSTGRES, CLIENT)
            ),
            f"{m.rest / count * 1e6:.0f}",
            f"{100 * m.machine_idle / total:.0f}%" if total else "",
        )
        if m.foreign_user / seconds > 0.05:
            noisy.append(f"{name}: {m.foreign_user / seconds:.2f} cores")
    out.print(cpu)
    if noisy:
        out.print(
            "[yellow]other programs used CPU during the measurement, so these figures are "
            "low; run again on a quiet machine: " + "; ".join(noisy) + "[/]",
            soft_wrap=True,
        )


def merge_py_spy(spies: list[tuple[subprocess.Popen[bytes], Path]], path: Path) -> None:
    """Wait for each `py-spy record` of start_py_spy and write their samples into `path`."""
    with path.open("w") as merged:
        for proc, part in spies:
            proc.wait(60)
            if part.exists():
                merged.write(part.read_text())


def print_profile(path: Path) -> None:
    counts = common.categorize_profile(path)
    running = sum(n for name, n in counts if name not in common.APART) or 1
    total = sum(n for _, n in counts) or 1
    table = Table(title=f"py-spy: where the workers' Python time goes ({total} samples)")
    table.add_column("innermost matching frame")
    table.add_column("share", justify="right")
    for name, n in counts:
        if name in common.APART:
            table.add_row(
                f"[dim]not counted above: {name}[/]",
                f"[dim]{100 * n / total:.1f}% of all samples[/]",
            )
        else:
            table.add_row(name, f"{100 * n / running:.1f}%")
    out.print(table)


if __name__ == "__main__":
    typer.run(main)
