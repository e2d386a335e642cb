"""`make bench`: every benchmark in bench/, several runs each, summarised in
docs/PERFORMANCE.md.

    python bench/run.py                              # 3 rounds, then the scale run: ~1 hour
    python bench/run.py --only transfers,balances,payments,proofs,sweep,events  # no scale
    python bench/run.py --runs 5 --only transfers,balances
    python bench/run.py --quick --runs 2             # 5-second runs: checks the plumbing only
    python bench/run.py --no-write                   # print the summary, leave the doc alone

Each benchmark script runs as its own process with `--json FILE`, in rounds (every benchmark
once, then again), so that a slow drift of the machine touches them all alike. `bench/scale.py`
(a million users, a 10-minute mixed load: about 25 minutes) runs once, in the first round only:
its figures are each measured against an empty database in that same run. For every figure
a script reports, the summary gives the median of the runs with the lowest and highest value;
the ratio against the reference is computed inside each run (vnode and its reference measured
one after the other on the same machine), and summarised the same way.

The summary replaces what stands between `<!-- bench:begin -->` and `<!-- bench:end -->` in
docs/PERFORMANCE.md (inserted before the first section when the markers are missing); the
hand-written analysis around it is left alone. Every run's full output is kept in a log file
whose directory is printed at the end. The exit code is 1 when a run failed.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
console = Console()
NOISE_CORES = 0.05  # other programs' CPU during a measurement above which figures are low


@dataclass(frozen=True)
class Benchmark:
    name: str
    script: str
    title: str
    quick: tuple[str, ...]  # options of a --quick run: short, for checking the plumbing
    max_runs: int | None = None  # at most this many runs, whatever --runs says


BENCHMARKS = (
    Benchmark(
        "transfers",
        "transfers.py",
        "Internal transfers against pgbench `transfer.sql`",
        ("--duration", "5", "--warmup", "1", "--users", "200"),
    ),
    Benchmark(
        "balances",
        "balances.py",
        "Balance reads against pgbench `SELECT balance`",
        ("--duration", "5", "--warmup", "1", "--users", "200"),
    ),
    Benchmark(
        "payments",
        "payments.py",
        "External payments against the simulated node alone",
        ("--duration", "5", "--users", "50", "--invoices", "1500"),
    ),
    Benchmark(
        "proofs",
        "proofs.py",
        "A proof-of-liabilities epoch of 1,000,000 users against COPY of their balances",
        ("--users", "20000"),
    ),
    Benchmark(
        "sweep",
        "sweep.py",
        "Transfers against clients 1 to 256, vnode and pgbench `transfer.sql`",
        ("--duration", "3", "--warmup", "1", "--users", "200", "--clients", "1,8,64"),
    ),
    Benchmark(
        "events",
        "events.py",
        "Event delivery under the transfer load",
        ("--duration", "5", "--users", "200", "--drain-timeout", "60"),
    ),
    Benchmark(
        "scale",
        "scale.py",
        "A million users and ten million history rows against an empty database",
        ("--users", "20000", "--history", "200000", "--duration", "5", "--minutes", "0.2"),
        max_runs=1,
    ),
)


@dataclass
class Results:
    benchmark: Benchmark
    runs: list[dict[str, Any]] = field(default_factory=list)  # the scripts' JSON documents
    failed: list[Path] = field(default_factory=list)  # logs of the runs that failed

    def figure_names(self) -> list[str]:
        names: dict[str, None] = {}
        for run in self.runs:
            names.update(dict.fromkeys(run["figures"]))
        return list(names)

    def values(self, figure: str) -> list[float]:
        return [
            run["figures"][figure] for run in self.runs if run["figures"].get(figure) is not None
        ]

    def ratios(self) -> list[float]:
        return [run["ratio"]["value"] for run in self.runs]

    def noise(self) -> float:
        """The most CPU other programs used during one of the measurements, in cores."""
        return max(
            (
                value
                for run in self.runs
                for name, value in run["figures"].items()
                if name.startswith("other programs") and value is not None
            ),
            default=0.0,
        )


def run_one(benchmark: Benchmark, number: int, quick: bool, logs: Path) -> dict[str, Any] | None:
    """One run of one script; its JSON document, or None when it failed (see its log)."""
    figures = logs / f"{benchmark.name}-{number}.json"
    command = [
        sys.executable,
        str(HERE / benchmark.script),
        "--json",
        str(figures),
        *(benchmark.quick if quick else ()),
    ]
    with (logs / f"{benchmark.name}-{number}.log").open("wb") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, check=False)
    if done.returncode != 0 or not figures.exists():
        return None
    document: dict[str, Any] = json.loads(figures.read_text())
    return document


def run_all(benchmarks: list[Benchmark], runs: int, quick: bool, logs: Path) -> list[Results]:
    results = [Results(b) for b in benchmarks]
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("benchmarks", total=sum(_runs(b, runs) for b in benchmarks))
        for number in range(1, runs + 1):
            for result in results:
                if number > _runs(result.benchmark, runs):
                    continue
                name = result.benchmark.name
                progress.update(task, description=f"{name}, run {number} of {runs}")
                started = time.monotonic()
                document = run_one(result.benchmark, number, quick, logs)
                took = time.monotonic() - started
                if document is None:
                    result.failed.append(logs / f"{name}-{number}.log")
                    progress.console.print(
                        f"[red]{name} run {number} failed ({took:.0f}s); see {result.failed[-1]}[/]"
                    )
                else:
                    result.runs.append(document)
                    ratio = document["ratio"]
                    progress.console.print(
                        f"{name} run {number}: ratio {ratio['name']} "
                        f"{ratio['value']:.2f} ({took:.0f}s)"
                    )
                progress.advance(task)
    return results


def _runs(benchmark: Benchmark, runs: int) -> int:
    return min(runs, benchmark.max_runs or runs)


# --------------------------------------------------------------------------------------------
# The summary


def _number(value: float) -> str:
    if float(value).is_integer() and abs(value) < 100:
        return str(int(value))  # counts, and a p50 that happens to be whole
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _spread(values: list[float], digits: str = "") -> tuple[str, str, str]:
    show = (lambda v: f"{v:{digits}}") if digits else _number
    return show(statistics.median(values)), show(min(values)), show(max(values))


def markdown(results: list[Results], runs: int, quick: bool) -> str:
    first = next((r.runs[0] for r in results if r.runs), None)
    machine = first["machine"] if first else {}
    postgres = first["postgres"] if first else "?"
    lines = [
        "## Summary of the last `make bench` (generated by `bench/run.py`)",
        "",
        _wrap(
            f"Run on {datetime.now(UTC).date().isoformat()} on {machine.get('cpus', '?')} "
            f"CPUs ({machine.get('cpu', '?')}), {machine.get('memory_gib', '?')} GiB RAM, "
            f"PostgreSQL {postgres} (embedded), Python {machine.get('python', '?')}; commit "
            f"{_commit()}. Each figure is the median of {runs} runs, with the lowest and "
            "highest value; each run measures vnode and its reference one after the other on "
            "the same machine and computes its ratio, summarised the same way. This section "
            "is rewritten by every `make bench`; the analysis below is written by hand. "
            "The scale benchmark runs once (its figures are from one run)."
        ),
        "",
    ]
    if quick:
        lines += [
            _wrap(
                "**Quick run** (`bench/run.py --quick`: 5-second measurements) on a "
                "machine shared with other work. These figures only show that every "
                "benchmark runs end to end; they are not a measurement. Run "
                "`make bench` on a quiet machine for figures to quote.",
                "> ",
            ),
            "",
        ]
    for result in results:
        lines += _section(result, _runs(result.benchmark, runs))
    return "\n".join(lines).rstrip() + "\n"


def _section(result: Results, runs: int) -> list[str]:
    lines = [f"### {result.benchmark.title}: `bench/{result.benchmark.script}`", ""]
    if not result.runs:
        return [*lines, f"Every run failed ({len(result.failed)}); no figures.", ""]
    lines += ["| figure | median | min | max | runs |", "|---|---:|---:|---:|---:|"]
    for name in result.figure_names():
        values = result.values(name)
        if values:
            lines.append(f"| {name} | {' | '.join(_spread(values))} | {len(values)} |")
    ratios = result.ratios()
    median, low, high = _spread(ratios, ".2f")
    lines += [
        "",
        f"**ratio {result.runs[0]['ratio']['name']}: {median}** (median of "
        f"{len(ratios)}; min {low}, max {high})",
        "",
    ]
    if result.failed:
        lines += [f"{len(result.failed)} of {runs} runs failed and are not counted.", ""]
    if result.noise() > NOISE_CORES:
        lines += [
            f"Other programs used up to {result.noise():.2f} cores during a measurement: "
            "the rates are low.",
            "",
        ]
    return lines


def _wrap(text: str, prefix: str = "") -> str:
    return textwrap.fill(
        text, width=100, initial_indent=prefix, subsequent_indent=prefix, break_on_hyphens=False
    )


def _commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def rewrite(doc: Path, section: str) -> None:
    """Replace the generated block, or insert it before the first `## ` section."""
    text = doc.read_text()
    block = f"{BEGIN}\n{section}{END}\n"
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        after = rest.split(END, 1)[1].removeprefix("\n")
        text = before + block + after
    else:
        at = text.find("\n## ")
        text = (text + "\n" + block) if at < 0 else (text[: at + 1] + block + "\n" + text[at + 1 :])
    doc.write_text(text)


def print_summary(results: list[Results]) -> None:
    for result in results:
        table = Table(
            title=f"{result.benchmark.name}: {len(result.runs)} run(s)"
            + (f", {len(result.failed)} failed" if result.failed else "")
        )
        for column in ("figure", "median", "min", "max"):
            table.add_column(column, justify="left" if column == "figure" else "right")
        for name in result.figure_names():
            values = result.values(name)
            if values:
                table.add_row(name, *_spread(values))
        if result.runs:
            table.add_row(
                f"[bold]ratio {result.runs[0]['ratio']['name']}[/]",
                *_spread(result.ratios(), ".2f"),
            )
        console.print(table)


def main(
    runs: Annotated[int, typer.Option(help="Runs of each benchmark")] = 3,
    only: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated benchmarks: transfers, balances, payments, proofs, sweep, "
            "events, scale"
        ),
    ] = None,
    quick: Annotated[
        bool,
        typer.Option(
            help="5-second measurements: checks that everything runs; the figures mean little"
        ),
    ] = False,
    doc: Annotated[
        Path, typer.Option(help="The document whose generated section is rewritten")
    ] = REPO / "docs" / "PERFORMANCE.md",
    write: Annotated[bool, typer.Option(help="Rewrite the section in --doc")] = True,
) -> None:
    """Run every benchmark --runs times and summarise them in docs/PERFORMANCE.md."""
    names = [n.strip() for n in only.split(",")] if only else [b.name for b in BENCHMARKS]
    unknown = set(names) - {b.name for b in BENCHMARKS}
    if unknown or runs < 1:
        raise typer.BadParameter(f"unknown benchmark(s) {sorted(unknown)} or --runs < 1")
    benchmarks = [b for b in BENCHMARKS if b.name in names]
    logs = Path(tempfile.mkdtemp(prefix="vnode-bench-run-"))
    results = run_all(benchmarks, runs, quick, logs)
    print_summary(results)
    if write and any(r.runs for r in results):
        rewrite(doc, markdown(results, runs, quick))
        console.print(f"rewrote the generated section of {doc}")
    console.print(f"every run's output: {logs}")
    if any(r.failed for r in results):
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
