"""A database that cannot be reached is a dependency failing, not a bug: every route, on the
fast path or FastAPI's, answers 503 `unavailable` saying whether anything may have happened,
never a 500. PostgreSQL here is a real cluster of the test's own, stopped under the running
app and started again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx

from tests.conftest import make_settings
from tests.support import ADMIN_KEY, bearer
from vnode.app import create_app
from vnode.db.embedded import EmbeddedPostgres
from vnode.db.migrate import migrate


async def test_every_route_answers_503_while_the_database_is_down(tmp_path: Path) -> None:
    cluster = EmbeddedPostgres(tmp_path / "pg" / "data")
    dsn = await asyncio.to_thread(cluster.start)
    try:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        app = create_app(make_settings(tmp_path / "app"), dsn)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://vnode", headers=bearer(ADMIN_KEY)
            ) as client:
                spec = (await client.get("/openapi.json")).json()["paths"]
                for path, method in (
                    ("/virtual_assetbalance", "post"),
                    ("/admin/limits/{user_id}", "get"),
                    ("/virtual_transfer", "post"),
                ):
                    documented = spec[path][method]["responses"]["503"]["description"]
                    assert "`unavailable`" in documented, path
                fast = {"user_id": 1, "asset_id": "BTC"}
                ok = await client.post("/virtual_assetbalance", json=fast)
                assert ok.status_code in (200, 404), ok.text  # the database answers

                await asyncio.to_thread(cluster.stop)
                answers = [
                    await client.post("/virtual_assetbalance", json=fast),  # the fast path
                    await client.get("/admin/limits/1"),  # a FastAPI route
                    await client.post(  # a money route: its effect is what is unknown
                        "/virtual_transfer",
                        json={
                            "from_user_id": 1,
                            "to_user_id": 2,
                            "asset_id": "BTC",
                            "amount_msat": 1000,
                        },
                    ),
                ]
                for answer in answers:
                    assert answer.status_code == 503, (answer.request.url, answer.text)
                    error = answer.json()["error"]
                    assert error["code"] == "unavailable"
                    assert "unknown" in error["message"], error
                    assert "retry" in error["message"].lower(), error
                await asyncio.to_thread(cluster.start)  # the app's shutdown closes its pool
    finally:
        await asyncio.to_thread(cluster.stop)
