"""External payments per second through the simulated node, with the reconciler running, and the
time from request to final state; against the simulated node's own rate.

    python bench/payments.py                    # about 80 seconds with the defaults
    python bench/payments.py --clients 32 --settle-delay 0.1
    python bench/payments.py --hold-fraction 0.02   # 2% of payments held by the node for 8 s

It starts a throwaway embedded PostgreSQL cluster, a standalone simulated RGB Lightning Node
(`vnode sim serve --settle-delay-s S`: every outbound payment answers Pending and succeeds S
seconds later) and `vnode serve` with VNODE_NODE=sim and VNODE_RLN_URL pointing at it (the
reconciler and the invoice watcher run as in production). It funds --users users with
POST /admin/credit and pre-creates outside invoices of --amount-msat with POST /_sim/invoice
(not timed). Then --clients concurrent clients (raw asyncio HTTP/1.1, one kept-alive connection
each, in a separate process: bench/raw_http.py) pay them for --duration seconds, each looping:

    POST /virtual_sendpayment {user_id, invoice}    a random funded user
      200 succeeded/failed: final, the latency is the response time;
      202 pending: POST /virtual_payment every --poll-s until it is final.

The sim alone: payments per CPU-second of the simulated node in the direct run (its
capacity on one core; the direct run's own rate is bound by the clients and the poll period).

Time to final state is measured from the request to the answer that shows the final state.
Only succeeded payments count towards payments/s.

The reference, in the same run and with the same clients, seconds and poll period: the simulated
node's own rate, paying the same kind of outside invoices through its REST API directly
(POST /sendpayment, then POST /getpayment until Succeeded). It shows what the node and the
load generator cost without vnode in between. Printed last:

    ratio vnode/sim-direct: 0.NN

With --hold-fraction F, before a fraction F of the payments the client sets the node's
`hold` fault (POST /_sim/faults; it holds the next payment the node records, which may be
another client's), and any payment still not final --hold-s seconds after its request is
released by its client (POST /_sim/release, succeed). With --hold-s above VNODE_PAYMENT_WAIT_S
(5 s) vnode answers 202 for those and the reconciler finishes them.

With --pg-stat-statements, the bench's cluster preloads pg_stat_statements (`track = all`, with
`track_functions = all`), and after the vnode run the top statements and the functions are
printed per succeeded payment: calls, time, mean, rows, WAL bytes.

With --py-spy DIR, `py-spy record` samples vnode serve's workers and the sim during the vnode
run, and the sim during the direct run (collapsed stacks in DIR), and a table shows where
each process's time goes, by the innermost frame's module.

After the run `vnode audit --no-node` is run against the bench's database; its verdict is printed.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
import statements
import transfers
from raw_http import Answer, RawConnection, TransportError

from harness.options import JsonOut, Seconds, Users, Workers
from vnode.lightning.sim_process import SimProcess
from vnode.loopback import free_port

console = Console(stderr=True)
out = Console(width=110)
SIM, CLIENT = "sim node", "client"  # CPU meter names, beside RunningService.cpu_roots
FUND_MSAT = 1_000_000_000  # 1,000,000 sats per user: each payment holds amount + fee reserve
VNODE, DIRECT = "vnode", "sim-direct"
Invoice = tuple[str, str]  # (payment_hash, invoice text)


# --------------------------------------------------------------------------------------------
# Invoices of an outside payee (the simulated node's /_sim/invoice)


def make_invoices(sim_url: str, count: int, amount_msat: int) -> list[Invoice]:
    async def run() -> list[Invoice]:
        semaphore = asyncio.Semaphore(8)
        limits = httpx.Limits(max_connections=8)
        async with httpx.AsyncClient(base_url=sim_url, timeout=30.0, limits=limits) as client:

            async def one() -> Invoice:
                async with semaphore:
                    response = await client.post(
                        "/_sim/invoice", json={"amt_msat": amount_msat, "expiry_sec": 3600}
                    )
                    if response.status_code != 200:
                        raise RuntimeError(
                            f"/_sim/invoice: {response.status_code} {response.text[:300]}"
                        )
                    body = response.json()
                    return str(body["payment_hash"]), str(body["invoice"])

            return await asyncio.gather(*(one() for _ in range(count)))

    return asyncio.run(run())


# --------------------------------------------------------------------------------------------
# The load generator: its own process, raw asyncio HTTP, one connection per client (httpx's
# CPU per payment was more than the sim's, on the same two cores)


@dataclass(frozen=True)
class LoadSpec:
    mode: str  # VNODE or DIRECT
    url: str  # vnode serve, or the simulated node for DIRECT
    sim_url: str  # the simulated node's control API (faults, release)
    key: str
    clients: int
    seconds: float
    users: list[int]
    invoices: list[Invoice]
    poll_s: float
    final_timeout_s: float
    hold_fraction: float
    hold_s: float


@dataclass
class _Tally:
    finals: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # succeeded, request to final
    requests: Counter[str] = field(default_factory=Counter)  # HTTP calls by kind
    answered_202: int = 0
    holds_set: int = 0
    released: int = 0
    ran_out: bool = False


def _load_main(
    spec: LoadSpec, ready: Any, go: Any, queue: multiprocessing.Queue[dict[str, Any]]
) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    queue.put(asyncio.run(_timed_load(spec, ready, go)))


async def _timed_load(spec: LoadSpec, ready: Any, go: Any) -> dict[str, Any]:
    tally = _Tally()
    invoices = iter(spec.invoices)
    headers = {"Authorization": f"Bearer {spec.key}"} if spec.key else {}
    pay = _pay_vnode if spec.mode == VNODE else _pay_direct
    ready.set()
    await asyncio.get_running_loop().run_in_executor(None, go.wait)
    cpu_before = os.times()
    started = time.perf_counter()
    end = started + spec.seconds

    async def client() -> None:
        rng = random.Random()
        # Connected on first use (the control one only when a fault is set or released).
        http, control = RawConnection(spec.url, headers), RawConnection(spec.sim_url)
        try:
            while time.perf_counter() < end:
                try:
                    payment_hash, invoice = next(invoices)
                except StopIteration:
                    tally.ran_out = True
                    return
                if spec.hold_fraction and rng.random() < spec.hold_fraction:
                    await _post(control, "/_sim/faults", {"next_payment": "hold"}, tally, "faults")
                    tally.holds_set += 1
                t0 = time.perf_counter()
                final = await pay(
                    http, control, spec, tally, rng.choice(spec.users), payment_hash, invoice, t0
                )
                tally.finals[final] += 1
                if final == "succeeded":
                    tally.latencies.append(time.perf_counter() - t0)
        finally:
            http.close()
            control.close()

    await asyncio.gather(*(client() for _ in range(spec.clients)))
    elapsed = time.perf_counter() - started
    cpu_after = os.times()
    tally.latencies.sort()
    return {
        "seconds": elapsed,
        "finals": dict(tally.finals),
        "latencies": tally.latencies,
        "requests": dict(tally.requests),
        "answered_202": tally.answered_202,
        "holds_set": tally.holds_set,
        "released": tally.released,
        "ran_out": tally.ran_out,
        "cpu_user": cpu_after.user - cpu_before.user,
        "cpu_system": cpu_after.system - cpu_before.system,
    }


async def _post(
    http: RawConnection, path: str, body: dict[str, Any], tally: _Tally, kind: str
) -> Answer | str:
    """The response, or the transport error's name."""
    tally.requests[kind] += 1
    try:
        async with asyncio.timeout(30.0):
            return await http.post(path, body)
    except (*TransportError, TimeoutError) as exc:
        return type(exc).__name__


