"""The one command line: vnode serve | status | migrate | audit | keys | admin."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from pydantic import SecretStr
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from vnode import apikeys
from vnode.apikeys import Scope
from vnode.cli_bot import bot
from vnode.cli_db import master_seed, with_connection
from vnode.cli_demo import demo
from vnode.cli_limits import limits_app
from vnode.cli_proofs import proofs_app
from vnode.cli_status import status
from vnode.cli_webhooks import webhooks_app
from vnode.datadir import published, serve_url_file
from vnode.db.connect import connect
from vnode.db.migrate import migrate as apply_migrations
from vnode.db.pool import DbConnection, create_pool
from vnode.domain.amounts import parse_amount
from vnode.domain.ids import BTC, parse_asset_id, parse_user_id
from vnode.keys import SoftwareSigner
from vnode.ledger import solvency
from vnode.ledger.admin import AdminCommand, AdminMove, admin_move
from vnode.ledger.audit import AuditReport, run_audit
from vnode.ledger.calls import Idempotency
from vnode.ledger.solvency import AssetSolvency
from vnode.lightning.base import NodeError
from vnode.lightning.registry import create_backend
from vnode.lightning.sim_process import SimProcess
from vnode.logs import configure_logging
from vnode.runtime import (
    SignalFreeServer,
    StopRequested,
    StopSignals,
    database_url,
    redis_url,
)
from vnode.settings import Settings

app = typer.Typer(help="vnode: virtual Lightning nodes for a chat wallet.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
admin_app = typer.Typer(help="Operator funding and corrections.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(admin_app, name="admin")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(limits_app, name="limits")
app.add_typer(proofs_app, name="proofs")
app.command()(bot)
app.command()(demo)
app.command()(status)
out = Console()
err = Console(stderr=True)
log = logging.getLogger(__name__)

DataDir = Annotated[Path | None, typer.Option(help="Data directory (default ./.vnode)")]


def _settings(data_dir: Path | None = None, **overrides: object) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)  # type: ignore[arg-type]


_DRAIN_S = 5  # open event streams never end on their own: the drain is bounded
_WORKER_STOP_S = 15.0  # a worker process: its drain plus its app shutdown


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
    data_dir: DataDir = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes")] = None,
) -> None:
    """Start the HTTP service (and the embedded PostgreSQL when no VNODE_DATABASE_URL is set).
    SIGTERM, SIGINT, SIGHUP and SIGQUIT all stop it: requests drain, then the workers, the
    simulated node and the embedded database stop."""
    settings = _settings(data_dir, host=host, port=port, workers=workers)
    configure_logging(settings.log_level, settings.log_format)
    signals = StopSignals()
    signals.install()
    try:
        with (
            database_url(settings, signals) as dsn,
            redis_url(settings, signals) as events_redis,
            _node_beside(settings, signals),
        ):
            if events_redis is not None and settings.redis_url is None:
                err.print(
                    f"[bold]vnode's events go to the embedded Redis at {events_redis}[/]",
                    soft_wrap=True,
                )
                settings = settings.model_copy(update={"redis_url": SecretStr(events_redis)})
            asyncio.run(_prepare(settings, dsn))
            master_seed(settings)  # created once here, before workers could race to create it
            with published(serve_url_file(settings.data_dir), _local_url(settings)):
                _serve_http(settings, dsn, signals)
    except StopRequested as stop:
        log.info("stopped by %s before serving", stop)
    finally:
        signals.close()
    if signals.received is not None:
        log.info("vnode serve stopped cleanly")


def _local_url(settings: Settings) -> str:
    """Where a process on this machine reaches the service (for `vnode bot`)."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "", "::") else settings.host  # noqa: S104
    return f"http://{host}:{settings.port}"


class _Workers(Multiprocess):
    """uvicorn's worker supervisor with a bounded wait for its workers at shutdown."""

    def join_all(self) -> None:
        deadline = time.monotonic() + _WORKER_STOP_S
        for worker in self.processes:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.exitcode is None:
                log.warning(
                    "worker %s did not stop within %.0fs; killing it", worker.pid, _WORKER_STOP_S
                )
                worker.kill()
                worker.process.join()

    def kill_all(self) -> None:
        for worker in self.processes:
            if worker.process.exitcode is None:
                worker.kill()


