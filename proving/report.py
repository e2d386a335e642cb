"""A proving run's result: figures, verdict and reasons; as rich tables and as JSON."""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.table import Table

from proving.model import Stats


@dataclass
class OpFigures:
    op: str
    requests: int
    ok: int
    errors: int
    per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float


@dataclass
class RunResult:
    kind: str  # soak | chaos | ha
    started_at: str
    machine: str
    postgres: str
    duration_s: float
    offered_rate: float
    users: int
    seed: int
    requests: int = 0
    throughput_per_s: float = 0.0
    late_starts: int = 0
    max_late_ms: float = 0.0
    ops: list[OpFigures] = field(default_factory=list)
    outside_ops: list[OpFigures] = field(default_factory=list)
    errors_by_code: dict[str, int] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)
    allowed_503: int = 0
    # 5xx answers whose effect was unknown (`make ha`: during a failover), each resent with its
    # Idempotency-Key until an answer said what happened
    unknown_outcome_5xx: int = 0
    # `make ha`: the failover's figures (seconds, or 1/0), checked by proving/ha.py's pass rule
    failover: dict[str, float] = field(default_factory=dict)
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    kills: int = 0
    restarts: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    settle_s: float = 0.0
    settled: bool = False
    audit_clean: bool = False
    audit_verdict: str = ""
    facts: dict[str, int] = field(default_factory=dict)
    logged_errors: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    passed: bool = False
    reasons: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=_nan_to_none)

    def write_json(self, path: Path) -> None:
        path.write_text(self.to_json() + "\n")


def _nan_to_none(value: object) -> object:
    return None if isinstance(value, float) and math.isnan(value) else str(value)


def make_console() -> Console:
    """Rich's console; 110 columns when the output is a file or a pipe (CI logs, make)."""
    return Console(width=None if sys.stdout.isatty() else 110)


def machine_summary() -> str:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} vCPU, {mem_gib:.1f} GiB, Python {sys.version.split()[0]}"


def op_figures(stats: Stats, seconds: float) -> list[OpFigures]:
    return [
        OpFigures(
            name,
            len(s.latencies_s),
            s.ok,
            s.errors,
            round(len(s.latencies_s) / seconds, 2) if seconds else 0.0,
            round(s.percentile_ms(50), 1),
            round(s.percentile_ms(99), 1),
            round(s.max_ms, 1),
        )
        for name, s in sorted(stats.ops.items())
    ]


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.1f}"


def _ops_table(title: str, ops: list[OpFigures]) -> Table:
    table = Table(title=title)
    for column in ("operation", "requests", "ok", "errors", "per s", "p50 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="left" if column == "operation" else "right")
    for o in ops:
        table.add_row(
            o.op,
            f"{o.requests:,}",
            f"{o.ok:,}",
            f"{o.errors:,}",
            f"{o.per_s:,.1f}",
            _ms(o.p50_ms),
            _ms(o.p99_ms),
            _ms(o.max_ms),
        )
    return table


def print_result(result: RunResult, console: Console) -> None:
    console.print(
        _ops_table(
            f"{result.kind}: {result.duration_s:.0f} s at {result.offered_rate:g} req/s offered, "
            f"{result.users} users; {result.requests:,} requests to vnode, "
            f"{result.throughput_per_s:,.1f}/s",
            result.ops,
        )
    )
    if result.outside_ops:
        console.print(_ops_table("the outside world (sim control API)", result.outside_ops))
    errors = Table(title="errors by code (vnode answers and transport errors)")
    errors.add_column("code")
    errors.add_column("count", justify="right")
    for code, count in sorted(result.errors_by_code.items(), key=lambda kv: -kv[1]):
        errors.add_row(code, f"{count:,}")
    if not result.errors_by_code:
        errors.add_row("none", "0")
    console.print(errors)
    figures = Table(title="run")
    figures.add_column("figure")
    figures.add_column("value", justify="right")
    for name, mib in sorted(result.peak_rss_mib.items()):
        figures.add_row(f"peak RSS {name}", f"{mib:,.0f} MiB")
    figures.add_row(
        "late starts (> 100 ms) / max lateness",
        f"{result.late_starts:,} / {result.max_late_ms:,.0f} ms",
    )
    if result.kind == "chaos":
        figures.add_row("SIGKILLs / restarts", f"{result.kills} / {result.restarts}")
        figures.add_row(
            "sim faults injected",
            ", ".join(f"{k} {v}" for k, v in sorted(result.faults.items())) or "0",
        )
        figures.add_row("503 node_unavailable (node locked: allowed)", f"{result.allowed_503:,}")
    if result.kind == "ha":
        figures.add_row(
            "5xx answers of unknown outcome (resent with the same key)",
            f"{result.unknown_outcome_5xx:,}",
        )
        for name, value in result.failover.items():
            figures.add_row(name.replace("_", " "), f"{value:g}")
    figures.add_row(
        "settled after the load", f"{'yes' if result.settled else 'NO'} ({result.settle_s:.1f} s)"
    )
    for name, value in sorted(result.facts.items()):
        figures.add_row(name.replace("_", " "), f"{value:,}")
    figures.add_row("vnode audit", result.audit_verdict)
    console.print(figures)
    if result.logged_errors:
        logged = Table(title="errors in the vnode serve logs (not part of the verdict)")
        logged.add_column("logger: message (exception)")
        logged.add_column("lines", justify="right")
        for text, count in sorted(result.logged_errors.items(), key=lambda kv: -kv[1]):
            logged.add_row(text, f"{count:,}")
        console.print(logged)
    for problem in result.problems[:40]:
        console.print(f"[red]problem:[/] {problem}", highlight=False)
    if result.passed:
        console.print(
            f"[bold green]PASS[/] {result.kind}: "
            + ("every unknown outcome resolved, " if result.kind == "ha" else "no 5xx, ")
            + "every accepted request in the ledger exactly once, every refused one left "
            "nothing, audit clean"
        )
    else:
        console.print(
            f"[bold red]FAIL[/] {result.kind}: " + "; ".join(result.reasons), highlight=False
        )


def verdict(result: RunResult, required_ops: list[str]) -> None:
    """Fill `passed` and `reasons` from the figures (the pass rule, in one place)."""
    reasons = []
    if result.server_errors:
        reasons.append(
            f"{len(result.server_errors)} answer(s) 5xx: " + ", ".join(result.server_errors[:5])
        )
    if result.problems:
        reasons.append(f"{len(result.problems)} ledger problem(s), first: {result.problems[0]}")
    if not result.settled:
        reasons.append(f"payments not all final {result.settle_s:.0f} s after the load")
    if not result.audit_clean:
        reasons.append(f"vnode audit: {result.audit_verdict}")
    succeeded = {o.op: o.ok for o in result.ops}
    idle = [op for op in required_ops if not succeeded.get(op)]
    if idle:
        reasons.append("no successful " + ", ".join(idle))
    if result.kind == "chaos" and result.kills == 0:
        reasons.append("no process was killed")
    result.reasons = reasons
    result.passed = not reasons


def check_load(duration_s: float, rate: float, users: int) -> None:
    """The command line's load options, as soak and chaos take them."""
    if rate <= 0 or duration_s <= 0 or users < 2:
        raise typer.BadParameter("--rate and --duration must be positive, --users at least 2")


def finish(result: RunResult, json_path: Path | None, console: Console) -> NoReturn:
    """The end of a soak or chaos command: the JSON if asked, the report (PASS or FAIL last),
    and the exit code (1 on FAIL)."""
    if json_path is not None:
        result.write_json(json_path)
    print_result(result, console)
    raise typer.Exit(0 if result.passed else 1)