async def _maybe_release(
    control: RawConnection,
    spec: LoadSpec,
    tally: _Tally,
    payment_hash: str,
    t0: float,
    released: list[bool],
) -> None:
    """Release a payment the node holds once it is --hold-s old (at most once)."""
    if spec.hold_fraction and not released[0] and time.perf_counter() - t0 >= spec.hold_s:
        released[0] = True
        answer = await _post(
            control,
            "/_sim/release",
            {"payment_hash": payment_hash, "outcome": "succeed"},
            tally,
            "release",
        )
        if isinstance(answer, Answer) and answer.status_code == 200:
            tally.released += 1


async def _pay_vnode(
    http: RawConnection,
    control: RawConnection,
    spec: LoadSpec,
    tally: _Tally,
    user_id: int,
    payment_hash: str,
    invoice: str,
    t0: float,
) -> str:
    """POST /virtual_sendpayment, then /virtual_payment while 202; the final status."""
    answer = await _post(
        http, "/virtual_sendpayment", {"user_id": user_id, "invoice": invoice}, tally, "sendpayment"
    )
    if isinstance(answer, str):
        return f"transport error: {answer}"
    if answer.status_code == 202:
        tally.answered_202 += 1
    released = [False]
    while answer.status_code == 202:
        if time.perf_counter() - t0 > spec.final_timeout_s:
            return "still pending at the timeout"
        await _maybe_release(control, spec, tally, payment_hash, t0, released)
        await asyncio.sleep(spec.poll_s)
        polled = await _post(
            http,
            "/virtual_payment",
            {"user_id": user_id, "payment_hash": payment_hash},
            tally,
            "poll",
        )
        if isinstance(polled, str):
            continue  # the payment is in flight; ask again
        answer = polled
    if answer.status_code != 200:
        return f"HTTP {answer.status_code} {answer.json().get('error', '')}".rstrip()
    return str(answer.json()["status"])


