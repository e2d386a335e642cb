"""`make ha`: failover under load. The soak's mixed load on two `vnode serve` processes whose one
database endpoint is HAProxy in front of a 3-node Patroni cluster (harness/ha.py: PostgreSQL 18,
synchronous_mode_strict); the primary crashed (Patroni, postmaster and backends SIGKILLed at
once) at 20 s, its Patroni started again so that it rejoins as a replica (pg_rewind), and one
planned switchover later, while the load runs.

Pass rule (docs/RELIABILITY.md): every transfer and payment answered 200/202 in the journal
exactly once, nothing refused booked, every answer of unknown outcome (no answer, a 500 of a
dropped connection, 503 database_unavailable) resolved by a replay with the same key, the audit
clean on the new primary (`vnode audit`) and on every replica (the same checks, read-only);
write outage at most 30 s after the crash and 10 s for the switchover; the old primary
streaming again within 60 s of the crash. Exit code 1 on FAIL.

    .venv/bin/python -m proving.ha --duration 80 --rate 30 --crash-at 20 --json ha.json
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field
from typing import Annotated

import asyncpg
import httpx
import typer
from rich.console import Console

from harness.ha import HACluster, Node, can_write
from harness.options import JsonOut, Keep, LoadSeconds, LoadUsers, Rate, Seed, WithRedis
from harness.waits import wait_until
from proving.load import LoadGenerator, LoadOptions, Targets
from proving.report import RunResult, check_load, finish, make_console
from proving.session import SessionOptions, run_session
from proving.stage import Stage, StageOptions
from vnode.db.dsn import database_of
from vnode.ledger.audit import run_audit

# The offered rate: lower than the soak's 50/s. A crash leaves every request of ~20 s unknown
# at once (about 20 x rate operations, each resent with backoff), and on 2 cores shared with
# three PostgreSQL nodes the load generator's own HTTP client (httpcore's pool, whose cost grows
# with the requests queued on it) became the bottleneck at 50/s, not vnode.
RATE = 30.0
PROBE_EVERY_S = 0.1
PROBE_TIMEOUT_S = 2.0
REPLICA_CATCH_UP_S = 60.0


@dataclass
class FailoverOptions:
    crash_at_s: float = 20.0
    # The switchover comes this long into the load, and not before the crashed node streams
    # again (the cluster whole), so that both events are measured on a healthy cluster.
    switchover_at_s: float = 50.0
    max_crash_outage_s: float = 30.0
    max_switchover_outage_s: float = 10.0
    max_rejoin_s: float = 60.0


@dataclass
class WriteProbe:
    """A committed write through HAProxy's write port every PROBE_EVERY_S, each on a fresh
    connection, as (started, finished, ok): the write outage of an event is the longest gap
    between two successful writes from the last one before the event to the first one started
    after it, as a client that writes all the time would see it."""

    dsn: str
    results: list[tuple[float, float, bool]] = field(default_factory=list)

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            ok = await can_write(self.dsn, PROBE_TIMEOUT_S)
            self.results.append((started, time.monotonic(), ok))
            await asyncio.sleep(max(0.0, PROBE_EVERY_S - (time.monotonic() - started)))

    def outage_s(self, began: float, ended: float) -> float | None:
        """The write outage of an event that ran from `began` to `ended` (a crash: the kill; a
        switchover: the REST call); None while no write started after `ended` has succeeded."""
        after = [done for start, done, ok in self.results if ok and start >= ended]
        if not after:
            return None
        done = [d for _, d, ok in self.results if ok and d <= after[0]]
        before = [d for d in done if d <= began]
        window = [before[-1] if before else began, *(d for d in done if d > began)]
        return round(max(b - a for a, b in itertools.pairwise(window)), 2)

    def written_since(self, ended: float) -> bool:
        return any(ok and start >= ended for start, _, ok in self.results)


class FailoverController:
    """The chaos controller's place in the session: the crash, the rejoin, the switchover."""

    def __init__(self, cluster: HACluster, options: FailoverOptions, console: Console) -> None:
        self.cluster = cluster
        self.options = options
        self.console = console
        self.probe = WriteProbe(cluster.write_dsn())
        self.kills = 0
        self.restarts = 0
        self.faults: dict[str, int] = {}
        self.figures: dict[str, float] = {}
        self.notes: list[str] = []

    async def run(self) -> None:
        probing = asyncio.create_task(self.probe.run())
        try:
            await self._events()
        except (TimeoutError, RuntimeError, httpx.HTTPError) as exc:
            # The cluster did not do what it should (no leader, a refused switchover): a
            # reason to fail, with the load still checked to the end.
            self.notes.append(f"failover: {exc!r}")
        finally:
            probing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probing

    def _say(self, text: str) -> None:
        self.console.print(f"[ha] {text}", highlight=False)

    async def _events(self) -> None:
        started = time.monotonic()
        await asyncio.sleep(self.options.crash_at_s)
        victim = await asyncio.to_thread(self.cluster.leader)
        if victim is None:
            self.notes.append("no leader to crash at the crash time")
            return
        crashed_at = time.monotonic()
        await asyncio.to_thread(self.cluster.crash, victim)
        killed_at = time.monotonic()
        self.kills += 1
        self.faults["primary crash"] = 1
        self._say(f"{time.monotonic() - started:.0f}s: crashed the primary {victim.name}")
        # Its Patroni comes back only once another node leads (a supervisor restarting it at
        # once would find its own leader key still valid and take the lead again).
        new = await asyncio.to_thread(
            self.cluster.wait_leader, self.options.max_crash_outage_s + 30.0, victim.name
        )
        await self._wait_written(killed_at, 30.0)
        outage = self.probe.outage_s(crashed_at, killed_at)
        self.figures["crash_write_outage_s"] = outage if outage is not None else -1.0
        self._say(
            f"{new.name} leads; writes again {outage} s after the last one before the crash; "
            f"starting {victim.name}'s Patroni again"
        )
        await asyncio.to_thread(self.cluster.restart, victim)
        self.restarts += 1
        rejoin = await self._wait_streaming(victim, crashed_at)
        self.figures["old_primary_streaming_after_s"] = rejoin if rejoin is not None else -1.0
        self.figures["old_primary_rewound"] = 1.0 if _rewound(victim) else 0.0
        self._say(f"{victim.name} streaming again {rejoin} s after the crash")
        await asyncio.sleep(max(0.0, started + self.options.switchover_at_s - time.monotonic()))
        await asyncio.to_thread(self.cluster.wait_healthy, 60.0)
        switched_at = time.monotonic()
        old = await asyncio.to_thread(self.cluster.switchover)
        switched = time.monotonic()
        self.faults["switchover"] = 1
        await self._wait_written(switched, self.options.max_switchover_outage_s + 30.0)
        outage = self.probe.outage_s(switched_at, switched)
        self.figures["switchover_write_outage_s"] = outage if outage is not None else -1.0
        leading = await asyncio.to_thread(self.cluster.leader)
        self._say(
            f"{time.monotonic() - started:.0f}s: switchover from {old} to "
            f"{leading.name if leading else '?'}: writes again after {outage} s"
        )

    async def _wait_written(self, since: float, timeout_s: float) -> None:
        """Until the probe wrote after `since` (the figure then says how long it took)."""
        with contextlib.suppress(TimeoutError):
            await wait_until(
                lambda: self.probe.written_since(since), timeout_s, "a write", PROBE_EVERY_S
            )

    async def _wait_streaming(self, node: Node, since: float) -> float | None:
        """Seconds from `since` until `node` streams from the leader; None past the limit."""

        async def streaming() -> bool:
            return await asyncio.to_thread(self.cluster.streaming, node.name)

        timeout_s = since + self.options.max_rejoin_s + 30.0 - time.monotonic()
        try:
            await wait_until(streaming, timeout_s, f"{node.name} to stream", period_s=0.5)
        except TimeoutError:
            return None
        return round(time.monotonic() - since, 1)

    async def calm(self) -> None:
        """Every node's Patroni running, a leader, every replica streaming."""
        for node in self.cluster.nodes:
            if node.process.pid is None:
                await asyncio.to_thread(self.cluster.restart, node)
                self.restarts += 1
        try:
            await asyncio.to_thread(self.cluster.wait_healthy, 120.0)
        except TimeoutError as exc:
            self.notes.append(f"cluster not healthy after the load: {exc}")


