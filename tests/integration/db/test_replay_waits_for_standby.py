"""A replay of a stored answer must not confirm a commit a synchronous standby may not have
(docs/adr/0023). With `synchronous_standby_names` naming a standby that never comes, every
writing commit waits for it (wait event SyncRep): a replay of a transfer must wait too, not
answer from what this server alone has. PostgreSQL here is a cluster of the test's own, since
the setting is server-wide."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass

import asyncpg
import pytest

from harness.postgres import initialised_cluster
from harness.waits import wait_until
from vnode.db.dsn import with_database
from vnode.db.migrate import migrate
from vnode.db.pool import create_pool
from vnode.keys import SoftwareSigner
from vnode.ledger.admin import AdminCommand, AdminMove, admin_move
from vnode.ledger.calls import Idempotency
from vnode.ledger.transfers import TransferCommand, transfer

SIGNER = SoftwareSigner(bytes.fromhex("11" * 32))
TEMPLATE = "ledger_template"


async def _sync_standby(conn: asyncpg.Connection, names: str) -> None:
    await conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'")
    await conn.execute("SELECT pg_reload_conf()")
    await wait_until(
        lambda: _setting_is(conn, names), what=f"synchronous_standby_names = {names!r}"
    )
    # Whether a commit waits is decided by a flag in shared memory that the checkpointer sets
    # when it reloads the configuration, not by the setting a backend shows: a loaded
    # make test-fast saw the replay commit at once, the checkpointer not yet reloaded. It
    # reloads at the top of its loop, before the checkpoint this asks for and waits on.
    await conn.execute("CHECKPOINT")


async def _setting_is(conn: asyncpg.Connection, names: str) -> bool:
    return bool(await conn.fetchval("SHOW synchronous_standby_names") == names)


@dataclass
class Ledger:
    admin: asyncpg.Connection
    pool: asyncpg.Pool

    async def waiting_for_standby(self) -> int:
        """Backends whose commit waits for the synchronous standby."""
        return int(
            await self.admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
            )
        )


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A cluster of this module's own, with a migrated template database; yields its DSN.
    One for both tests: each test's ledger is a copy of the template, and each test leaves
    `synchronous_standby_names` empty again."""
    server = initialised_cluster(tmp_path_factory.mktemp("pg") / "data")
    dsn = await asyncio.to_thread(server.start)
    try:
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(f"CREATE DATABASE {TEMPLATE}")
        finally:
            await admin.close()
        template = await asyncpg.connect(with_database(dsn, TEMPLATE))
        try:
            await migrate(template)
        finally:
            await template.close()
        yield dsn
    finally:
        await asyncio.to_thread(server.stop)


@pytest.fixture
async def ledger(cluster: str) -> AsyncIterator[Ledger]:
    """A migrated ledger of the test's own on that cluster, user 1 credited 10,000 sat."""
    name = f"ledger_{secrets.token_hex(4)}"
    server = await asyncpg.connect(cluster)
    try:
        await server.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    finally:
        await server.close()
    dsn = with_database(cluster, name)
    admin = await asyncpg.connect(dsn)
    pool = await create_pool(dsn, min_size=1, max_size=4)
    try:
        credit = AdminCommand(AdminMove.CREDIT, 1, "BTC", 10_000, "test")
        funded = await admin_move(pool, SIGNER, credit, Idempotency("test", None))
        assert funded.code == "ok", funded
        yield Ledger(admin, pool)
    finally:
        await _sync_standby(admin, "")
        await pool.close()
        await admin.close()


async def test_a_replay_waits_for_the_synchronous_standby(ledger: Ledger) -> None:
    key = Idempotency("test", "replay-1")
    move = TransferCommand(1, 2, "BTC", 1000, None)
    first = await transfer(ledger.pool, SIGNER, move, key)
    assert first.code == "ok", first

    await _sync_standby(ledger.admin, "ghost")
    replay = asyncio.create_task(transfer(ledger.pool, SIGNER, move, key))
    await wait_until(
        lambda: _positive(ledger.waiting_for_standby()),
        what="the replay waiting for the standby",
    )
    assert not replay.done()
    await _sync_standby(ledger.admin, "")
    again = await asyncio.wait_for(replay, 30)
    assert again.body == first.body  # the stored answer, now on "both machines"


async def test_a_cancelled_money_call_does_not_cancel_its_commit_wait(ledger: Ledger) -> None:
    """A request cancelled while its transfer's COMMIT waits for the standby (a client gone, a
    shutdown) leaves the wait alone: cancelling it would make the transfer visible here
    before the standby has it."""
    await _sync_standby(ledger.admin, "ghost")
    move = TransferCommand(1, 2, "BTC", 1000, None)
    request = asyncio.create_task(transfer(ledger.pool, SIGNER, move, Idempotency("t", "c-1")))
    await wait_until(lambda: _positive(ledger.waiting_for_standby()), what="the commit waiting")
    request.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await request
    # Still waiting: a cancel reaching PostgreSQL would have ended the wait. asyncpg sends a
    # cancel from a task of the connection's; once none is in flight, any cancel has been
    # delivered.
    await wait_until(lambda: not _cancels_in_flight(ledger.pool), what="cancels delivered")
    assert await ledger.waiting_for_standby() == 1
    await _sync_standby(ledger.admin, "")
    await wait_until(lambda: _zero(ledger.waiting_for_standby()), what="the commit done")
    booked = await ledger.admin.fetchval(
        "SELECT count(*) FROM virtual_transactions WHERE kind = 'transfer'"
    )
    assert booked == 1


def _cancels_in_flight(pool: asyncpg.Pool) -> bool:
    # asyncpg's own bookkeeping (Connection._cancellations): the tasks sending cancel requests.
    connections = [getattr(h, "_con", None) for h in getattr(pool, "_holders", [])]
    return any(getattr(c, "_cancellations", None) for c in connections if c is not None)


async def _positive(count: Awaitable[int]) -> bool:
    return await count > 0


async def _zero(count: Awaitable[int]) -> bool:
    return await count == 0