async def _pay_direct(
    http: RawConnection,
    control: RawConnection,
    spec: LoadSpec,
    tally: _Tally,
    user_id: int,
    payment_hash: str,
    invoice: str,
    t0: float,
) -> str:
    """POST /sendpayment on the node, then /getpayment until final (first poll at once, then
    every --poll-s, as vnode's own wait does); the final status."""
    del user_id
    answer = await _post(http, "/sendpayment", {"invoice": invoice}, tally, "sendpayment")
    if isinstance(answer, str):
        return f"transport error: {answer}"
    if answer.status_code != 200:
        return f"HTTP {answer.status_code} {answer.json().get('name', '')}".rstrip()
    status = str(answer.json()["status"])
    released = [False]
    while status == "Pending":
        if time.perf_counter() - t0 > spec.final_timeout_s:
            return "still pending at the timeout"
        polled = await _post(http, "/getpayment", {"payment_hash": payment_hash}, tally, "poll")
        if isinstance(polled, Answer) and polled.status_code == 200:
            status = str(polled.json()["payment"]["status"])
            if status != "Pending":
                break
        await _maybe_release(control, spec, tally, payment_hash, t0, released)
        await asyncio.sleep(spec.poll_s)
    return status.lower()


@dataclass
class LoadResult:
    label: str
    seconds: float
    finals: Counter[str]
    latencies_s: list[float]
    requests: Counter[str]
    answered_202: int
    holds_set: int
    released: int
    ran_out: bool

    @property
    def succeeded(self) -> int:
        return self.finals.get("succeeded", 0)

    @property
    def rate(self) -> float:
        return self.succeeded / self.seconds if self.seconds else 0.0


def run_load(
    spec: LoadSpec,
    label: str,
    cpu_roots: dict[str, int],
    spy: dict[str, list[int]] | None = None,
    spy_dir: Path | None = None,
) -> tuple[LoadResult, common.CpuMeter]:
    spies = _start_py_spy(spy or {}, spy_dir, label, spec.seconds) if spy_dir else []
    raw, meter = common.run_load_process(
        _load_main,
        (spec,),
        label,
        spec.seconds,
        cpu_roots,
        CLIENT,
        result_timeout_s=spec.final_timeout_s + 30,
    )
    for process, path in spies:
        process.wait(timeout=60)
        _print_profile(path)
    return LoadResult(
        label,
        raw["seconds"],
        Counter(raw["finals"]),
        raw["latencies"],
        Counter(raw["requests"]),
        raw["answered_202"],
        raw["holds_set"],
        raw["released"],
        raw["ran_out"],
    ), meter


