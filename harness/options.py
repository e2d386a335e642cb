"""Command-line options that several scripts of bench/ and proving/ take, declared once
(typer's `Annotated` form: `def main(duration: LoadSeconds = 60.0, ...)`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# Every benchmark and proving script: its figures or its result, for bench/run.py and CI.
JsonOut = Annotated[
    Path | None,
    typer.Option("--json", help="Also write the figures (the result) as JSON to this file"),
]

# --------------------------------------------------------------------------------------------
# proving/: soak and chaos

LoadSeconds = Annotated[float, typer.Option("--duration", help="Seconds of load")]
Rate = Annotated[float, typer.Option(help="Offered requests per second (all processes)")]
LoadUsers = Annotated[
    int, typer.Option("--users", help="Funded users the load moves money between")
]
Seed = Annotated[int, typer.Option(help="Seed of the run's random choices")]
WithRedis = Annotated[
    bool,
    typer.Option(
        "--redis/--no-redis", help="Run a redis-server for the event stream, when one is installed"
    ),
]
Keep = Annotated[bool, typer.Option(help="Keep the work directory (logs) after the run")]

# --------------------------------------------------------------------------------------------
# bench/: the service started here, or one already running

ServiceUrl = Annotated[
    str | None, typer.Option("--url", help="A running service (else one is started)")
]
ServiceDsn = Annotated[
    str | None,
    typer.Option(
        "--dsn", help="With --url: a DSN of the service's PostgreSQL cluster, for pgbench"
    ),
]
AdminKey = Annotated[
    str | None,
    typer.Option("--admin-key", envvar="VNODE_ADMIN_KEY", help="With --url: an admin key"),
]
Workers = Annotated[int, typer.Option(help="`vnode serve --workers` when started here")]
Clients = Annotated[int, typer.Option(help="Concurrent connections (and pgbench -c)")]
Seconds = Annotated[int, typer.Option("--duration", help="Seconds of each measured run")]
Warmup = Annotated[int, typer.Option(help="Seconds of unmeasured load first")]
Users = Annotated[int, typer.Option(help="Users funded and used by the load")]
UserBase = Annotated[int, typer.Option(help="User ids are base+1 .. base+users")]
Loadgen = Annotated[
    str,
    typer.Option(help="auto (wrk if installed, else python), wrk, python (raw asyncio) or httpx"),
]
LoadgenThreads = Annotated[int, typer.Option(help="wrk threads")]
PgbenchThreads = Annotated[int, typer.Option(help="pgbench -j")]
