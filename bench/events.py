"""Events delivered per second and commit-to-delivery lag, for webhooks and Redis Streams, under
the transfer load.

    python bench/events.py                      # about 80 seconds with the defaults
    python bench/events.py --duration 30 --clients 16

It starts a throwaway embedded PostgreSQL cluster, a `redis-server` (apt-get install -y
redis-server), a minimal webhook receiver (a raw ASGI app under uvicorn, in its own process, that
records when each POST arrived) and `vnode serve` with VNODE_REDIS_URL and
VNODE_WEBHOOK_ALLOW_HOSTS=127.0.0.1, and registers the receiver with `POST /admin/webhooks`
(every event type). It funds --users users, waits until their admin.credit events are
delivered, then drives internal transfers for --duration seconds exactly as bench/transfers.py
does (wrk, or a Python load generator), each transfer committing two events.

Measured, for each channel, over the events the load produced:
- delivered/s while the load ran (webhook: POSTs received; Redis: entries whose stream id,
  Redis's own clock at XADD, falls in the load window), against produced/s (outbox rows);
- commit-to-delivery lag p50/p99: arrival (receiver clock, or the XADD time in the entry id)
  minus the envelope's created_at (PostgreSQL's clock at the transfer's transaction; same machine);
- how long the backlog took to drain after the load stopped.

Printed last, the comparable figure: delivered/s divided by produced/s, for the slower channel
(1.00: delivery keeps up with the transfers; below 1: a backlog builds while the load lasts).
"""

from __future__ import annotations

import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import orjson
import redis
import typer
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
import transfers

from harness.options import Clients, JsonOut, Loadgen, Seconds, Users, Workers
from harness.redis import RedisServer, find_redis_server
from harness.serve import ServeProcess
from harness.waits import wait_http_ok_blocking, wait_until_blocking
from vnode.loopback import free_port

console = Console(stderr=True)
out = Console(width=110)
RECEIVER, REDIS = "receiver", "redis-server"  # CPU meter names, beside RunningService's
STREAM_KEY = "vnode:events"
FUND_MSAT = 100_000_000


# --------------------------------------------------------------------------------------------
# The webhook receiver: its own process, so that its CPU is not the service's


def _receiver_main(port: int) -> None:
    """A raw ASGI app: POST records (created_at, arrival); GET returns what was recorded."""
    import uvicorn

    received: list[tuple[str, float]] = []

    async def app(
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "POST":
            body = b""
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            arrived = time.time()
            received.append((orjson.loads(body)["created_at"], arrived))
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        payload = orjson.dumps(received)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off"
    )


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.proc = multiprocessing.get_context("spawn").Process(
            target=_receiver_main, args=(self.port,), daemon=True
        )

    def start(self) -> None:
        self.proc.start()
        wait_http_ok_blocking(self.url, 30.0, "the webhook receiver")

    def received(self) -> list[tuple[str, float]]:
        return [(c, float(t)) for c, t in httpx.get(self.url, timeout=60).json()]

    @property
    def pid(self) -> int:
        assert self.proc.pid is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(10)


# --------------------------------------------------------------------------------------------
# Measuring


def _scalar(dsn: str, sql: str) -> str:
    return common.psql(dsn, "-tAc", sql).strip()


def _epoch(created_at: str) -> float:
    return datetime.fromisoformat(created_at).timestamp()