# --------------------------------------------------------------------------------------------
# py-spy


def _start_py_spy(
    targets: dict[str, list[int]], spy_dir: Path, label: str, seconds: float
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    """`py-spy record` on each process of `targets` (name -> pids) for the run's seconds."""
    binary = common.py_spy_path()
    if binary is None:
        console.print("[yellow]py-spy not found: no profile[/]")
        return []
    spy_dir.mkdir(parents=True, exist_ok=True)
    spies = []
    for name, pids in targets.items():
        for pid in pids:
            path = spy_dir / f"{label}-{name.replace(' ', '-')}-{pid}.txt"
            command = [binary, "record", "--pid", str(pid), "--rate", "200"]
            command += ["--duration", str(int(seconds)), "--format", "raw", "--output", str(path)]
            quiet = subprocess.DEVNULL
            spies.append((subprocess.Popen(command, stdout=quiet, stderr=quiet), path))
    return spies


def _module_of(frame: str) -> str:
    """`function (path:line)` -> a short module name: the package and file under vnode/ or
    vnode_sim/, else the top-level package (py-spy names files from their package down:
    `asyncpg/connection.py`, `asyncio/runners.py`)."""
    where = frame.rpartition("(")[2].rstrip(")").rpartition(":")[0]
    parts = where.split("/")
    if parts[0] in ("vnode", "vnode_sim"):
        return "/".join(parts[:2])
    return parts[0]


def _print_profile(path: Path, top: int = 14) -> None:
    """Samples by the innermost frame's module, and the innermost frames of vnode's own code."""
    leaf: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        frames = stack.split(";")[1:]
        n = int(number)
        total += n
        if frames:
            leaf[_module_of(frames[-1])] += n
            mine = [f for f in frames if "vnode/" in f or "vnode_sim/" in f]
            if mine:
                own[mine[-1].rpartition(":")[0] + ")"] += n
    table = Table(title=f"py-spy {path.name}: {total} samples")
    table.add_column("innermost frame's module")
    table.add_column("share", justify="right")
    table.add_column("innermost frame of vnode's code")
    table.add_column("share", justify="right")
    by_module, by_own = leaf.most_common(top), own.most_common(top)
    for i in range(max(len(by_module), len(by_own))):
        a = by_module[i] if i < len(by_module) else ("", 0)
        b = by_own[i] if i < len(by_own) else ("", 0)
        table.add_row(
            a[0],
            f"{100 * a[1] / max(total, 1):.1f}%" if a[0] else "",
            b[0],
            f"{100 * b[1] / max(total, 1):.1f}%" if b[0] else "",
        )
    out.print(table)


# --------------------------------------------------------------------------------------------
# Reporting


def _pct(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * pct / 100))]