def _rewound(node: Node) -> bool:
    """Did Patroni run pg_rewind on `node` (its log says so)?"""
    return "running pg_rewind" in node.process.log()


async def audit_replicas(cluster: HACluster, stage: Stage, result: RunResult) -> None:
    """The audit's checks on each replica, once it has replayed what the primary had written:
    a replica a failover would promote must hold the same books."""
    database = database_of(stage.database.dsn)
    primary = await asyncpg.connect(stage.database.dsn)
    try:
        target = await primary.fetchval("SELECT pg_current_wal_lsn()")
    finally:
        await primary.close()
    leader = await asyncio.to_thread(cluster.leader)
    replicas = [n for n in cluster.nodes if leader is None or n.name != leader.name]
    clean = 0
    for node in replicas:
        conn = await asyncpg.connect(node.dsn(database))
        try:
            deadline = time.monotonic() + REPLICA_CATCH_UP_S
            while not await conn.fetchval("SELECT pg_last_wal_replay_lsn() >= $1", target):
                if time.monotonic() > deadline:
                    result.problems.append(f"replica {node.name} did not catch up with {target}")
                    break
                await asyncio.sleep(0.1)
            report = await run_audit(conn)
        finally:
            await conn.close()
        if report.clean:
            clean += 1
        else:
            result.problems.append(
                f"audit on replica {node.name}: {len(report.differences)} difference(s), "
                f"first {report.differences[0]}"
            )
    result.failover["replicas_audited_clean"] = float(clean)
    result.failover["replicas"] = float(len(replicas))