def _serve_http(settings: Settings, dsn: str, signals: StopSignals) -> None:
    common: dict[str, object] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "loop": "uvloop",
        "http": "httptools",
        "timeout_graceful_shutdown": _DRAIN_S,
    }
    if settings.workers == 1:
        # Loaded here, not with the module: FastAPI and every route are most of the CLI's start-up
        # (1.5 s of CPU), which `vnode sim serve`, `vnode status` and the rest do not need.
        from vnode.app import create_app

        server = SignalFreeServer(uvicorn.Config(create_app(settings, dsn), **common))  # type: ignore[arg-type]

        def drain() -> None:
            server.should_exit = True

        def stop_waiting() -> None:
            server.force_exit = True

        with signals.serving(drain, stop_waiting):
            server.run()
        if not server.started and signals.received is None:
            raise typer.Exit(STARTUP_FAILURE)  # as uvicorn.run: the port is taken, or similar
        return
    # Worker processes read their settings from the environment: hand them the command
    # line's too (the port decides where the simulated node is).
    if settings.redis_url is not None:
        os.environ["VNODE_REDIS_URL"] = settings.redis_url.get_secret_value()
    os.environ.update(
        {
            "VNODE_DATABASE_URL": dsn,
            "VNODE_DATA_DIR": str(settings.data_dir),
            "VNODE_HOST": settings.host,
            "VNODE_PORT": str(settings.port),
        }
    )
    config = uvicorn.Config(
        "vnode.app:app_from_environment",
        factory=True,
        workers=settings.workers,
        **common,  # type: ignore[arg-type]
    )
    supervisor = _Workers(config, sockets=[config.bind_socket()])
    # serving() puts StopSignals' handlers back over the supervisor's: SIGHUP stops rather
    # than restarting the workers, SIGQUIT is not ignored.
    with signals.serving(supervisor.should_exit.set), signals.last_resort(supervisor.kill_all):
        supervisor.run()


@contextmanager
def _node_beside(settings: Settings, signals: StopSignals | None = None) -> Iterator[None]:
    """With no node configured, run the simulated RGB Lightning Node on the next port."""
    if settings.node is not None:
        yield
        return
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    sim: SimProcess | None = None
    try:
        with signals.shield() if signals is not None else nullcontext():
            sim = SimProcess("127.0.0.1", settings.sim_port, settings.data_dir / "sim.log")
        sim.wait_ready()
        err.print(f"[bold yellow]SIMULATED master node at {sim.url}: no real money moves.[/]")
        with signals.last_resort(sim.kill) if signals is not None else nullcontext():
            yield
    finally:
        if signals is not None:
            signals.begin_stop()
        if sim is not None:
            sim.stop()


async def _prepare(settings: Settings, dsn: str) -> None:
    """Migrate; mint a bootstrap admin key only on a key table that never held a key.

    After an operator revoked every admin key (incident response), a restart must not mint and
    print a new one into the service's logs: it says how to make one instead."""
    conn = await connect(dsn)
    try:
        await apply_migrations(conn)
        if settings.admin_key is not None:
            return
        minted: tuple[apikeys.KeyInfo, str] | None = None
        async with conn.transaction():
            # Two services starting on one empty database must not both mint a key.
            await conn.execute("LOCK TABLE api_keys IN SHARE ROW EXCLUSIVE MODE")
            if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM api_keys)"):
                minted = await apikeys.create_key(conn, "bootstrap", Scope.ADMIN)
            active_admins = await apikeys.count_admin_keys(conn)
    finally:
        await conn.close()
    if minted is not None:  # committed: the key printed is a key that exists
        info, key = minted
        out.print(f"[bold]Bootstrap admin API key (id {info.id}), shown once; store it now:[/]")
        out.print(key, soft_wrap=True, highlight=False)
    elif active_admins == 0:
        log.warning(
            "no active admin API key and none is minted (the key table is not empty); "
            "create one with: vnode keys create --scope admin --name <who>"
        )


@app.command()
def migrate(data_dir: DataDir = None) -> None:
    """Apply pending database migrations (serve does this too, under the same lock)."""

    async def work(conn: DbConnection) -> None:
        return None

    with_connection(_settings(data_dir), work)
    out.print("migrations current")


