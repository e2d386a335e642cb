"""Shared test helpers: real PostgreSQL databases, the app in-process, and vnode processes."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx

# Re-exported: the test modules import these from here.
from vnode.db.dsn import with_database as with_database
from vnode.loopback import free_port as free_port
from vnode.loopback import free_port_pair

ADMIN_KEY = "test-admin-" + "k" * 24
RGB_ASSET = "rgb:CJkb4YZw-jRiz2sk-~PARPio-wtVYI1c-XAEYCqO-wTfvRZ8"
TEMPLATE_DB = "vnode_test_template"
VNODE = str(Path(sys.executable).with_name("vnode"))


async def create_database(server_dsn: str, template: str | None = None) -> str:
    """A new empty (or template-copied) database on the test server; returns its DSN."""
    name = "vnode_t_" + secrets.token_hex(6)
    conn = await asyncpg.connect(with_database(server_dsn, "postgres"))
    try:
        clause = f" TEMPLATE {template}" if template else ""
        await conn.execute(f"CREATE DATABASE {name}{clause}")
    finally:
        await conn.close()
    return with_database(server_dsn, name)


def new_user_id() -> int:
    """A random Telegram-sized id, so tests sharing a database never share users."""
    return secrets.randbelow(2**40) + 10**12


async def wait_until(
    condition: Callable[[], Awaitable[bool]], timeout_s: float = 20.0, what: str = "condition"
) -> None:
    """Poll `condition` until it holds or the deadline passes (never a bare sleep)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class ServeProcess:
    """`vnode serve` as a real process on a free port."""

    def __init__(self, database_url: str | None, data_dir: Path, *, workers: int = 1,
                 extra_env: dict[str, str] | None = None, port: int | None = None) -> None:
        embedded_sim = "VNODE_NODE" not in (extra_env or {})
        # A given port restarts a service where its clients expect it.
        self.port = port or (free_port_pair() if embedded_sim else free_port())
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("VNODE_")}
        env.update({"VNODE_ADMIN_KEY": ADMIN_KEY, "VNODE_ACCESS_LOG": "false"})
        if database_url is not None:
            env["VNODE_DATABASE_URL"] = database_url
        env.update(extra_env or {})
        env = {k: v for k, v in env.items() if v != ""}  # "" in extra_env unsets a variable
        self.log_path = data_dir / f"serve-{self.port}.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [VNODE, "serve", "--port", str(self.port), "--data-dir", str(data_dir),
             "--workers", str(workers)],
            env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        async with httpx.AsyncClient(base_url=self.url) as client:
            async def ready() -> bool:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"vnode serve exited: {self.log_path.read_text()[-2000:]}")
                try:
                    return (await client.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False
            await wait_until(ready, timeout_s, "vnode serve to be ready")

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