def failover_reasons(result: RunResult, options: FailoverOptions) -> list[str]:
    """The failover's part of the pass rule."""
    figures = result.failover
    reasons = []
    crash = figures.get("crash_write_outage_s", -1.0)
    if crash < 0 or crash > options.max_crash_outage_s:
        reasons.append(f"write outage after the crash {crash} s (max {options.max_crash_outage_s})")
    switch = figures.get("switchover_write_outage_s", -1.0)
    if switch < 0 or switch > options.max_switchover_outage_s:
        reasons.append(
            f"write outage of the switchover {switch} s (max {options.max_switchover_outage_s})"
        )
    rejoin = figures.get("old_primary_streaming_after_s", -1.0)
    if rejoin < 0 or rejoin > options.max_rejoin_s:
        reasons.append(f"old primary streaming after {rejoin} s (max {options.max_rejoin_s})")
    replicas = figures.get("replicas", 0.0)
    if replicas < 1 or figures.get("replicas_audited_clean") != replicas:
        reasons.append("the audit was not clean on every replica")
    return reasons


def ha_options(
    *,
    duration_s: float = 80.0,
    rate: float = RATE,
    users: int = 100,
    seed: int = 1,
    redis: bool = True,
    settle_timeout_s: float = 90.0,
    keep_workdir: bool = False,
) -> SessionOptions:
    return SessionOptions(
        kind="ha",
        load=LoadOptions(
            rate=rate,
            duration_s=duration_s,
            users=users,
            seed=seed,
            allow_unknown_outcome=True,
        ),
        stage=StageOptions(redis=redis, keep_workdir=keep_workdir),
        settle_timeout_s=settle_timeout_s,
    )


async def run_ha(
    options: SessionOptions,
    failover: FailoverOptions,
    console: Console | None = None,
    keep_cluster: bool = False,
    cluster: HACluster | None = None,
) -> RunResult:
    """The cluster up (or `cluster`, started and later stopped by the caller), then a session
    whose database is a fresh one on it, through HAProxy."""
    console = console or make_console()
    own = cluster is None
    if cluster is None:
        with console.status("starting etcd, three Patroni nodes and HAProxy"):
            cluster = HACluster(keep=keep_cluster)
            began = time.monotonic()
            await asyncio.to_thread(cluster.start)
        console.print(f"ha: cluster up in {time.monotonic() - began:.1f} s", highlight=False)
    console.print(
        f"ha: cluster in {cluster.root}; leader "
        f"{(await asyncio.to_thread(cluster.leader) or cluster.nodes[0]).name}; vnode's "
        f"VNODE_DATABASE_URL is HAProxy's write port {cluster.write_port}",
        highlight=False,
    )
    made: list[FailoverController] = []
    try:
        options.stage.server_dsn = cluster.write_dsn()

        def controller(stage: Stage, targets: Targets, load: LoadGenerator) -> FailoverController:
            made.append(FailoverController(cluster, failover, console))
            return made[-1]

        async def replicas(stage: Stage, result: RunResult) -> None:
            result.failover.update(made[0].figures if made else {})
            await audit_replicas(cluster, stage, result)

        options.extra_checks = replicas
        result = await run_session(options, console, controller)
    finally:
        if own:
            await asyncio.to_thread(cluster.stop)
    result.reasons += failover_reasons(result, failover)
    result.reasons += made[0].notes if made else ["the load never started"]
    result.passed = not result.reasons
    return result


def main(
    duration: LoadSeconds = 80.0,
    rate: Rate = RATE,
    users: LoadUsers = 100,
    seed: Seed = 1,
    crash_at: Annotated[
        float, typer.Option(help="Seconds into the load when the primary is crashed")
    ] = 20.0,
    switchover_at: Annotated[
        float,
        typer.Option(help="Seconds into the load of the planned switchover (after the rejoin)"),
    ] = 50.0,
    json_path: JsonOut = None,
    redis: WithRedis = True,
    keep: Keep = False,
) -> None:
    """The mixed load through a Patroni failover and a switchover; PASS/FAIL."""
    check_load(duration, rate, users)
    if not 0 < crash_at < switchover_at < duration:
        raise typer.BadParameter("need 0 < --crash-at < --switchover-at < --duration")
    console = make_console()
    options = ha_options(
        duration_s=duration, rate=rate, users=users, seed=seed, redis=redis, keep_workdir=keep
    )
    failover = FailoverOptions(crash_at_s=crash_at, switchover_at_s=switchover_at)
    finish(asyncio.run(run_ha(options, failover, console, keep_cluster=keep)), json_path, console)


if __name__ == "__main__":
    typer.run(main)