@app.command()
def audit(
    data_dir: DataDir = None,
    node: Annotated[
        bool,
        typer.Option(help="Also compare what users are owed with what the master node can spend"),
    ] = True,
) -> None:
    """Recompute balances from coins, journal and history; check conservation and solvency.
    Exit 1 on any difference or shortfall."""
    settings = _settings(data_dir)

    async def work(conn: DbConnection) -> tuple[AuditReport, list[AssetSolvency] | str | None]:
        # A progress bar on stderr, one step per check: on a large ledger the audit takes tens
        # of seconds (docs/PERFORMANCE.md, "A million users"). Transient: the tables stay.
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as progress:
            task = progress.add_task("audit", total=None)

            def on_check(name: str, number: int, checks: int) -> None:
                progress.update(task, description=f"audit: {name}", completed=number, total=checks)

            report = await run_audit(conn, on_check)
            progress.update(task, completed=len(report.checked))
        return report, (await _solvency(settings, conn) if node else None)

    report, solvent = with_connection(settings, work)
    _print_audit(report)
    short = _print_solvency(solvent)
    if not report.clean or short:
        raise typer.Exit(1)


async def _solvency(settings: Settings, conn: DbConnection) -> list[AssetSolvency] | str:
    backend = create_backend(
        settings.backend_name,
        rln_url=settings.node_url,
        rln_token=settings.rln_token.get_secret_value() if settings.rln_token else None,
        timeout_s=settings.node_timeout_s,
    )
    try:
        spendable = await backend.spendable_balances()
    except NodeError as exc:
        return f"master node not reachable at {settings.node_url}: {exc}"
    finally:
        await backend.close()
    return solvency.compare(await solvency.liabilities(conn), spendable)


def _print_solvency(result: list[AssetSolvency] | str | None) -> bool:
    """Print the solvency table; True when the node cannot cover what users are owed."""
    if result is None:
        return False
    if isinstance(result, str):
        out.print(f"[yellow]solvency not checked: {result}[/]")
        return False
    table = Table(title="solvency (users' balances + pending vs node spendable)")
    for column in ("asset", "owed to users", "node can spend", "shortfall"):
        table.add_column(column)
    for row in result:
        style = "red" if row.shortfall else "green"
        table.add_row(
            row.asset_id, str(row.owed), str(row.node_spendable), f"[{style}]{row.shortfall}[/]"
        )
    out.print(table)
    short = [row.asset_id for row in result if row.shortfall]
    if short:
        out.print(
            f"[red]solvency shortfall in {', '.join(short)}: the node cannot cover what "
            "users are owed[/]"
        )
    return bool(short)


def _print_audit(report: AuditReport) -> None:
    checks = Table(title="vnode audit")
    for column in ("check", "rows checked", "differences"):
        checks.add_column(column)
    for name, rows in report.checked.items():
        found = sum(1 for d in report.differences if d.check == name)
        checks.add_row(name, str(rows), f"[red]{found}[/]" if found else "[green]0[/]")
    out.print(checks)
    totals = Table(title="per asset (users + system accounts must sum to 0)")
    for column in ("asset", "users spendable", "users pending", "system accounts", "sum"):
        totals.add_column(column)
    for t in report.totals:
        system = ", ".join(f"{name} {value}" for name, value in sorted(t.system.items()))
        totals.add_row(t.asset_id, str(t.users_spendable), str(t.users_pending), system, str(t.sum))
    out.print(totals)
    for d in report.differences[:50]:
        out.print(
            f"[red]{d.check}[/]: account {d.account} {d.asset_id}: "
            f"expected {d.expected}, found {d.found}"
        )
    out.print(
        "[green]audit clean[/]"
        if report.clean
        else f"[red]audit found {len(report.differences)} difference(s)[/]"
    )


@keys_app.command("create")
def keys_create(
    scope: Annotated[
        Scope,
        typer.Option(
            help="admin, console (the read-only operator console), spend, receive or read"
        ),
    ],
    name: Annotated[str, typer.Option(help="Who uses this key")],
    data_dir: DataDir = None,
) -> None:
    """Create a key; it is printed once and only its hash is stored."""
    info, key = with_connection(
        _settings(data_dir), lambda conn: apikeys.create_key(conn, name, scope)
    )
    err.print(f"key {info.id} '{info.name}' scope {info.scope.value}; shown once:")
    out.print(key, soft_wrap=True, highlight=False)


