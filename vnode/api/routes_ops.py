"""Health, readiness and metrics."""

from __future__ import annotations

import asyncpg
import orjson
from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from vnode.api.deps import ReadKey, ServicesDep
from vnode.api.errors import documented_errors
from vnode.db.migrate import MigrationError, pending_migrations
from vnode.ledger import solvency
from vnode.lightning.base import NodeError
from vnode.lightning.monitor import NodeState

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers (no authentication)")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get(
    "/readyz",
    summary="Readiness: database, migrations and master node (no authentication)",
    description="503 unless the database is reachable, migrations are current and the master "
    "node is ready (not locked, reachable). Also says whether the node is SIMULATED and, per "
    "asset, what users are owed against what the node can spend.",
    responses={503: {"description": "Not ready; `checks` says which part failed."}},
)
async def readyz(services: ServicesDep) -> Response:
    checks: dict[str, str] = {}
    try:
        async with services.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
            checks["database"] = "ok"
            todo = await pending_migrations(conn)
            checks["migrations"] = "current" if not todo else f"{len(todo)} pending"
    except (OSError, asyncpg.PostgresError, MigrationError) as exc:
        checks.setdefault("database", f"unreachable: {type(exc).__name__}")
        checks.setdefault("migrations", "unknown")
    node = services.monitor.as_json()
    checks["node"] = str(node["state"])
    ready = (checks.get("database") == "ok" and checks.get("migrations") == "current"
             and node["state"] == NodeState.READY.value)
    body: dict[str, object] = {"status": "ready" if ready else "not_ready", "checks": checks,
                               "node": node}
    if node["simulated"]:
        body["warning"] = "SIMULATED master node: no real money moves"
    if checks.get("database") == "ok" and node["state"] == NodeState.READY.value:
        body["solvency"] = await _solvency(services)
    return Response(orjson.dumps(body), 200 if ready else 503, media_type="application/json")


async def _solvency(services: ServicesDep) -> list[dict[str, object]] | str:
    try:
        spendable = await services.backend.spendable_balances()
    except NodeError as exc:
        return f"unknown: {exc}"
    owed = await solvency.liabilities(services.pool)
    return [row.as_json() for row in solvency.compare(owed, spendable)]


@router.get("/metrics", summary="Prometheus metrics of this process (scope: read)",
            responses={200: {"description": "The Prometheus text exposition format.",
                             "content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}},
                       **documented_errors()})
async def metrics(_key: ReadKey, services: ServicesDep) -> Response:
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)
