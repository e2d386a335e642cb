"""A primary demoted under a running app (its backends terminated, as Patroni does, and the
database now read-only, as a replica is) answers 503 database_unavailable, never 500; once it
takes writes again the same app books the transfer, once, on a resend with the same key."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import httpx

from harness.waits import wait_until
from tests.conftest import make_settings
from tests.support import in_process
from vnode.app import create_app
from vnode.db.dsn import database_of, with_database

KEY = {"Idempotency-Key": "demoted-1"}
TRANSFER = {"from_user_id": 11, "to_user_id": 12, "asset_id": "BTC", "amount_msat": 1000}


async def _demote(dsn: str, read_only: bool) -> None:
    database = database_of(dsn)
    admin = await asyncpg.connect(with_database(dsn, "postgres"))
    try:
        setting = "on" if read_only else "off"
        await admin.execute(
            f'ALTER DATABASE "{database}" SET default_transaction_read_only = {setting}'
        )
        await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    finally:
        await admin.close()


async def test_a_demoted_primary_is_503_then_the_resend_books_once(
    tmp_path: Path, fresh_db: str
) -> None:
    app = create_app(make_settings(tmp_path, run_workers=False), fresh_db)
    async with in_process(app) as client:
        credit = {"user_id": 11, "amount_msat": 10_000, "reason": "t"}
        assert (await client.post("/admin/credit", json=credit)).status_code == 200
        await _demote(fresh_db, read_only=True)
        for _ in range(3):  # a terminated pooled connection, then a read-only new one
            answer = await client.post("/virtual_transfer", json=TRANSFER, headers=KEY)
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] == "database_unavailable"
        await _demote(fresh_db, read_only=False)

        async def booked() -> bool:
            answer = await client.post("/virtual_transfer", json=TRANSFER, headers=KEY)
            assert answer.status_code in (200, 503), answer.text
            return answer.status_code == 200

        await wait_until(booked, what="the transfer booked once the primary takes writes")
        again: httpx.Response = await client.post("/virtual_transfer", json=TRANSFER, headers=KEY)
        assert again.status_code == 200
    conn = await asyncpg.connect(fresh_db)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM virtual_transactions WHERE kind = 'transfer'"
        )
    finally:
        await conn.close()
    assert count == 1