def _pct(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


@dataclass
class ChannelResult:
    name: str
    in_window: int  # deliveries that happened while the load ran
    delivered: int  # deliveries of the load's events, in the end
    lags_s: list[float]
    last_arrival: float

    def rate(self, window_s: float) -> float:
        return self.in_window / window_s if window_s else 0.0


def _channel(
    name: str, arrivals: list[tuple[str, float]], first: float, last: float
) -> ChannelResult:
    """arrivals: (envelope created_at, arrival epoch) of every delivery on the channel."""
    load = [(_epoch(c), t) for c, t in arrivals if _epoch(c) >= first]
    return ChannelResult(
        name,
        sum(1 for _, t in arrivals if first <= t <= last),
        len(load),
        [t - c for c, t in load],
        max((t for _, t in load), default=float("nan")),
    )


def _stream_arrivals(redis_url: str) -> list[tuple[str, float]]:
    """(created_at, XADD time) of every entry: the entry id is Redis's clock in ms."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    found: list[tuple[str, float]] = []
    start = "-"
    try:
        while True:
            chunk = client.xrange(STREAM_KEY, min=start, count=10_000)
            if not chunk:
                return found
            # decode_responses: every id and field is a str (redis-py's types allow bytes).
            for entry_id, fields in chunk:
                created_at = str((fields or {})["created_at"])
                found.append((created_at, int(str(entry_id).split("-")[0]) / 1000))
            start = "(" + str(chunk[-1][0])
    finally:
        client.close()


def _wait_drained(dsn: str, timeout_s: float) -> float | None:
    """Seconds until nothing is left to fan out or deliver, or None at the deadline."""

    def drained() -> bool:
        return (
            _scalar(
                dsn,
                "SELECT (SELECT count(*) FROM outbox WHERE fanned_out_at IS NULL)"
                " + (SELECT count(*) FROM event_deliveries "
                "    WHERE status = 'pending')",
            )
            == "0"
        )

    started = time.monotonic()
    with console.status("waiting for the deliveries to drain"):
        try:
            wait_until_blocking(drained, timeout_s, "the deliveries to drain", period_s=0.1)
        except TimeoutError:
            return None
    return time.monotonic() - started


def _register_webhook(service: ServeProcess, url: str) -> None:
    response = httpx.post(
        f"{service.url}/admin/webhooks",
        json={"url": url, "events": []},
        headers={"Authorization": f"Bearer {service.admin_key}"},
        timeout=30,
    )
    if response.status_code != 201:
        raise RuntimeError(f"POST /admin/webhooks: {response.status_code} {response.text}")


# --------------------------------------------------------------------------------------------


def main(
    duration: Seconds = 20,
    clients: Clients = 32,
    users: Users = 1000,
    workers: Workers = 1,
    loadgen: Loadgen = "auto",
    drain_timeout: Annotated[
        float, typer.Option(help="Seconds to wait after the load for the backlog to be delivered")
    ] = 90.0,
    webhook: Annotated[bool, typer.Option(help="Register the webhook receiver")] = True,
    redis_stream: Annotated[
        bool, typer.Option("--redis/--no-redis", help="Set VNODE_REDIS_URL")
    ] = True,
    own_loop: Annotated[
        bool,
        typer.Option(
            help="VNODE_EVENTS_OWN_LOOP: fan-out and Redis on a loop of their own (docs/adr/0027)"
        ),
    ] = True,
    json_path: JsonOut = None,
    py_spy: Annotated[
        Path | None,
        typer.Option(
            "--py-spy",
            help="Record the service with py-spy during the load (collapsed stacks, every "
            "thread), and print where its time goes",
        ),
    ] = None,
) -> None:
    """Events delivered/s and commit-to-delivery lag per channel, under the transfer load."""
    loadgen = transfers.pick_loadgen(loadgen)
    user_base, max_amount = 7_000_000_000, 1000
    workdir = Path(tempfile.mkdtemp(prefix="vnode-bench-events-"))
    redis_binary = find_redis_server()
    if redis_binary is None:
        raise typer.BadParameter("redis-server is not installed (apt-get install -y redis-server)")
    redis_server: RedisServer | None = None
    receiver: Receiver | None = None
    running: common.RunningService | None = None
    try:
        with console.status("starting redis-server, the receiver, PostgreSQL and vnode serve"):
            redis_server = RedisServer(workdir, binary=redis_binary)
            redis_server.start()
            receiver = Receiver()
            receiver.start()
            env = {
                "VNODE_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
                "VNODE_EVENTS_OWN_LOOP": "true" if own_loop else "false",
            }
            if redis_stream:
                env.update(
                    {"VNODE_REDIS_URL": redis_server.url, "VNODE_REDIS_STREAM_KEY": STREAM_KEY}
                )
            running = common.RunningService.start(workdir, workers, extra_env=env)
            service, dsn = running.service, running.dsn
            if webhook:
                _register_webhook(service, receiver.url)
        out.print(f"machine: {common.machine_summary()}")
        pg_version = common.server_version(dsn)
        out.print(
            f"PostgreSQL {pg_version}; redis-server "
            f"{redis.Redis.from_url(redis_server.url).info()['redis_version']}; "
            f"vnode serve --workers {workers}, events own loop {own_loop}; load from {loadgen}"
        )

        with console.status(f"funding {users} users"):
            transfers.fund_users(service.url, service.admin_key, users, user_base, FUND_MSAT)
        if _wait_drained(dsn, 120) is None:
            raise RuntimeError("the funding events were not delivered in 120 s")

        assert redis_server.process.pid is not None
        roots = {**running.cpu_roots(), RECEIVER: receiver.pid, REDIS: redis_server.process.pid}
        spies = transfers.start_py_spy(service, workdir, duration) if py_spy else []
        roots.update({f"py-spy {i}": proc.pid for i, (proc, _) in enumerate(spies)})
        load, meter = transfers.run_load(
            loadgen,
            service.url,
            service.admin_key,
            clients,
            2,
            duration,
            users,
            user_base,
            max_amount,
            workdir,
            roots,
            f"transfers, {clients} clients",
        )
        drained_s = _wait_drained(dsn, drain_timeout)
        if spies and py_spy is not None:
            transfers.merge_py_spy(spies, py_spy)
            transfers.print_profile(py_spy)

        # The load window, by the outbox's own clock: first to last event the load committed
        # (every transfer.completed; the funding wrote admin.credit events).
        produced, first, last = _scalar(
            dsn,
            (
                "SELECT count(*) || ' ' || extract(epoch FROM min(created_at)) || ' ' || "
                "extract(epoch FROM max(created_at)) FROM outbox "
                "WHERE event_type = 'transfer.completed'"
            ),
        ).split()
        produced_n, first_t, last_t = int(produced), float(first), float(last)
        window_s = last_t - first_t
        channels = []
        if webhook:
            channels.append(_channel("webhook", receiver.received(), first_t, last_t))
        if redis_stream:
            channels.append(
                _channel("Redis Streams", _stream_arrivals(redis_server.url), first_t, last_t)
            )
        if not channels:
            raise typer.BadParameter("nothing to measure: --no-webhook and --no-redis")
        _report(load, meter, produced_n, window_s, channels, drained_s, duration, clients)
        produced_rate = produced_n / window_s if window_s else 0.0
        ratios = {
            c.name: c.rate(window_s) / produced_rate if produced_rate else 0.0 for c in channels
        }
        slower = min(ratios, key=lambda name: ratios[name])
        figures = {"transfers/s": load.rate, "events produced/s": produced_rate}
        for channel in channels:
            figures[f"{channel.name} delivered/s during the load"] = channel.rate(window_s)
            figures[f"{channel.name} lag p50 ms"] = 1000 * _pct(channel.lags_s, 50)
            figures[f"{channel.name} lag p99 ms"] = 1000 * _pct(channel.lags_s, 99)
            figures[f"{channel.name} delivered/produced"] = ratios[channel.name]
        figures["backlog drained after the load, s"] = (
            drained_s if drained_s is not None else float("nan")
        )
        figures["other programs during the load, cores"] = meter.foreign_user / load.seconds
        figures["audit clean (1 = yes)"] = float(common.audit(dsn, workdir, out))
        common.write_figures(
            json_path,
            "events",
            figures,
            ("delivered/produced, the slower channel", ratios[slower]),
            postgres=pg_version,
        )
        print(
            "ratio delivered/produced per second: "
            + ", ".join(f"{name} {r:.2f}" for name, r in ratios.items()),
            flush=True,
        )
        print(
            f"ratio delivered/produced ({slower}, the slower channel): {ratios[slower]:.2f}",
            flush=True,
        )
    finally:
        with console.status("stopping"):
            if running is not None:
                running.stop()
            if receiver is not None:
                receiver.stop()
            if redis_server is not None:
                redis_server.stop()
            shutil.rmtree(workdir, ignore_errors=True)


def _report(
    load: transfers.LoadResult,
    meter: common.CpuMeter,
    produced: int,
    window_s: float,
    channels: list[ChannelResult],
    drained_s: float | None,
    duration: int,
    clients: int,
) -> None:
    table = Table(title=f"{clients} clients, {duration}s of transfers")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row(f"transfers/s (200 only, {load.tool})", f"{load.rate:,.0f}")
    table.add_row("transfer latency p50 / p99", f"{load.p50_ms:.1f} / {load.p99_ms:.1f} ms")
    table.add_row(
        "events produced (outbox rows)",
        f"{produced:,} in {window_s:.1f}s = {produced / window_s:,.0f}/s"
        if window_s
        else str(produced),
    )
    for channel in channels:
        table.add_row(
            f"{channel.name}: delivered/s during the load", f"{channel.rate(window_s):,.0f}"
        )
        table.add_row(
            f"{channel.name}: lag p50 / p99 / max",
            f"{1000 * _pct(channel.lags_s, 50):,.0f} / "
            f"{1000 * _pct(channel.lags_s, 99):,.0f} / "
            f"{1000 * max(channel.lags_s, default=float('nan')):,.0f} ms",
        )
        table.add_row(
            f"{channel.name}: delivered in the end", f"{channel.delivered:,} of {produced:,}"
        )
    table.add_row(
        "backlog drained after the load in",
        f"{drained_s:.1f}s" if drained_s is not None else "not within the timeout",
    )
    out.print(table)
    cpu = Table(title="CPU cores used during the load")
    for name in meter.used:
        cpu.add_column(name, justify="right")
    cpu.add_column("machine idle", justify="right")
    total = meter.machine_busy.total + meter.machine_idle
    cpu.add_row(
        *(f"{meter.seconds(name) / load.seconds:.2f}" for name in meter.used),
        f"{100 * meter.machine_idle / total:.0f}%" if total else "",
    )
    out.print(cpu)
    if meter.foreign_user / load.seconds > 0.05:
        out.print(
            f"[yellow]other programs used {meter.foreign_user / load.seconds:.2f} cores "
            "during the load: these figures are low; run again on a quiet machine[/]"
        )
    if any(channel.lags_s for channel in channels):
        mean = {c.name: statistics.fmean(c.lags_s) for c in channels if c.lags_s}
        out.print("mean lag: " + ", ".join(f"{k} {1000 * v:,.0f} ms" for k, v in mean.items()))


if __name__ == "__main__":
    typer.run(main)