def _report(
    results: list[tuple[LoadResult, common.CpuMeter]],
    clients: int,
    duration: int,
    hold_fraction: float,
) -> None:
    table = Table(title=f"{clients} clients, {duration}s each")
    table.add_column("measure")
    for result, _ in results:
        table.add_column(result.label, justify="right")
    table.add_row("succeeded payments/s", *(f"{r.rate:,.1f}" for r, _ in results))
    for name, pct in (("p50", 50), ("p99", 99)):
        table.add_row(
            f"request to final, {name}",
            *(f"{1000 * _pct(r.latencies_s, pct):,.1f} ms" for r, _ in results),
        )
    table.add_row(
        "request to final, max",
        *(f"{1000 * max(r.latencies_s, default=float('nan')):,.1f} ms" for r, _ in results),
    )
    statuses = sorted({s for r, _ in results for s in r.finals})
    for status in statuses:
        table.add_row(f"final: {status}", *(f"{r.finals.get(status, 0):,}" for r, _ in results))
    table.add_row("answered 202 (then polled)", *(f"{r.answered_202:,}" for r, _ in results))
    table.add_row(
        "HTTP requests per payment",
        *(f"{sum(r.requests.values()) / max(1, sum(r.finals.values())):.2f}" for r, _ in results),
    )
    if hold_fraction:
        table.add_row(
            "hold faults set / payments released",
            *(f"{r.holds_set:,} / {r.released:,}" for r, _ in results),
        )
    table.add_row(
        "window (incl. the last payments' tail)", *(f"{r.seconds:.1f} s" for r, _ in results)
    )
    out.print(table)

    names = list(dict.fromkeys(name for _, m in results for name in m.used))
    cpu = Table(title="CPU used per succeeded payment (us), and machine idle")
    cpu.add_column("run")
    for name in names:
        cpu.add_column(name, justify="right")
    cpu.add_column("kernel and rest", justify="right")
    cpu.add_column("machine idle", justify="right")
    for result, meter in results:
        per = 1e6 / max(1, result.succeeded)
        total = meter.machine_busy.total + meter.machine_idle
        cpu.add_row(
            result.label,
            *(f"{meter.seconds(n) * per:,.0f}" if n in meter.used else "-" for n in names),
            f"{max(0.0, meter.rest) * per:,.0f}",
            f"{100 * meter.machine_idle / total:.0f}%" if total else "",
        )
    out.print(cpu)
    for result, meter in results:
        if meter.foreign_user / max(result.seconds, 1e-9) > 0.05:
            out.print(
                f"[yellow]{result.label}: other programs used "
                f"{meter.foreign_user / result.seconds:.2f} cores during the run: these "
                "figures are low; run again on a quiet machine[/]"
            )
        if result.ran_out:
            out.print(
                f"[red]{result.label}: the clients ran out of invoices before the end: "
                "raise --invoices[/]"
            )


# The stages of vnode/payments/send.py, in the order a payment meets them (Metrics.payment_stages).
STAGES = ("read_invoice", "reserve", "send", "poll_sleep", "read_row", "check")


