"""`vnode status`: a running service's /readyz as tables, for a person at a terminal.

Exit code 0 ready, 1 degraded (serving, a money worker behind), 2 not ready or no answer, so
a script can branch on it as on /readyz's HTTP status.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import httpx
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from vnode.client import Readiness, VNodeClient, VNodeError, VNodeUnavailable
from vnode.settings import Settings
from vnode.tls import tls_context

READY, DEGRADED, NOT_READY = 0, 1, 2
_STYLES = {"ready": "green", "degraded": "yellow", "not_ready": "red"}
_CHECK_OK = {"database": "ok", "migrations": "current", "node": "ready", "workers": "ok"}


class Unavailable(Exception):
    """No usable answer: nothing listens, the key is refused, or the answer is not /readyz's."""


def default_url() -> str:
    """http://VNODE_HOST:VNODE_PORT, with a wildcard address replaced by loopback."""
    settings = Settings()
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(  # noqa: S104
        settings.host, settings.host
    )
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


async def fetch_readiness(
    url: str,
    key: str | None,
    timeout_s: float = 5.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Readiness:
    """/readyz with the key's details, or the bare status without a key."""
    if key:
        try:
            async with VNodeClient(url, key, timeout_s=timeout_s, transport=transport) as client:
                return await client.ready()
        except VNodeUnavailable as exc:
            raise Unavailable(f"no answer from {url}: {exc.message}") from None
        except VNodeError as exc:
            raise Unavailable(f"{url} refused the key: {exc.code}: {exc.message}") from None
    try:
        async with httpx.AsyncClient(
            base_url=url.rstrip("/"),
            timeout=timeout_s,
            transport=transport,
            follow_redirects=False,
            verify=tls_context(),
        ) as http:
            answer = await http.get("/readyz")
    except httpx.HTTPError as exc:
        raise Unavailable(f"no answer from {url}: {type(exc).__name__}: {exc}") from None
    try:
        if answer.status_code not in (200, 503):
            raise ValueError(f"HTTP {answer.status_code}")
        return Readiness.model_validate_json(answer.content)
    except (ValueError, ValidationError) as exc:
        raise Unavailable(f"{url}/readyz did not answer as vnode does: {exc}") from None


def exit_code(readiness: Readiness) -> int:
    return {"ready": READY, "degraded": DEGRADED}.get(readiness.status, NOT_READY)


def _styled(value: str, ok: bool) -> str:
    return f"[green]{value}[/]" if ok else f"[red]{value}[/]"


def _age(seconds: object) -> str:
    return "never" if seconds is None else f"{seconds} s ago"


def render(console: Console, url: str, readiness: Readiness, with_key: bool) -> None:
    status = readiness.status
    console.print(f"[bold]vnode at {url}[/]", highlight=False)
    summary = Table(show_header=False)
    summary.add_column("what", style="bold")
    summary.add_column("value", overflow="fold")
    summary.add_row("status", f"[{_STYLES.get(status, 'red')}]{status}[/]")
    for name, value in (readiness.checks or {}).items():
        summary.add_row(name, _styled(value, _CHECK_OK.get(name) == value))
    node = readiness.node
    if node is not None:
        simulated = bool(node.get("simulated"))
        summary.add_row("node backend", str(node.get("backend")))
        summary.add_row(
            "simulated",
            "[bold yellow]SIMULATED: no real money moves[/]" if simulated else "no (a real node)",
        )
        for field in ("network", "pubkey", "detail"):
            if node.get(field):
                summary.add_row(f"node {field}", str(node[field]))
    console.print(summary)
    if not with_key:
        console.print(
            "A read key (--key or VNODE_API_KEY) shows the database, migrations, "
            "node, workers and solvency."
        )
        return
    if readiness.workers:
        console.print(_workers_table(readiness.workers))
    if readiness.solvency is not None:
        console.print(_solvency_table(readiness.solvency))


def _workers_table(workers: dict[str, Any]) -> Table:
    table = Table(title="workers (this process)")
    for column in ("worker", "last completed pass", "failures"):
        table.add_column(column)
    for name, info in sorted(workers.items()):
        info = info if isinstance(info, dict) else {}
        failures = int(info.get("failures") or 0)
        table.add_row(
            name, _age(info.get("last_success_age_s")), _styled(str(failures), failures == 0)
        )
    return table


def _solvency_table(solvency: dict[str, Any]) -> Table:
    age = _age(solvency.get("checked_age_s"))
    assets = solvency.get("assets")
    table = Table(title=f"solvency (node balances as of {age})")
    table.add_column("asset", overflow="fold")
    for column in ("owed to users", "node can spend", "shortfall"):
        table.add_column(column)
    if not isinstance(assets, list):
        table.add_row("?", "", "", f"[yellow]unknown: {solvency.get('unknown')}[/]")
        return table
    for row in assets:
        shortfall = int(row.get("shortfall") or 0)
        table.add_row(
            str(row.get("asset_id")),
            str(row.get("owed")),
            str(row.get("node_spendable")),
            _styled(str(shortfall), shortfall == 0),
        )
    return table


def status(
    url: Annotated[
        str | None,
        typer.Option(help="The service's address (default http://VNODE_HOST:VNODE_PORT)"),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            envvar="VNODE_API_KEY",
            show_default=False,
            help="An API key of scope read or above: shows the details",
        ),
    ] = None,
    timeout_s: Annotated[float, typer.Option(help="How long to wait for an answer")] = 5.0,
) -> None:
    """Summarise a running service: status, database, migrations, node, workers, solvency.
    Exit 0 ready, 1 degraded, 2 not ready or unreachable."""
    target = (url or default_url()).rstrip("/")
    console = Console()
    try:
        readiness = asyncio.run(fetch_readiness(target, key, timeout_s))
    except Unavailable as exc:
        Console(stderr=True).print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(NOT_READY) from None
    render(console, target, readiness, with_key=bool(key))
    raise typer.Exit(exit_code(readiness))
