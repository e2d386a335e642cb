"""Fixtures: a real PostgreSQL (embedded, or VNODE_TEST_DATABASE_URL), the app, API keys."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import settings

from tests import task_dump
from tests.constants import ADMIN_KEY, FAST_PROFILE_EXAMPLES, RGB_ASSET, TEMPLATE_DB

# What the fixtures use is imported inside them: the pytest-xdist controller loads this file
# too, runs no test, and starts its workers only once it has (vnode.app and its FastAPI routes
# alone took 1-2 s of every `make test-fast` before a worker began).
if TYPE_CHECKING:
    import asyncpg
    import httpx
    from selenium.webdriver.remote.webdriver import WebDriver

    from harness.postgres import DatabaseStock
    from harness.redis import RedisServer
    from vnode.apikeys import Scope
    from vnode.settings import Settings

# `--hypothesis-profile fast` (make test-fast): a fifth of the examples. Without it hypothesis
# keeps its own default profile (or its `ci` one), and tests that set their own count scale it
# with tests.support.examples, so `make test` runs every property test with its full count.
settings.register_profile("fast", max_examples=FAST_PROFILE_EXAMPLES)

TEST_SEED = "11" * 32


def pytest_configure(config: pytest.Config) -> None:
    """The processes the tests start see the stop signals as a terminal gives them.

    A shell starts a background job (`cmd &`, as some CI runners do) with SIGINT and SIGQUIT
    ignored, and children inherit that. vnode keeps a signal that was ignored at its start
    ignored (`nohup vnode serve` asks for that; vnode/runtime.py), so the tests that stop a
    `vnode serve` or `vnode bot` with SIGINT would wait for their timeout instead. A handler set
    here is reset to the default in each child (a disposition set to ignore would not be)."""
    del config
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGQUIT) is signal.SIG_IGN:
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)


WEBHOOK_SECRET = "whsec-test-" + "w" * 24


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DSN of a PostgreSQL server the tests may create databases on."""
    from harness.postgres import initialised_cluster

    given = os.environ.get("VNODE_TEST_DATABASE_URL")
    if given:
        yield given
        return
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Parallel workers (make test-fast) share one cluster in the run's temporary folder:
        # the first to start it initialises it, the others attach, the last to stop stops it
        # (as vnode processes share one, docs/adr/0006). Each worker has its own databases.
        data_dir = tmp_path_factory.getbasetemp().parent / "pg" / "data"
    else:
        data_dir = tmp_path_factory.mktemp("pg") / "data"
    cluster = initialised_cluster(data_dir)
    with _lock(tmp_path_factory.getbasetemp().parent / "vnode-pg-start.lock"):
        dsn = cluster.start()
    asyncio.run(_throwaway_durability(dsn))
    yield dsn
    cluster.stop()


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    with path.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        yield


async def _throwaway_durability(dsn: str) -> None:
    """The test cluster is thrown away after the session, so it need not survive a crash of the
    machine: no fsync and no full-page writes. Each copied database, and the checkpoint of all of
    them at the session's end (12-20 s), was flushed to disk. Every commit still writes its WAL
    before it returns, so a crash of PostgreSQL alone loses nothing."""
    import asyncpg

    from tests.support import with_database

    conn = await asyncpg.connect(with_database(dsn, "postgres"))
    try:
        for setting in ("fsync", "full_page_writes"):
            await conn.execute(f"ALTER SYSTEM SET {setting} = off")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def template_db(pg_server: str) -> str:
    """A migrated database that fresh test databases are copied from (fast CREATE DATABASE)."""
    import asyncpg

    from tests.support import with_database
    from vnode.db.migrate import migrate

    admin = await asyncpg.connect(with_database(pg_server, "postgres"))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB}")
        await admin.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    finally:
        await admin.close()
    conn = await asyncpg.connect(with_database(pg_server, TEMPLATE_DB))
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return TEMPLATE_DB


@pytest.fixture(scope="session")
async def database_stock(pg_server: str, template_db: str) -> AsyncIterator[DatabaseStock]:
    """Copies of the template made while tests await I/O, so that fresh_db seldom waits."""
    from harness.postgres import DatabaseStock

    stock = DatabaseStock(pg_server, template_db)
    yield stock
    await stock.close()


@pytest.fixture
async def fresh_db(database_stock: DatabaseStock) -> AsyncIterator[str]:
    """A database of its own, migrated, for a test that needs an otherwise empty ledger: a new
    copy of the template, or a used one reset to the template's rows (harness/postgres.py
    Recycler). When the test is done it is reset for the next one, under a new name, or
    dropped if the test changed a definition in it."""
    dsn = await database_stock.take()
    yield dsn
    await database_stock.give_back(dsn)