@keys_app.command("list")
def keys_list(data_dir: DataDir = None) -> None:
    """List keys (never the keys themselves)."""
    found = with_connection(_settings(data_dir), apikeys.list_keys)
    table = Table()
    for column in ("id", "name", "scope", "prefix", "created", "revoked"):
        table.add_column(column)
    for k in found:
        table.add_row(
            str(k.id),
            k.name,
            k.scope.value,
            k.key_prefix + "...",
            k.created_at.isoformat(timespec="seconds"),
            k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "",
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: int, data_dir: DataDir = None) -> None:
    """Revoke a key by id; running services stop accepting it at once."""
    done = with_connection(_settings(data_dir), lambda conn: apikeys.revoke_key(conn, key_id))
    if not done:
        err.print(f"no active key with id {key_id}")
        raise typer.Exit(1)
    out.print(f"key {key_id} revoked")


def _admin(
    move: AdminMove,
    user_id: str,
    amount: int,
    asset_id: str,
    reason: str,
    data_dir: Path | None,
    idempotency_key: str | None,
) -> None:
    try:
        command = AdminCommand(
            move,
            parse_user_id(user_id),
            parse_asset_id(asset_id),
            parse_amount(amount, "amount"),
            reason,
        )
    except ValueError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    settings = _settings(data_dir)
    outcome = _run_admin(
        settings,
        SoftwareSigner(master_seed(settings)),
        command,
        Idempotency("cli", idempotency_key),
    )
    if outcome[0] >= 400:
        err.print(f"[red]{outcome[1]}[/]")
        raise typer.Exit(1)
    out.print_json(outcome[1])


def _run_admin(
    settings: Settings, signer: SoftwareSigner, command: AdminCommand, idem: Idempotency
) -> tuple[int, str]:
    async def run(dsn: str) -> tuple[int, str]:
        pool = await create_pool(dsn, min_size=1, max_size=2)
        try:
            async with pool.acquire() as conn:
                await apply_migrations(conn)
            outcome = await admin_move(pool, signer, command, idem)
            return outcome.status, outcome.body
        finally:
            await pool.close()

    with database_url(settings) as dsn:
        return asyncio.run(run(dsn))


AmountArg = Annotated[int, typer.Option(help="msat for BTC, asset units for RGB")]
AssetOpt = Annotated[str, typer.Option(help="BTC or rgb:...")]
ReasonOpt = Annotated[str, typer.Option(help="Why; shown in the user's history")]
IdemOpt = Annotated[str | None, typer.Option(help="Idempotency key: a rerun does nothing")]


@admin_app.command("credit")
def admin_credit(
    user_id: str,
    amount: AmountArg,
    reason: ReasonOpt,
    asset_id: AssetOpt = BTC,
    data_dir: DataDir = None,
    idempotency_key: IdemOpt = None,
) -> None:
    """Credit a user from the operator_funding account."""
    _admin(AdminMove.CREDIT, user_id, amount, asset_id, reason, data_dir, idempotency_key)


@admin_app.command("debit")
def admin_debit(
    user_id: str,
    amount: AmountArg,
    reason: ReasonOpt,
    asset_id: AssetOpt = BTC,
    data_dir: DataDir = None,
    idempotency_key: IdemOpt = None,
) -> None:
    """Debit a user to the operator_funding account."""
    _admin(AdminMove.DEBIT, user_id, amount, asset_id, reason, data_dir, idempotency_key)


sim_app = typer.Typer(help="The simulated RGB Lightning Node.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")


# Its options are defined once, by the sim's own command (vnode_sim/cli.py, which
# `python -m vnode_sim` runs too): this one hands it every argument, --help included.
@sim_app.command(
    "serve",
    add_help_option=False,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def sim_serve(ctx: typer.Context) -> None:
    """Run the simulated RGB Lightning Node alone (`vnode sim serve --help`: its options)."""
    # The one place vnode imports the sim (the sibling package vnode_sim), and lazily: the
    # service never loads it, and `vnode serve` runs it as a separate process through this
    # command (lightning/sim_process.py). tests/unit/test_layering.py checks the rest of vnode/.
    from vnode_sim.cli import main as sim_main

    configure_logging("INFO")
    sim_main(list(ctx.args), prog_name="vnode sim serve")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
