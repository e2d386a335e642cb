"""`vnode webhooks add|list|rotate|remove|failed|retry`: the admin API's webhook commands, run
straight on the database (the same SSRF rule: VNODE_WEBHOOK_ALLOW_HOSTS)."""

from __future__ import annotations

from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from vnode.cli_db import DataDir, command_settings, with_pool
from vnode.events import endpoints
from vnode.events.catalogue import EVENT_TYPES
from vnode.events.endpoints import InvalidEventType, InvalidUrl, WebhookInfo
from vnode.events.ssrf import UnsafeUrl

webhooks_app = typer.Typer(
    help="Webhook endpoints: add (secret shown once), list, rotate (new secret shown once), "
    "remove; dead letters: failed, retry.",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True)


def _events(info: WebhookInfo) -> str:
    return ", ".join(info.event_types) if info.event_types else "all"


@webhooks_app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="http(s) URL receiving the signed POSTs")],
    event: Annotated[
        list[str] | None,
        typer.Option(
            "--event", help=f"An event type (repeatable; default all): {', '.join(EVENT_TYPES)}"
        ),
    ] = None,
    description: Annotated[str | None, typer.Option(help="What this endpoint is")] = None,
    data_dir: DataDir = None,
) -> None:
    """Subscribe URL to events; prints the endpoint and its signing secret, once."""
    settings = command_settings(data_dir)
    try:
        endpoints.parse_url(url)
        endpoints.parse_event_types(event or ())
    except (InvalidUrl, InvalidEventType) as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    try:
        info, secret = with_pool(
            settings,
            lambda pool: endpoints.create_endpoint(
                pool, url, event or (), settings.allowed_webhook_hosts, description
            ),
        )
    except UnsafeUrl as exc:
        err.print(f"[red]unsafe_url: {exc}[/]")
        raise typer.Exit(1) from None
    err.print(
        f"webhook {info.id} -> {info.url} (events: {_events(info)}); "
        "the secret is shown once, store it now:"
    )
    out.print_json(
        orjson.dumps(
            {"id": info.id, "url": info.url, "events": list(info.event_types), "secret": secret}
        ).decode()
    )


@webhooks_app.command("list")
def list_(
    removed: Annotated[bool, typer.Option(help="Include removed endpoints")] = False,
    data_dir: DataDir = None,
) -> None:
    """List the endpoints and their queues (never their secrets)."""
    found = with_pool(
        command_settings(data_dir),
        lambda pool: endpoints.list_endpoints(pool, include_removed=removed),
    )
    table = Table()
    for column in (
        "id",
        "url",
        "events",
        "pending",
        "dead",
        "description",
        "created",
        "old secret until",
        "removed",
    ):
        table.add_column(column)
    for w in found:
        table.add_row(
            str(w.id),
            w.url,
            _events(w),
            str(w.pending),
            f"[red]{w.dead}[/]" if w.dead else "0",
            w.description or "",
            w.created_at.isoformat(timespec="seconds"),
            w.previous_secret_until.isoformat(timespec="seconds")
            if w.previous_secret_until
            else "",
            w.removed_at.isoformat(timespec="seconds") if w.removed_at else "",
        )
    out.print(table)


@webhooks_app.command("rotate")
def rotate(
    webhook_id: int,
    grace_s: Annotated[
        int,
        typer.Option(
            "--grace-s",
            min=0,
            max=endpoints.MAX_GRACE_S,
            help="Seconds the replaced secret still signs beside the new one (0: stop at once)",
        ),
    ] = endpoints.DEFAULT_GRACE_S,
    data_dir: DataDir = None,
) -> None:
    """Give an endpoint a new signing secret; prints it, once."""
    rotated = with_pool(
        command_settings(data_dir), lambda pool: endpoints.rotate_secret(pool, webhook_id, grace_s)
    )
    if rotated is None:
        err.print(f"no active webhook endpoint with id {webhook_id}")
        raise typer.Exit(1)
    until = rotated.previous_secret_until
    err.print(
        f"webhook {webhook_id}: new secret, shown once, store it now; "
        + (
            f"the replaced one still signs until {until.isoformat(timespec='seconds')}"
            if until
            else "the replaced one no longer signs"
        )
    )
    out.print_json(
        orjson.dumps(
            {
                "id": webhook_id,
                "secret": rotated.secret,
                "previous_secret_until": until.isoformat() if until else None,
            }
        ).decode()
    )


@webhooks_app.command("remove")
def remove(webhook_id: int, data_dir: DataDir = None) -> None:
    """Remove an endpoint; nothing more is sent to it."""
    removed = with_pool(
        command_settings(data_dir), lambda pool: endpoints.remove_endpoint(pool, webhook_id)
    )
    if removed is None:
        err.print(f"no active webhook endpoint with id {webhook_id}")
        raise typer.Exit(1)
    out.print(f"webhook {webhook_id} removed")


@webhooks_app.command("failed")
def failed(
    limit: Annotated[int, typer.Option(min=1, max=endpoints.DEAD_LETTERS_MAX)] = 100,
    webhook: Annotated[int | None, typer.Option(help="Only this endpoint")] = None,
    data_dir: DataDir = None,
) -> None:
    """The dead-letter list: deliveries that kept failing past the retry period."""
    dead = with_pool(
        command_settings(data_dir), lambda pool: endpoints.dead_letters(pool, webhook, limit)
    )
    table = Table(title=f"dead deliveries ({len(dead)} shown)")
    for column in (
        "webhook",
        "event id",
        "type",
        "user",
        "seq",
        "attempts",
        "last error",
        "event created",
    ):
        table.add_column(column, overflow="fold")
    for d in dead:
        table.add_row(
            str(d.webhook_id),
            d.event_id,
            d.event_type,
            str(d.user_id),
            str(d.seq),
            str(d.attempts),
            d.last_error or "",
            d.event_created_at.isoformat(timespec="seconds"),
        )
    out.print(table)


@webhooks_app.command("retry")
def retry(
    webhook_id: Annotated[
        int | None, typer.Argument(help="Only this endpoint (default all)")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Queue dead deliveries again; a running vnode sends them, in their original order."""
    requeued = with_pool(
        command_settings(data_dir), lambda pool: endpoints.retry_dead_letters(pool, webhook_id)
    )
    if requeued is None:
        err.print(f"no active webhook endpoint with id {webhook_id}")
        raise typer.Exit(1)
    out.print(f"{requeued} dead deliveries queued again")
