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

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers (no authentication)")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get(
    "/readyz",
    summary="Readiness: database reachable and migrations current (no authentication)",
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
    ready = checks.get("database") == "ok" and checks.get("migrations") == "current"
    body = {"status": "ready" if ready else "not_ready", "checks": checks}
    return Response(orjson.dumps(body), 200 if ready else 503, media_type="application/json")


@router.get("/metrics", summary="Prometheus metrics of this process (scope: read)",
            responses=documented_errors())
async def metrics(_key: ReadKey, services: ServicesDep) -> Response:
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)
