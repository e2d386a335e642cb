"""Two `vnode serve` processes on one database: no overspend under a 200-request race."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx

from tests.conftest import TEST_SEED
from tests.support import ADMIN_KEY, ServeProcess, bearer, create_database, new_user_id
from vnode.db.migrate import load_migrations
from vnode.ledger.audit import run_audit

RACERS = 200
COVERED = 50
AMOUNT_MSAT = 1_000


async def test_200_racing_transfers_over_two_processes(pg_server: str, tmp_path: Path) -> None:
    # An empty database: the two processes also race to apply the migrations.
    dsn = await create_database(pg_server)
    env = {"VNODE_MASTER_SEED": TEST_SEED}
    servers = [ServeProcess(dsn, tmp_path / f"s{i}", extra_env=env) for i in range(2)]
    try:
        await asyncio.gather(*(s.wait_ready() for s in servers))
        sender = new_user_id()
        limits = httpx.Limits(max_connections=RACERS)
        async with httpx.AsyncClient(
            headers=bearer(ADMIN_KEY), limits=limits, timeout=60
        ) as client:
            funded = await client.post(
                f"{servers[0].url}/admin/credit",
                json={"user_id": sender, "amount_msat": COVERED * AMOUNT_MSAT, "reason": "race"},
            )
            assert funded.status_code == 200, funded.text
            recipients = [new_user_id() for _ in range(10)]
            answers = await asyncio.gather(
                *(
                    client.post(
                        f"{servers[i % 2].url}/virtual_transfer",
                        json={
                            "from_user_id": sender,
                            "to_user_id": recipients[i % 10],
                            "amount_msat": AMOUNT_MSAT,
                        },
                    )
                    for i in range(RACERS)
                )
            )
            statuses = [a.status_code for a in answers]
            assert statuses.count(200) == COVERED, statuses
            assert statuses.count(409) == RACERS - COVERED
            assert {a.json()["error"]["code"] for a in answers if a.status_code == 409} == {
                "insufficient_balance"
            }
            left = await client.post(
                f"{servers[1].url}/virtual_assetbalance", json={"user_id": sender}
            )
            assert left.json()["balance_msat"] == 0
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SELECT min(spendable) FROM ln_user_balances") >= 0
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM virtual_transactions WHERE kind = 'transfer'"
                )
                == COVERED
            )
            applied = await conn.fetchval("SELECT count(*) FROM schema_migrations")
            assert applied == len(load_migrations())
            report = await run_audit(conn)
            assert report.clean, report.differences
        finally:
            await conn.close()
    finally:
        codes = [s.stop() for s in servers]
    assert codes == [0, 0], [s.log()[-2000:] for s in servers]
