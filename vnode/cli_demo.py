"""`vnode demo`: chat with the bitMaskRGB bot locally, without Telegram (vnode/demo/)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from vnode.logs import configure_logging

if TYPE_CHECKING:
    from vnode.demo.stage import Demo

DEFAULT_PORT = 3003
_HOST = "127.0.0.1"  # loopback only: the page speaks for every demo user, unauthenticated
err = Console(stderr=True)


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((_HOST, port))
        except OSError:
            return False
    return True


def _web_port(asked: int | None) -> int:
    """The asked port, which must be free; else 3003, or a free one when 3003 is taken."""
    if asked is not None:
        if not _free(asked):
            err.print(f"[bold red]port {asked} is taken[/]: choose another with --port")
            raise typer.Exit(2)
        return asked
    if _free(DEFAULT_PORT):
        return DEFAULT_PORT
    with socket.socket() as sock:
        sock.bind((_HOST, 0))
        port = int(sock.getsockname()[1])
    err.print(f"[yellow]port {DEFAULT_PORT} is taken (another demo?); using {port}[/]")
    return port


def _announce(demo: Demo) -> None:
    err.print(
        f"\n[bold green]bitMaskRGB demo: open {demo.page_url}[/]\n"
        "[bold yellow]A SIMULATION:[/] no Telegram, no real money (simulated Lightning node). "
        f"Data and logs in {demo.data_dir}. Ctrl-C stops everything.\n",
        soft_wrap=True,
    )


def demo(
    port: Annotated[
        int | None,
        typer.Option(help=f"Port of the chat page (default {DEFAULT_PORT}, or a free one)"),
    ] = None,
    data_dir: Annotated[
        Path, typer.Option(help="The demo's own data directory (database, Redis, logs)")
    ] = Path(".vnode-demo"),
) -> None:
    """Chat with the bitMaskRGB bot in a web page at http://127.0.0.1:3003, without Telegram:
    Alice, Bob and a group, through the real bot, the real vnode and a simulated node."""
    # Imported here, not at the top: the demo's web stack and Bot API server (aiohttp, jinja2)
    # would slow every other vnode command down.
    from vnode.demo.stage import DemoConfig, run_demo

    configure_logging(os.environ.get("VNODE_LOG_LEVEL", "INFO"))
    err.print("starting vnode, the bot and a local Bot API server (the first start takes longer)")
    config = DemoConfig(data_dir, _HOST, _web_port(port))
    try:
        asyncio.run(run_demo(config, _announce))
    except (RuntimeError, TimeoutError) as exc:  # a part did not start: say which, and where
        err.print(f"[bold red]the demo could not start:[/] {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
