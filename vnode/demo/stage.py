"""`vnode demo`: the whole product on one machine, without Telegram. In a data directory of its
own (default ./.vnode-demo), on free loopback ports: `vnode serve` (embedded PostgreSQL and
Redis, the simulated node) as a child process, the local Bot API server (bot_api.py) and the
web chat page (web.py) in this process, and the real bot as `vnode bot` with only a token and
the Bot API server's URL (it finds the rest in the data directory, as `make bot` does).

One stop signal (Ctrl-C) stops everything, in order: the page, the bot, the Bot API server,
then vnode (which stops its node, Redis and database). The children run in sessions of their
own, so the terminal's Ctrl-C reaches only this process, which stops them after; they also die
with it if it is killed."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from vnode.demo.bot_api import FakeTelegram
from vnode.demo.web import create_web_app
from vnode.lightning.sim_process import die_with_parent, stop_child
from vnode.loopback import free_port_pair
from vnode.runtime import STOP_SIGNALS, SignalFreeServer

log = logging.getLogger(__name__)

BOT_ID = 7000000001
_START_S = 180.0  # a first start initialises the database cluster
_STOP_S = 60.0
# The bot's events and receipts show up quickly in a demo (the service's defaults are for a
# real node and real traffic).
_SERVE_SETTINGS = {
    "VNODE_WATCH_INTERVAL_S": "0.2",
    "VNODE_RECONCILE_INTERVAL_S": "0.5",
    "VNODE_ACCESS_LOG": "false",
}


@dataclass(frozen=True)
class DemoConfig:
    data_dir: Path
    web_host: str
    web_port: int


def _child(args: list[str], log_path: Path, settings: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """`vnode <args>` with none of the caller's VNODE_ settings (the demo must not reach a
    database, Redis or node the person configured for something else), plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VNODE_")}
    env.update(settings)
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "vnode.cli", *args],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
            start_new_session=True,
        )


class Demo:
    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self.data_dir = config.data_dir.resolve()
        self.serve_port = free_port_pair()
        self.serve_url = f"http://127.0.0.1:{self.serve_port}"
        self.sim_url = f"http://127.0.0.1:{self.serve_port + 1}"
        # A token of the Bot API's form for the local server; it opens nothing anywhere else.
        self.telegram = FakeTelegram(f"{BOT_ID}:{secrets.token_urlsafe(33)[:35]}")
        self.serve: subprocess.Popen[bytes] | None = None
        self.bot: subprocess.Popen[bytes] | None = None
        self.web: SignalFreeServer | None = None

    @property
    def page_url(self) -> str:
        return f"http://{self.config.web_host}:{self.config.web_port}"

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # An admin key of this run only, never shown: otherwise a first start would mint a
        # bootstrap admin key and print it into serve.log. The demo needs none.
        admin = {"VNODE_ADMIN_KEY": secrets.token_urlsafe(32)}
        self.serve = _child(
            ["serve", "--port", str(self.serve_port), "--data-dir", str(self.data_dir)],
            self.data_dir / "serve.log",
            {**_SERVE_SETTINGS, **admin},
        )
        await self.telegram.start()
        await self._wait(self._serve_ready, "vnode serve to be ready (serve.log)")
        self.bot = _child(
            ["bot"],
            self.data_dir / "bot.log",
            {
                "VNODE_BOT_TOKEN": self.telegram.token,
                "VNODE_BOT_API_URL": self.telegram.base_url,
                "VNODE_DATA_DIR": str(self.data_dir),
            },
        )
        await self._wait(self._bot_polling, "the bot to poll (bot.log)")
        app = create_web_app(self.telegram, self.sim_url)
        config = uvicorn.Config(
            app,
            host=self.config.web_host,
            port=self.config.web_port,
            log_config=None,
            access_log=False,
        )
        self.web = SignalFreeServer(config)  # this process's stop signals are run_demo's
        self._web_task = asyncio.ensure_future(self.web.serve())
        await self._wait(self._started, "the chat page to listen")

    def _started(self) -> bool:
        if self._web_task.done():
            self._web_task.result()  # raises why it could not start
            raise RuntimeError(f"the chat page could not listen on {self.page_url}")
        return self.web is not None and self.web.started

    def _check_children(self) -> None:
        for name, proc in (("vnode serve", self.serve), ("vnode bot", self.bot)):
            if proc is not None and proc.poll() is not None:
                log_name = "serve.log" if proc is self.serve else "bot.log"
                raise RuntimeError(
                    f"{name} exited with {proc.returncode}; see {self.data_dir / log_name}"
                )

    async def _serve_ready(self) -> bool:
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                return (await client.get(f"{self.serve_url}/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    async def _bot_polling(self) -> bool:
        return bool(self.telegram.calls("getUpdates"))

    async def _wait(self, condition: Callable[[], bool | Awaitable[bool]], what: str) -> None:
        """Poll `condition` (plain or async) until it holds; give up when a child exits or
        the deadline passes."""
        deadline = asyncio.get_running_loop().time() + _START_S
        while True:
            self._check_children()
            held = condition()
            if not isinstance(held, bool):
                held = await held
            if held:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"timed out after {_START_S:.0f}s waiting for {what}")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.web is not None:
            self.web.should_exit = True
            await asyncio.gather(self._web_task, return_exceptions=True)
        loop = asyncio.get_running_loop()
        if self.bot is not None:
            await loop.run_in_executor(None, stop_child, self.bot, signal.SIGTERM, _STOP_S)
        await self.telegram.stop()
        if self.serve is not None:
            await loop.run_in_executor(None, stop_child, self.serve, signal.SIGTERM, _STOP_S)


async def run_demo(config: DemoConfig, announce: Callable[[Demo], None]) -> None:
    """Start everything, call `announce(demo)`, and run until a stop signal."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    demo = Demo(config)
    try:
        starting = asyncio.ensure_future(demo.start())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait((starting, stopped), return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()
            announce(demo)
            await stopped
        else:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
    finally:
        log.info("the demo is stopping")
        await demo.stop()
