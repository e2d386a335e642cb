"""`vnode bot`: run the bitMaskRGB Telegram bot (settings from the environment)."""

from __future__ import annotations

import asyncio
import contextlib

import typer
from pydantic import ValidationError
from rich.console import Console

from vnode.bot.settings import BotSettings
from vnode.logs import configure_logging

err = Console(stderr=True)
_REQUIRED = {
    "bot_token": "VNODE_BOT_TOKEN (from @BotFather)",
    "api_key": "VNODE_API_KEY (a vnode key of scope spend: vnode keys create --scope spend)",
    "redis_url": "VNODE_REDIS_URL (conversation state and vnode's event stream)",
    "database_url": "VNODE_DATABASE_URL (PostgreSQL for the bot's profiles)",
}


def bot() -> None:
    """Run the bitMaskRGB Telegram bot against vnode's HTTP API (Ctrl-C stops it)."""
    try:
        settings = BotSettings()
    except ValidationError as exc:
        err.print("[bold red]vnode bot cannot start:[/]")
        for problem in exc.errors():
            field = str(problem["loc"][0]) if problem["loc"] else "?"
            err.print(f"  {_REQUIRED.get(field, 'VNODE_' + field.upper())}: {problem['msg']}")
        raise typer.Exit(2) from None
    configure_logging(settings.log_level)
    # Imported here, not at the top: aiogram takes 2 s to import, which every other vnode
    # command would pay for nothing.
    from vnode.bot.runtime import run

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(settings))
