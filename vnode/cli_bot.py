"""`vnode bot`: run the bitMaskRGB Telegram bot (settings from the environment; what is not set
is found in the data directory, vnode/bot/defaults.py). `vnode bot --check` says what it
found and runs nothing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from vnode.bot import defaults
from vnode.bot.settings import BotSettings
from vnode.logs import configure_logging
from vnode.runtime import StopRequested, StopSignals, database_url
from vnode.settings import Settings

err = Console(stderr=True)
out = Console()
log = logging.getLogger(__name__)


@contextmanager
def _database(settings: BotSettings, signals: StopSignals) -> Iterator[str]:
    """VNODE_DATABASE_URL, or the data dir's embedded cluster, joined (or started) for as long
    as the bot runs: the last of vnode serve and the bot to stop stops it."""
    if settings.database_url is not None:
        yield settings.database_url.get_secret_value()
        return
    with database_url(Settings(data_dir=settings.data_dir), signals) as dsn:
        yield dsn


def _report(settings: BotSettings) -> int:
    findings = defaults.check(settings)
    for finding in findings:
        mark = "[green]ok[/]  " if finding.ok else "[red]FAIL[/]"
        out.print(
            f"{mark} {finding.what:<11} {finding.found}  [dim]({finding.source})[/]",
            soft_wrap=True,
            highlight=False,
        )
    return 0 if all(finding.ok for finding in findings) else 1


def bot(
    check: Annotated[
        bool, typer.Option("--check", help="Say what the bot found and whether it answers; exit")
    ] = False,
) -> None:
    """Run the bitMaskRGB Telegram bot against vnode's HTTP API (any stop signal stops it).
    Only VNODE_BOT_TOKEN is required: the rest is found in the data directory."""
    try:
        settings = BotSettings()
    except ValidationError as exc:
        err.print("[bold red]vnode bot cannot start:[/]")
        for problem in exc.errors():
            field = str(problem["loc"][0]) if problem["loc"] else "?"
            err.print(f"  VNODE_{field.upper()}: {problem['msg']}")
        raise typer.Exit(2) from None
    if check:
        raise typer.Exit(_report(settings))
    if settings.bot_token is None:
        err.print("[bold red]vnode bot cannot start:[/] VNODE_BOT_TOKEN is not set (@BotFather)")
        raise typer.Exit(2)
    configure_logging(settings.log_level)
    # Imported here, not at the top: aiogram takes 2 s to import, which every other vnode
    # command would pay for nothing.
    from vnode.bot.runtime import run

    async def main(dsn: str) -> None:
        await run(await defaults.completed(settings, dsn), signals)

    signals = StopSignals()
    signals.install()
    try:
        with _database(settings, signals) as dsn, contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main(dsn))
    except StopRequested as stop:
        log.info("stopped by %s before running", stop)
    finally:
        signals.close()
