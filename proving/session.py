"""One proving run, soak or chaos: the stage up, users funded, the load at its offered rate
(with a controller making trouble meanwhile, for chaos), then the faults stopped, the load's
payments followed until final, the ledger checked against the client's books, and the audit."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from rich.console import Console

from proving.load import LoadGenerator, LoadOptions, Targets
from proving.report import RunResult, machine_summary, op_figures, verdict
from proving.stage import STREAM_KEY, Stage, StageOptions
from proving.verify import check_ledger, resolve_unknown_inbound, wait_settled

# Every kind of operation must have succeeded at least once for a run to count.
REQUIRED_OPS = [
    "transfer",
    "replay",
    "sendpayment",
    "lninvoice",
    "lnurl_callback",
    "lndhub_auth",
    "lndhub_payinvoice",
    "lndhub_addinvoice",
    "lndhub_balance",
    "lndhub_gettxs",
    "assetbalance",
    "balances",
    "history",
]


class Controller(Protocol):
    """Makes trouble while the load runs (chaos); `calm` ends it and brings everything up."""

    kills: int
    restarts: int
    faults: dict[str, int]

    async def run(self) -> None: ...

    async def calm(self) -> None: ...


ControllerFactory = Callable[[Stage, Targets, LoadGenerator], Controller]
# More end checks, after the audit and before the stage stops (`make ha`: the replicas).
ExtraChecks = Callable[[Stage, RunResult], Awaitable[None]]


@dataclass
class SessionOptions:
    kind: str
    load: LoadOptions
    stage: StageOptions = field(default_factory=StageOptions)
    settle_timeout_s: float = 60.0
    progress_every_s: float = 5.0
    required_ops: list[str] = field(default_factory=lambda: list(REQUIRED_OPS))
    extra_checks: ExtraChecks | None = None


async def run_session(
    options: SessionOptions, console: Console, make_controller: ControllerFactory | None = None
) -> RunResult:
    began = time.monotonic()
    load_options = options.load
    result = RunResult(
        kind=options.kind,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        machine=machine_summary(),
        postgres="",
        duration_s=load_options.duration_s,
        offered_rate=load_options.rate,
        users=load_options.users,
        seed=load_options.seed,
    )
    stage = Stage(options.stage)
    try:
        with console.status("starting PostgreSQL, vnode sim serve and two vnode serve processes"):
            await stage.start()
        result.postgres = stage.postgres_version
        console.print(
            f"{options.kind}: PostgreSQL {stage.postgres_version}, sim at "
            f"{stage.sim_url}, vnode at {', '.join(s.url for s in stage.serves)}"
            + (", redis-server on" if stage.redis else "")
            + f"; {result.machine}"
            + (f"; logs kept in {stage.workdir}" if options.stage.keep_workdir else ""),
            highlight=False,
        )
        targets = Targets([s.url for s in stage.serves])
        async with LoadGenerator(
            load_options, targets, stage.sim_url, stage.keys, stage.admin_key
        ) as load:
            await _load_and_settle(options, console, stage, targets, load, make_controller, result)
    finally:
        await stage.close()
    result.wall_s = round(time.monotonic() - began, 1)
    verdict(result, options.required_ops)
    return result


async def _load_and_settle(
    options: SessionOptions,
    console: Console,
    stage: Stage,
    targets: Targets,
    load: LoadGenerator,
    make_controller: ControllerFactory | None,
    result: RunResult,
) -> None:
    with console.status(f"funding {options.load.users} users"):
        await load.fund()
    controller = make_controller(stage, targets, load) if make_controller else None
    trouble = asyncio.create_task(controller.run()) if controller else None

    def progress(elapsed_s: float) -> None:
        line = (
            f"[{elapsed_s:4.0f}s] requests {load.stats.requests:,} errors "
            f"{load.stats.errors:,} 5xx {len(load.stats.forbidden_server_errors)} "
            f"unknown {sum(1 for e in load.stats.server_errors if e.unknown_outcome)} "
            f"in flight {load.in_flight} late {load.stats.late_starts}"
        )
        if controller is not None:
            line += f" kills {controller.kills} faults {sum(controller.faults.values())}"
        console.print(line, highlight=False)

    try:
        seconds = await load.run(progress, options.progress_every_s)
    finally:
        if trouble is not None:
            trouble.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await trouble
    load_ended = time.monotonic()
    if controller is not None:
        with console.status("faults stopped: bringing every process up"):
            await controller.calm()
    with console.status("following every payment until final"):
        await load.drain(options.settle_timeout_s)
        await resolve_unknown_inbound(load)
        remaining = max(5.0, options.settle_timeout_s - (time.monotonic() - load_ended))
        result.settled = await wait_settled(stage.database.dsn, load.model, remaining)
        result.settle_s = round(time.monotonic() - load_ended, 1)
    with console.status("checking the ledger against the client's books"):
        findings = await check_ledger(stage.database.dsn, load)
    if stage.redis is not None:
        length = stage.redis.stream_length(STREAM_KEY)
        findings.facts["events_in_redis_stream"] = -1 if length is None else length
    with console.status("vnode audit"):
        audit = await stage.audit()
    if stage.memory is not None:
        await stage.memory.stop()
        result.peak_rss_mib = {
            name: round(kib / 1024, 1) for name, kib in stage.memory.peak_kib.items()
        }
    _fill(result, load, seconds, findings.facts, findings.problems)
    result.logged_errors = dict(stage.logged_errors())
    result.audit_clean, result.audit_verdict = audit.clean, audit.verdict
    if not audit.clean:
        console.print(audit.output[-4000:], highlight=False)
    if controller is not None:
        result.kills, result.restarts = controller.kills, controller.restarts
        result.faults = dict(controller.faults)
    if options.extra_checks is not None:
        with console.status("more end checks"):
            await options.extra_checks(stage, result)


def _fill(
    result: RunResult,
    load: LoadGenerator,
    seconds: float,
    facts: dict[str, int],
    problems: list[str],
) -> None:
    stats = load.stats
    result.duration_s = round(seconds, 1)
    result.requests = stats.requests
    result.throughput_per_s = round(stats.requests / seconds, 1) if seconds else 0.0
    result.late_starts = stats.late_starts
    result.max_late_ms = round(1000 * stats.max_late_s, 1)
    result.ops = op_figures(stats, seconds)
    result.outside_ops = op_figures(load.sim_stats, seconds)
    result.errors_by_code = dict(stats.errors_by_code)
    result.server_errors = [
        f"{e.op} {e.status} {e.code} (request {e.request_id})"
        for e in stats.forbidden_server_errors
    ]
    result.allowed_503 = sum(1 for e in stats.server_errors if e.allowed and not e.unknown_outcome)
    result.unknown_outcome_5xx = sum(1 for e in stats.server_errors if e.unknown_outcome)
    result.facts = facts
    result.problems = problems
