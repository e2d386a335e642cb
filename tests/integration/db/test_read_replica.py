"""VNODE_DATABASE_READ_URL (vnode/db/reads.py): balances and history read from the replica,
except a user's reads right after this process wrote for them and every read while the replica
lags; writes never reach it. The "replica" here is a second database on the suite's server,
empty where the primary has money: what an answer shows tells which one it read."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from harness.postgres import DatabaseStock
from tests.conftest import make_settings
from tests.support import in_process
from vnode.app import create_app
from vnode.db.reads import ReadRouting

BALANCE = {"user_id": 7, "asset_id": "BTC"}


async def test_reads_use_the_replica_and_writes_never_do(
    tmp_path: Path, fresh_db: str, database_stock: DatabaseStock
) -> None:
    replica_dsn = await database_stock.take()
    try:
        settings = make_settings(tmp_path, run_workers=False, database_read_url=replica_dsn)
        async with in_process(create_app(settings, fresh_db)) as client:
            reads = client.app.state.services.reads  # type: ignore[attr-defined]
            assert isinstance(reads, ReadRouting) and reads.replica is not None
            await reads.stop()  # the test takes the lag samples itself, when it chooses
            await reads.sample()

            credit = {"user_id": 7, "amount_msat": 5_000, "reason": "t"}
            assert (await client.post("/admin/credit", json=credit)).status_code == 200
            # Right after its own write, the caller reads the primary.
            primary_reads = reads.primary_reads
            mine = await client.post("/virtual_assetbalance", json=BALANCE)
            assert mine.status_code == 200 and mine.json()["balance_msat"] == 5_000
            assert reads.primary_reads == primary_reads + 1

            # Once the replica has caught up past the write, reads go there (this "replica"
            # never gets the write: it does not know the user).
            await reads.sample()
            replica_reads = reads.replica_reads
            assert (await client.post("/virtual_assetbalance", json=BALANCE)).status_code == 404
            assert (await client.post("/virtual_balances", json={"user_id": 7})).status_code == 404
            history = await client.post("/virtual_history", json={"user_id": 7})
            assert history.status_code == 404
            assert reads.replica_reads >= replica_reads + 3

            # A node made through this process is read from the primary until the replica
            # has caught up past it.
            assert (await client.post("/virtual_node", json={"user_id": 8})).status_code == 200
            made = await client.post("/virtual_balances", json={"user_id": 8})
            assert made.status_code == 200, made.text

            # A replica behind by more than read_max_lag_s: every read on the primary.
            reads.max_lag_s = 0.0
            lagging = await client.post("/virtual_assetbalance", json=BALANCE)
            assert lagging.status_code == 200 and lagging.json()["balance_msat"] == 5_000

            # Writes never go to the replica, and its pool could not write anyway.
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await reads.replica.execute("CREATE TABLE never (id int)")
        replica = await asyncpg.connect(replica_dsn)
        try:
            assert await replica.fetchval("SELECT count(*) FROM virtual_transactions") == 0
        finally:
            await replica.close()
    finally:
        await database_stock.give_back(replica_dsn)
