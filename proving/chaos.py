"""`make chaos`: the soak's load while a controller SIGKILLs and restarts one `vnode serve`
process after another, and makes the simulated node drop connections, time out, answer 500,
fail or hold payments, and lock and unlock itself. Same pass rule as the soak, plus every
payment final once the faults stop; a 503 node_unavailable (the documented "node locked,
nothing moved") is the only 5xx allowed. Exit code 1 on FAIL.

    .venv/bin/python -m proving.chaos --duration 60 --rate 50 --kill-every 10 --json chaos.json
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import typer
from rich.console import Console

from harness.options import JsonOut, Keep, LoadSeconds, LoadUsers, Rate, Seed, WithRedis
from harness.waits import wait_until
from proving.load import LoadGenerator, LoadOptions, Targets
from proving.report import RunResult, check_load, finish, make_console
from proving.session import SessionOptions, run_session
from proving.stage import Stage, StageOptions

# The node's next /sendpayment: cut without an answer, answered after vnode gave up, answered
# 500; or the payment fails or hangs until released. Each but `fail` leaves vnode not knowing.
PAYMENT_FAULTS = (
    "drop_then_succeed",
    "timeout_then_succeed",
    "error_500_then_succeed",
    "fail",
    "hold",
)
# vnode gives up on a node call after NODE_TIMEOUT_S; the sim's timeout fault hangs longer.
NODE_TIMEOUT_S = 3.0
SIM_HANG_S = 5.0
IN_FLIGHT_WAIT_S = 2.0


@dataclass
class ChaosOptions:
    kill_every_s: float = 10.0
    fault_every_s: float = 1.5
    lock_every_s: float = 12.0
    lock_s: float = 2.0
    seed: int = 1


class ChaosController:
    """Kills one process at a time (the load balancer is told at the kill, as a health check
    would), restarts it on the same port; sets a payment fault now and then; locks the node."""

    def __init__(
        self, stage: Stage, targets: Targets, load: LoadGenerator, options: ChaosOptions
    ) -> None:
        self.stage = stage
        self.targets = targets
        self.load = load
        self.options = options
        self.rng = random.Random(options.seed)
        self.kills = 0
        self.restarts = 0
        self.faults: dict[str, int] = Counter()

    async def run(self) -> None:
        await asyncio.gather(self._kills(), self._payment_faults(), self._locks())

    async def _kills(self) -> None:
        """A kill every `kill_every_s` on the clock (later only if the last restart is slow),
        preferably while the victim has money requests in flight, so that answers are lost."""
        started = time.monotonic()
        for turn in itertools.count():
            next_kill = started + (turn + 1) * self.options.kill_every_s
            await asyncio.sleep(max(0.0, next_kill - time.monotonic()))
            index = turn % len(self.stage.serves)
            serve = self.stage.serves[index]
            with contextlib.suppress(TimeoutError):
                await wait_until(
                    self._busy(index), IN_FLIGHT_WAIT_S, "a money request in flight", period_s=0.005
                )
            self.targets.set_up(index, False)
            serve.kill()
            self.kills += 1
            await asyncio.to_thread(serve.process.wait, 10.0)
            serve.start()
            self.restarts += 1
            # Serving is enough: while the node is locked a process is up but not "ready".
            await serve.wait_ready(90.0, path="/healthz")
            self.targets.set_up(index, True)

    def _busy(self, index: int) -> Callable[[], bool]:
        return lambda: self.targets.money_in_flight[index] > 0

    async def _payment_faults(self) -> None:
        while True:
            await asyncio.sleep(self.options.fault_every_s)
            fault = self.rng.choice(PAYMENT_FAULTS)
            await self.load.sim_call("faults", "/_sim/faults", {"next_payment": fault})
            self.faults[fault] += 1

    async def _locks(self) -> None:
        while True:
            await asyncio.sleep(max(0.0, self.options.lock_every_s - self.options.lock_s))
            await self.load.sim_call("faults", "/_sim/faults", {"locked": True})
            self.faults["lock"] += 1
            try:
                await asyncio.sleep(self.options.lock_s)
            finally:
                # Unlock even when cancelled mid-lock (calm() unlocks again anyway).
                await self.load.sim_call("faults", "/_sim/faults", {"locked": False})

    async def calm(self) -> None:
        """No more faults; every process running and ready."""
        await self.load.sim_call("faults", "/_sim/faults", {"locked": False, "next_payment": None})
        for index, serve in enumerate(self.stage.serves):
            if serve.pid is None:
                serve.start()
                self.restarts += 1
            await serve.wait_ready(90.0)
            self.targets.set_up(index, True)


def chaos_options(
    *,
    duration_s: float = 60.0,
    rate: float = 50.0,
    users: int = 100,
    seed: int = 1,
    server_dsn: str | None = None,
    redis: bool = True,
    invoice_expiry_s: int = 30,
    settle_timeout_s: float = 90.0,
    keep_workdir: bool = False,
) -> SessionOptions:
    return SessionOptions(
        kind="chaos",
        # Short invoice expiry: a payment the node never saw (killed between reserve and
        # send) is refunded only once its invoice expired, and must be, before the deadline.
        load=LoadOptions(
            rate=rate,
            duration_s=duration_s,
            users=users,
            seed=seed,
            invoice_expiry_s=invoice_expiry_s,
            allow_node_unavailable=True,
        ),
        stage=StageOptions(
            server_dsn=server_dsn,
            redis=redis,
            sim_hang_s=SIM_HANG_S,
            keep_workdir=keep_workdir,
            serve_env={"VNODE_NODE_TIMEOUT_S": str(NODE_TIMEOUT_S)},
        ),
        settle_timeout_s=settle_timeout_s,
    )


async def run_chaos(
    options: SessionOptions, chaos: ChaosOptions, console: Console | None = None
) -> RunResult:
    def controller(stage: Stage, targets: Targets, load: LoadGenerator) -> ChaosController:
        return ChaosController(stage, targets, load, chaos)

    return await run_session(options, console or make_console(), controller)


def main(
    duration: LoadSeconds = 60.0,
    rate: Rate = 50.0,
    users: LoadUsers = 100,
    seed: Seed = 1,
    kill_every: Annotated[
        float, typer.Option(help="Seconds between two SIGKILLs (of each process in turn)")
    ] = 10.0,
    fault_every: Annotated[
        float, typer.Option(help="Seconds between two payment faults of the node")
    ] = 1.5,
    lock_every: Annotated[float, typer.Option(help="Seconds between two node locks")] = 12.0,
    lock_for: Annotated[float, typer.Option(help="Seconds each lock lasts")] = 2.0,
    invoice_expiry: Annotated[
        int,
        typer.Option(
            help="Expiry of the outside invoices users pay (a payment the node never saw is "
            "refunded only after it)"
        ),
    ] = 30,
    settle_timeout: Annotated[
        float,
        typer.Option(help="Seconds after the faults stop within which every payment must be final"),
    ] = 90.0,
    json_path: JsonOut = None,
    redis: WithRedis = True,
    keep: Keep = False,
) -> None:
    """The soak's load under SIGKILLs and node faults; PASS/FAIL on the ledger and the audit."""
    check_load(duration, rate, users)
    if kill_every <= 0:
        raise typer.BadParameter("--kill-every must be positive")
    console = make_console()
    options = chaos_options(
        duration_s=duration,
        rate=rate,
        users=users,
        seed=seed,
        redis=redis,
        invoice_expiry_s=invoice_expiry,
        settle_timeout_s=settle_timeout,
        keep_workdir=keep,
    )
    chaos = ChaosOptions(
        kill_every_s=kill_every,
        fault_every_s=fault_every,
        lock_every_s=lock_every,
        lock_s=lock_for,
        seed=seed,
    )
    finish(asyncio.run(run_chaos(options, chaos, console)), json_path, console)


if __name__ == "__main__":
    typer.run(main)
