"""A database that cannot be reached is a dependency failing, not a bug: every route, on the
fast path or FastAPI's, LndHub's and LNURL's included, answers 503 `database_unavailable` (in
its own shape) with Retry-After, saying the effect is unknown, never a 500; and when the server
is back the same process serves again, its key-revocation listener re-subscribed, and a client
that kept resending a transfer with one Idempotency-Key has it booked exactly once. PostgreSQL
here is a real cluster of the test's own, stopped under the running app and started again."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from harness.postgres import initialised_cluster
from harness.waits import wait_until
from tests.conftest import make_settings
from tests.support import ADMIN_KEY, in_process
from vnode.app import create_app
from vnode.client import RetryPolicy, VNodeClient
from vnode.db.migrate import migrate


def _stable_address(dsn: str, link_dir: Path) -> str:
    """The same DSN through `link_dir`, whose socket is a link to the server's: each start of
    the embedded server makes a new socket directory, a real server keeps its address."""
    real = Path(dict(parse_qsl(urlsplit(dsn).query))["host"])
    link_dir.mkdir(exist_ok=True)
    for socket in real.glob(".s.PGSQL.*"):
        link = link_dir / socket.name
        link.unlink(missing_ok=True)
        link.symlink_to(socket)
    return urlunsplit(urlsplit(dsn)._replace(query=urlencode({"host": str(link_dir)})))


TRANSFER = {"from_user_id": 1, "to_user_id": 2, "asset_id": "BTC", "amount_msat": 1000}


async def test_every_route_answers_503_while_the_database_is_down_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = initialised_cluster(tmp_path / "pg" / "data")
    dsn = _stable_address(await asyncio.to_thread(cluster.start), tmp_path / "sock")
    try:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        settings = make_settings(
            tmp_path / "app", public_url="https://vnode.example", run_workers=False
        )
        app = create_app(settings, dsn)
        async with in_process(app) as client:
            keys = app.state.services.keys
            spec = (await client.get("/openapi.json")).json()["paths"]
            for path, method in (
                ("/virtual_assetbalance", "post"),
                ("/admin/limits/{user_id}", "get"),
                ("/virtual_transfer", "post"),
            ):
                documented = spec[path][method]["responses"]["503"]["description"]
                assert "`database_unavailable`" in documented, path
            for user in (1, 2):
                made = await client.post("/virtual_node", json={"user_id": user})
                assert made.status_code == 200, made.text
            funded = await client.post(
                "/admin/credit", json={"user_id": 1, "amount_msat": 10_000, "reason": "t"}
            )
            assert funded.status_code == 200, funded.text

            await asyncio.to_thread(cluster.stop)
            caplog.clear()
            fast = {"user_id": 1, "asset_id": "BTC"}
            answers = [
                await client.post("/virtual_assetbalance", json=fast),  # the fast path
                await client.get("/admin/limits/1"),  # a FastAPI route
                await client.post(  # a money route: its effect is what is unknown
                    "/virtual_transfer", json=TRANSFER, headers={"Idempotency-Key": "t-1"}
                ),
            ]
            for answer in answers:
                assert answer.status_code == 503, (answer.request.url, answer.text)
                assert answer.headers["retry-after"] == "1"
                error = answer.json()["error"]
                assert error["code"] == "database_unavailable"
                assert "unknown" in error["message"], error
                assert "same Idempotency-Key" in error["message"], error
            lndhub = await client.post("/lndhub/auth", json={"login": "x", "password": "y"})
            assert lndhub.status_code == 503, lndhub.text
            assert lndhub.json()["error"] is True and lndhub.json()["code"] == 6
            assert lndhub.headers["retry-after"] == "1"
            lnurl = await client.get("/.well-known/lnurlp/alice")
            assert lnurl.status_code == 503, lnurl.text
            assert lnurl.json()["status"] == "ERROR" and lnurl.json()["reason"]
            # One line each, no traceback: a failing dependency is not vnode's bug.
            down = [r for r in caplog.records if r.name == "vnode.http"]
            assert down and all(r.levelno == logging.WARNING and not r.exc_info for r in down)
            assert not [
                r
                for r in caplog.records
                if r.name.startswith("vnode") and r.levelno >= logging.ERROR
            ]

            # A client resending the transfer with its key while the database is down ...
            resending = VNodeClient(
                "http://vnode",
                ADMIN_KEY,
                transport=httpx.ASGITransport(app=app),
                retry=RetryPolicy(attempts=500, base_s=0.05, cap_s=0.3, total_s=120),
            )
            async with resending:
                sent = asyncio.create_task(
                    resending.transfer(1, 2, amount_msat=1000, idempotency_key="t-1")
                )
                await wait_until(lambda: resending.resends >= 2, what="two resends")
                assert not sent.done()
                # ... the server comes back: no restart of the process.
                _stable_address(await asyncio.to_thread(cluster.start), tmp_path / "sock")
                done = await asyncio.wait_for(sent, 60)
                assert done.sender_balance.balance_msat == 9_000
                again = await resending.transfer(1, 2, amount_msat=1000, idempotency_key="t-1")
                assert again.transfer_id == done.transfer_id  # a replay, not a second transfer

            balance = await client.post("/virtual_assetbalance", json=fast)
            assert balance.status_code == 200 and balance.json()["balance_msat"] == 9_000
            limits = await client.get("/admin/limits/1")
            assert limits.status_code == 200, limits.text
            # The revocation listener noticed the loss, and listens again.
            await wait_until(
                lambda: keys.resubscriptions >= 1 and keys.listening, what="LISTEN again"
            )
        check = await asyncpg.connect(dsn)
        try:
            booked = await check.fetchval(
                "SELECT count(*) FROM virtual_transactions WHERE kind = 'transfer'"
            )
        finally:
            await check.close()
        assert booked == 1
    finally:
        await asyncio.to_thread(cluster.stop)
