"""`make soak`: two `vnode serve` processes on one database and the simulated node, a mixed load
at a fixed offered rate for a set time, then the ledger checked against the client's books and
`vnode audit`. PASS: no 5xx, every accepted request in the ledger exactly once, every refused
one left nothing, every payment final, audit clean. Exit code 1 on FAIL.

    .venv/bin/python -m proving.soak --duration 60 --rate 50 --users 100 --json soak.json
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from proving.harness import StageOptions
from proving.load import LoadOptions
from proving.report import RunResult, make_console, print_result
from proving.session import SessionOptions, run_session


def soak_options(*, duration_s: float = 60.0, rate: float = 50.0, users: int = 100,
                 seed: int = 1, server_dsn: str | None = None, redis: bool = True,
                 settle_timeout_s: float = 60.0, keep_workdir: bool = False) -> SessionOptions:
    return SessionOptions(
        kind="soak",
        load=LoadOptions(rate=rate, duration_s=duration_s, users=users, seed=seed),
        stage=StageOptions(server_dsn=server_dsn, redis=redis, keep_workdir=keep_workdir),
        settle_timeout_s=settle_timeout_s)


async def run_soak(options: SessionOptions, console: Console | None = None) -> RunResult:
    return await run_session(options, console or make_console())


def main(
    duration: Annotated[float, typer.Option(help="Seconds of load")] = 60.0,
    rate: Annotated[float, typer.Option(help="Offered requests per second (all processes)")]
    = 50.0,
    users: Annotated[int, typer.Option(help="Funded users the load moves money between")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the load's random choices")] = 1,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Also write the result as JSON to this file")] = None,
    redis: Annotated[bool, typer.Option(
        help="Run a redis-server for the event stream, when one is installed")] = True,
    keep: Annotated[bool, typer.Option(help="Keep the work directory (logs) after the run")]
    = False,
) -> None:
    """A mixed load on two vnode processes; PASS/FAIL on the ledger and the audit."""
    if rate <= 0 or duration <= 0 or users < 2:
        raise typer.BadParameter("--rate and --duration must be positive, --users at least 2")
    console = make_console()
    options = soak_options(duration_s=duration, rate=rate, users=users, seed=seed, redis=redis,
                           keep_workdir=keep)
    result = asyncio.run(run_soak(options, console))
    if json_path is not None:
        result.write_json(json_path)
    print_result(result, console)
    raise typer.Exit(0 if result.passed else 1)


if __name__ == "__main__":
    typer.run(main)
