"""Shared test helpers: real PostgreSQL databases, the app in-process, and vnode processes.
The process helpers themselves are the harness package's (harness/), shared with bench/ and
proving/; this module gives them the tests' settings."""

from __future__ import annotations

import asyncio
import secrets
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import httpx
import pytest
from hypothesis import settings

from harness import serve

# Re-exported: the test modules import these from here.
from harness.postgres import create_database as create_database
from harness.processes import VNODE as VNODE
from harness.waits import wait_until as wait_until
from tests.constants import ADMIN_KEY as ADMIN_KEY
from tests.constants import FAST_PROFILE_EXAMPLES as FAST_PROFILE_EXAMPLES
from tests.constants import RGB_ASSET as RGB_ASSET
from tests.constants import TEMPLATE_DB as TEMPLATE_DB
from vnode.db.dsn import with_database as with_database
from vnode.loopback import free_port as free_port

if TYPE_CHECKING:
    from fastapi import FastAPI


def new_user_id() -> int:
    """A random Telegram-sized id, so tests sharing a database never share users."""
    return secrets.randbelow(2**40) + 10**12


def answer_held_payments_soon(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """For one test: the in-process app behind `client` answers a payment the sim holds with
    202 after 0.2 s, not after the tests' payment_wait_s (1.5 s, which leaves room for an
    ordinary payment to answer 200 under load). For tests that hold every payment they make."""
    settings = client.app.state.services.settings  # type: ignore[attr-defined]
    monkeypatch.setattr(settings, "payment_wait_s", 0.2)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class ServeProcess(serve.ServeProcess):
    """`vnode serve` as a real process on a free port, started at once, with the tests' admin
    key; in the test run's process group (a Ctrl-C of pytest reaches it too)."""

    def __init__(
        self,
        database_url: str | None,
        data_dir: Path,
        *,
        workers: int = 1,
        extra_env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        super().__init__(
            data_dir,
            database_url,
            admin_key=ADMIN_KEY,
            workers=workers,
            env=extra_env,
            port=port,
            log_name="serve-{port}.log",
            own_group=False,
        )
        self.start()

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        proc = self.process.proc
        assert proc is not None  # started in __init__
        return proc

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 30.0) -> int:
        code = super().stop(sig, timeout_s)
        assert code is not None
        return code


def examples(full: int) -> int:
    """A property test's example count under the loaded hypothesis profile: `full` under the
    default profile (`make test`), scaled down with the `fast` one (`make test-fast`)."""
    return max(1, full * settings().max_examples // 100)


@asynccontextmanager
async def in_process(app: FastAPI, key: str | None = ADMIN_KEY) -> AsyncIterator[httpx.AsyncClient]:
    """`app` started (its lifespan: pool, workers, ...) and a client that calls it in-process,
    with `key` as its bearer key (None: no key); the client's `app` is the app, for tests that
    reach its services."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://vnode",
            headers=bearer(key) if key is not None else None,
        ) as client,
    ):
        client.app = app  # type: ignore[attr-defined]
        yield client


POOL_CLOSE_S = 10.0


async def close_pool(pool: asyncpg.Pool) -> None:
    """A test's pool closed, or cut off after POOL_CLOSE_S: a test stopped by its timeout can
    leave a task holding a connection, and `close()` would wait for it for ever (a whole
    make test-fast hung on one such teardown)."""
    try:
        await asyncio.wait_for(pool.close(), POOL_CLOSE_S)
    except TimeoutError:
        pool.terminate()
