"""`vnode limits set|show USER`: a user's per-user limits (docs/LIMITS.md), run straight on the
database, as POST /admin/limits and GET /admin/limits/{user_id} do."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from vnode.cli_db import DataDir, command_settings, with_pool
from vnode.domain.ids import parse_user_id
from vnode.limits import store
from vnode.limits.refusal import LIMIT_NAMES

limits_app = typer.Typer(
    help="Per-user limits (msat of BTC): set a user's overrides, show a user's limits.",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True)

Msat = Annotated[int | None, typer.Option(min=0, max=2**63 - 1, help="msat")]


def _user(user_id: str) -> int:
    try:
        return parse_user_id(user_id)
    except ValueError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None


def _print(found: store.UserLimits) -> None:
    out.print_json(store.limits_answer(found).model_dump_json())


@limits_app.command("set")
def set_limits(
    user_id: Annotated[str, typer.Argument(help="Telegram id, decimal or vn_<id>")],
    send_max_msat: Msat = None,
    receive_max_msat: Msat = None,
    balance_max_msat: Msat = None,
    send_24h_msat: Msat = None,
    send_30d_msat: Msat = None,
    receive_24h_msat: Msat = None,
    receive_30d_msat: Msat = None,
    fee_max_msat: Msat = None,
    clear: Annotated[
        list[str] | None,
        typer.Option(
            help="Remove this override, so the server default applies (repeatable): "
            + ", ".join(LIMIT_NAMES)
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Set the named limits as USER's overrides (others stay); prints USER's limits."""
    user = _user(user_id)
    given = {
        "send_max_msat": send_max_msat,
        "receive_max_msat": receive_max_msat,
        "balance_max_msat": balance_max_msat,
        "send_24h_msat": send_24h_msat,
        "send_30d_msat": send_30d_msat,
        "receive_24h_msat": receive_24h_msat,
        "receive_30d_msat": receive_30d_msat,
        "fee_max_msat": fee_max_msat,
    }
    changes: dict[str, int | None] = {k: v for k, v in given.items() if v is not None}
    for name in clear or ():
        if name not in LIMIT_NAMES or name in changes:
            err.print(f"[red]--clear {name}: not a limit, or also given a value[/]")
            raise typer.Exit(2)
        changes[name] = None
    if not changes:
        err.print("[red]nothing to change: give a limit option or --clear[/]")
        raise typer.Exit(2)
    _print(
        with_pool(command_settings(data_dir), lambda pool: store.set_overrides(pool, user, changes))
    )


@limits_app.command("show")
def show_limits(
    user_id: Annotated[str, typer.Argument(help="Telegram id, decimal or vn_<id>")],
    data_dir: DataDir = None,
) -> None:
    """USER's limits: effective, overrides, the server defaults, usage and headroom. The
    defaults are those the last `vnode serve` started with wrote."""
    user = _user(user_id)
    _print(with_pool(command_settings(data_dir), lambda pool: store.user_limits(pool, user)))