@pytest.fixture(scope="session")
async def shared_db(pg_server: str, template_db: str) -> str:
    """One database shared by the API tests; each test uses its own random user ids."""
    from tests.support import create_database

    return await create_database(pg_server, template_db)


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    from vnode.settings import Settings

    values: dict[str, object] = {
        "data_dir": data_dir,
        "admin_key": ADMIN_KEY,
        "master_seed": TEST_SEED,
        "access_log": False,
        "webhook_secret": WEBHOOK_SECRET,
        # LndHub passwords hashed at the cheapest cost allowed: 16 times less CPU per account
        # and login than the default (tests/unit/lndhub checks the default's hash).
        "lndhub_scrypt_log2_n": 10,
        # No node unless a test asks for the sim (port 9 refuses connections at once), so a
        # test can never reach a developer's running `make run` node on 3002.
        "node": "sim",
        "rln_url": "http://127.0.0.1:9",
        # The outbox fan-out on the app's own loop, not on a thread of its own as the service
        # runs it (docs/adr/0027): a thread, a loop and a pool more for every app started
        # in-process cost `make test-fast` about 5 s. The thread is what every `vnode serve` of
        # tests/e2e and proving runs, and what test_redis_streams.py and
        # test_fan_out_thread.py run in-process.
        "events_own_loop": False,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


SIM_HANG_S = 3.0


@pytest.fixture(scope="session")
def sim_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A simulated RGB Lightning Node (`vnode sim serve`) as a real process; yields its URL."""
    from tests.support import free_port
    from vnode.lightning.sim_process import SimProcess

    log_dir = tmp_path_factory.mktemp("sim")
    sim = SimProcess(
        "127.0.0.1",
        free_port(),
        log_dir / "sim.log",
        ("--hang-s", str(SIM_HANG_S), "--rgb-asset", f"{RGB_ASSET}=1000000000"),
    )
    sim.wait_ready()
    yield sim.url
    sim.stop()


def node_settings(sim_url: str) -> dict[str, object]:
    """Settings that point vnode at the sim and make its workers quick, for tests."""
    return {
        "node": "sim",
        "rln_url": sim_url,
        "node_timeout_s": SIM_HANG_S / 2,
        "reconcile_interval_s": 0.2,
        "watch_interval_s": 0.25,
        "payment_wait_s": 1.5,
        "stale_failure_skew_s": 5,
    }


@pytest.fixture(scope="session")
async def app_client(
    shared_db: str, sim_node: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app in-process (lifespan and workers included) on the shared database and
    the simulated node, admin key set."""
    from tests.support import in_process
    from vnode.app import create_app

    app = create_app(
        make_settings(tmp_path_factory.mktemp("app"), **node_settings(sim_node)), shared_db
    )
    async with in_process(app) as client:
        yield client


@pytest.fixture(scope="session")
async def scoped_keys(shared_db: str) -> dict[Scope, str]:
    """One real API key per scope, stored (hashed) in the shared database."""
    import asyncpg

    from vnode.apikeys import Scope, create_key

    conn = await asyncpg.connect(shared_db)
    try:
        keys = {}
        for scope in Scope:
            _, key = await create_key(conn, f"test-{scope.value}", scope)
            keys[scope] = key
        return keys
    finally:
        await conn.close()


@pytest.fixture
async def shared_conn(shared_db: str) -> AsyncIterator[asyncpg.Connection]:
    import asyncpg

    conn = await asyncpg.connect(shared_db)
    yield conn
    await conn.close()


# A real redis-server, for the event tests of tests/integration/events and tests/e2e/events.
@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a redis-server shared by the session; tests use their own stream keys."""
    from harness.redis import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of the test's own, started, that the test may stop and start again."""
    from harness.redis import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis-own"))
    server.start()
    yield server
    server.stop()


# A real headless Chromium (Debian's chromium + chromium-driver), for the web pages' tests.
@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """A fresh headless Chromium for the test (no cookies carried over), quit after it.
    harness.browser.save_screenshot(browser, name) keeps what it shows as test output."""
    from harness.browser import headless_chromium  # selenium loads only for browser tests

    with headless_chromium() as driver:
        yield driver


_DUMP_TIMER = pytest.StashKey[threading.Timer]()


def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> None:
    """Beside pytest-timeout's own timer (this returns None, so its hook runs too): a test
    near its timeout writes what its asyncio tasks await (tests/task_dump.py)."""
    item.stash[_DUMP_TIMER] = task_dump.start(float(settings.timeout))


def pytest_timeout_cancel_timer(item: pytest.Item) -> None:
    timer = item.stash.get(_DUMP_TIMER, None)
    if timer is not None:
        timer.cancel()