def payment_stages(url: str, key: str) -> dict[str, tuple[int, float]]:
    """vnode_payment_stage_seconds from the service's /metrics: stage -> (count, seconds)."""
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {key}"}).text
    found: dict[str, tuple[int, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "vnode_payment_stage_seconds":
            continue
        for sample in family.samples:
            stage = sample.labels.get("stage", "")
            count, total = found.get(stage, (0, 0.0))
            if sample.name.endswith("_count"):
                found[stage] = (int(sample.value), total)
            elif sample.name.endswith("_sum"):
                found[stage] = (count, sample.value)
    return found


def stages_table(stages: dict[str, tuple[int, float]], mine: LoadResult) -> tuple[Table, float]:
    """Where a payment request's time went, per payment; returns the table and the ms per
    payment that no stage accounts for (the event loop's queue, the HTTP hop, the answer)."""
    payments = stages.get("read_invoice", (0, 0.0))[0]
    mean_ms = 1000 * sum(mine.latencies_s) / max(len(mine.latencies_s), 1)
    table = Table(title=f"vnode: where a payment request's time goes ({payments:,} requests)")
    for column in ("stage", "per payment", "mean ms each", "ms per payment"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    staged_ms = 0.0
    for stage in STAGES:
        count, seconds = stages.get(stage, (0, 0.0))
        per_payment = 1000 * seconds / max(payments, 1)
        staged_ms += per_payment
        table.add_row(
            stage,
            f"{count / max(payments, 1):.2f}",
            f"{1000 * seconds / max(count, 1):.2f}",
            f"{per_payment:.1f}",
        )
    rest = mean_ms - staged_ms
    table.add_row("all stages", "", "", f"{staged_ms:.1f}")
    table.add_row("request to final, mean (client)", "", "", f"{mean_ms:.1f}")
    table.add_row("outside every stage", "", "", f"{rest:.1f}")
    return table, rest


def _print_statements(dsn: str, payments: int) -> None:
    """What PostgreSQL did per succeeded payment of the vnode run (the reconciler, the watchers
    and the event fan-out included: everything on the bench's database)."""
    out.print(statements.statements_table(statements.top_statements(dsn, payments), "payment"))
    out.print(statements.functions_table(statements.functions(dsn, payments), "payment"))
    calls, total_us = statements.toplevel_total(dsn, payments)
    out.print(
        f"top-level statements per payment: {calls:.2f} calls, {total_us:,.0f} us of execution "
        f"({payments:,} succeeded payments)"
    )


# --------------------------------------------------------------------------------------------


def main(
    duration: Seconds = 20,
    clients: Annotated[
        int, typer.Option(help="Concurrent clients (each one payment at a time)")
    ] = 16,
    users: Users = 100,
    invoices: Annotated[
        int, typer.Option(help="Outside invoices pre-created for each run (each can be paid once)")
    ] = 6000,
    amount_msat: Annotated[int, typer.Option(help="Amount of every invoice")] = 1000,
    settle_delay: Annotated[
        float,
        typer.Option(
            help="`vnode sim serve --settle-delay-s`: a payment succeeds this long after sending"
        ),
    ] = 0.02,
    poll_s: Annotated[
        float,
        typer.Option(
            help="Client poll period while a payment is pending (vnode itself polls every 0.05 s)"
        ),
    ] = 0.05,
    workers: Workers = 1,
    hold_fraction: Annotated[
        float, typer.Option(help="Fraction of payments before which the node's `hold` fault is set")
    ] = 0.0,
    hold_s: Annotated[
        float,
        typer.Option(
            help="A payment not final this long after its request is released by its client"
        ),
    ] = 8.0,
    final_timeout: Annotated[
        float,
        typer.Option(help="Seconds a client waits for a final state before giving up on a payment"),
    ] = 60.0,
    py_spy: Annotated[
        Path | None,
        typer.Option(help="Profile vnode serve and the sim with py-spy; stacks go to this folder"),
    ] = None,
    pg_stat_statements: Annotated[
        bool,
        typer.Option(
            "--pg-stat-statements",
            help="Preload pg_stat_statements on the bench's cluster and print, after the vnode "
            "run, PostgreSQL's statements and functions per succeeded payment",
        ),
    ] = False,
    json_path: JsonOut = None,
) -> None:
    """External payments/s through vnode and the sim node, against the sim node alone."""
    if users < 1 or clients < 1 or invoices < 1:
        raise typer.BadParameter("--users, --clients and --invoices must be positive")
    if not 0 <= hold_fraction <= 1:
        raise typer.BadParameter("--hold-fraction is between 0 and 1")
    user_base = 7_000_000_000
    user_ids = [user_base + i for i in range(1, users + 1)]
    workdir = Path(tempfile.mkdtemp(prefix="vnode-bench-payments-"))
    sim: SimProcess | None = None
    running: common.RunningService | None = None
    try:
        with console.status("starting the simulated node, PostgreSQL and vnode serve"):
            sim = SimProcess(
                "127.0.0.1",
                free_port(),
                workdir / "sim.log",
                ("--settle-delay-s", str(settle_delay)),
            )
            sim.wait_ready()
            running = common.RunningService.start(
                workdir,
                workers,
                extra_env={"VNODE_NODE": "sim", "VNODE_RLN_URL": sim.url},
                server_settings=statements.SETTINGS if pg_stat_statements else (),
            )
        service, dsn = running.service, running.dsn
        out.print(f"machine: {common.machine_summary()}")
        pg_version = common.server_version(dsn)
        out.print(
            f"PostgreSQL {pg_version}; vnode serve --workers {workers} "
            f"(VNODE_NODE=sim, reconciler and watchers on); vnode sim serve "
            f"--settle-delay-s {settle_delay}; load from raw asyncio HTTP, {clients} clients, "
            f"poll every {poll_s} s"
            + (
                f"; hold fault before {hold_fraction:.0%} of payments, released after {hold_s} s"
                if hold_fraction
                else ""
            )
        )

        with console.status(f"funding {users} users"):
            transfers.fund_users(service.url, service.admin_key, users, user_base, FUND_MSAT)
        with console.status(f"creating 2 x {invoices:,} outside invoices"):
            started = time.monotonic()
            batch = make_invoices(sim.url, 2 * invoices, amount_msat)
        out.print(
            f"funded {users} users; created {2 * invoices:,} outside invoices of "
            f"{amount_msat} msat in {time.monotonic() - started:.1f}s"
        )

        roots = {**running.cpu_roots(), SIM: sim.proc.pid}
        common.checkpoint(dsn)
        base = LoadSpec(
            VNODE,
            service.url,
            sim.url,
            service.admin_key,
            clients,
            duration,
            user_ids,
            batch[:invoices],
            poll_s,
            final_timeout,
            hold_fraction,
            hold_s,
        )
        vnode_spied = {"vnode serve": service.worker_pids(), SIM: [sim.proc.pid]}
        if pg_stat_statements:
            statements.reset(dsn)
        via_vnode = run_load(base, VNODE, roots, vnode_spied, py_spy)
        staged, unstaged_ms = stages_table(
            payment_stages(service.url, service.admin_key), via_vnode[0]
        )
        out.print(staged)
        if pg_stat_statements:
            _print_statements(dsn, via_vnode[0].succeeded)
        common.checkpoint(dsn)
        direct_spec = LoadSpec(
            DIRECT,
            sim.url,
            sim.url,
            "",
            clients,
            duration,
            user_ids,
            batch[invoices:],
            poll_s,
            final_timeout,
            hold_fraction,
            hold_s,
        )
        direct = run_load(direct_spec, DIRECT, roots, {SIM: [sim.proc.pid]}, py_spy)

        _report([via_vnode, direct], clients, duration, hold_fraction)
        service.stop(signal.SIGINT, common.STOP_TIMEOUT_S)
        clean = common.audit(dsn, workdir, out)
        ratio = via_vnode[0].rate / direct[0].rate if direct[0].rate else 0.0
        mine, theirs = via_vnode[0], direct[0]
        # The sim alone: what one core of it carries, from its CPU time in the direct run (the
        # direct run's rate is bound by the clients' poll period and count, not by the sim).
        sim_cpu_s = direct[1].seconds(SIM)
        sim_alone = theirs.succeeded / sim_cpu_s if sim_cpu_s else float("nan")
        out.print(
            f"the sim alone: {sim_alone:,.0f} payments per CPU-second of the sim "
            f"({1e6 / sim_alone if sim_alone else float('nan'):,.0f} us per payment, "
            f"{sim_cpu_s / max(theirs.seconds, 1e-9):.2f} cores during the direct run)"
        )
        common.finish(
            json_path,
            "payments",
            {
                "vnode payments/s": mine.rate,
                "vnode to final p50 ms": 1000 * _pct(mine.latencies_s, 50),
                "vnode to final p99 ms": 1000 * _pct(mine.latencies_s, 99),
                "vnode time outside the payment stages, ms per payment": unstaged_ms,
                "sim-direct payments/s": theirs.rate,
                "sim-direct to final p50 ms": 1000 * _pct(theirs.latencies_s, 50),
                "sim alone, payments per sim CPU-second": sim_alone,
                "vnode payments not succeeded": sum(mine.finals.values()) - mine.succeeded,
                "audit clean (1 = yes)": 1.0 if clean else 0.0,
                "other programs during vnode run, cores": via_vnode[1].foreign_user
                / max(mine.seconds, 1e-9),
            },
            ("vnode/sim-direct", ratio),
            postgres=pg_version,
        )
    finally:
        with console.status("stopping"):
            if running is not None:
                running.stop()
            if sim is not None:
                sim.stop()
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    typer.run(main)
