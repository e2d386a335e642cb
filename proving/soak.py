"""`make soak`: two `vnode serve` processes on one database and the simulated node, a mixed load
at a fixed offered rate for a set time, then the ledger checked against the client's books and
`vnode audit`. PASS: no 5xx, every accepted request in the ledger exactly once, every refused
one left nothing, every payment final, audit clean. Exit code 1 on FAIL.

    .venv/bin/python -m proving.soak --duration 60 --rate 50 --users 100 --json soak.json
"""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console

from harness.options import JsonOut, Keep, LoadSeconds, LoadUsers, Rate, Seed, WithRedis
from proving.load import LoadOptions
from proving.report import RunResult, check_load, finish, make_console
from proving.session import SessionOptions, run_session
from proving.stage import StageOptions


def soak_options(
    *,
    duration_s: float = 60.0,
    rate: float = 50.0,
    users: int = 100,
    seed: int = 1,
    server_dsn: str | None = None,
    redis: bool = True,
    settle_timeout_s: float = 60.0,
    keep_workdir: bool = False,
) -> SessionOptions:
    return SessionOptions(
        kind="soak",
        load=LoadOptions(rate=rate, duration_s=duration_s, users=users, seed=seed),
        stage=StageOptions(server_dsn=server_dsn, redis=redis, keep_workdir=keep_workdir),
        settle_timeout_s=settle_timeout_s,
    )


async def run_soak(options: SessionOptions, console: Console | None = None) -> RunResult:
    return await run_session(options, console or make_console())


def main(
    duration: LoadSeconds = 60.0,
    rate: Rate = 50.0,
    users: LoadUsers = 100,
    seed: Seed = 1,
    json_path: JsonOut = None,
    redis: WithRedis = True,
    keep: Keep = False,
) -> None:
    """A mixed load on two vnode processes; PASS/FAIL on the ledger and the audit."""
    check_load(duration, rate, users)
    console = make_console()
    options = soak_options(
        duration_s=duration, rate=rate, users=users, seed=seed, redis=redis, keep_workdir=keep
    )
    finish(asyncio.run(run_soak(options, console)), json_path, console)


if __name__ == "__main__":
    typer.run(main)
