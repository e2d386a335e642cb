"""Health, readiness and metrics.

/healthz and /readyz answer anyone, but only up / ready: the node's identity, solvency and
error details need a read key (security review L3). Nothing here calls the node: its state
and spendable balances come from the monitor.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import asyncpg
import orjson
from fastapi import APIRouter, Depends
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST

from vnode.api.deps import ReadKey, ServicesDep, authorize
from vnode.api.errors import documented_errors
from vnode.api.models import Readiness, documented
from vnode.apikeys import Scope
from vnode.db.migrate import MigrationError, pending_migrations
from vnode.errors import ErrorCode
from vnode.ledger import solvency
from vnode.lightning.monitor import NodeState
from vnode.workers.loops import MONEY_WORKERS

router = APIRouter(tags=["operations"])
_optional_bearer = HTTPBearer(auto_error=False)
DATABASE_CHECK_S = 2.0


@router.get("/healthz", summary="Liveness: the process answers (no authentication)")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get(
    "/readyz",
    summary="Readiness: database, migrations, master node and workers (details: scope read)",
    description="503 `not_ready` unless the database is reachable, migrations are current and "
    "the master node is ready (not locked, reachable); 200 `degraded` when a money worker "
    "has not completed a pass for VNODE_MONEY_WORKER_STALE_S (60 s); else 200 `ready`. Without "
    'a key the answer is only `{"status"}`; with a read key it also has the checks, the '
    "node (and whether it is SIMULATED), the workers' last passes and, per asset, what users "
    "are owed against what the node could spend at the monitor's last look.",
    responses={
        **documented(Readiness),
        503: {
            "model": Readiness,
            "description": "Not ready; with a read key, `checks` says which part.",
        },
        **documented_errors(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN),
    },
    # The key is optional (`{}`): without one, the bare verdict.
    openapi_extra={"security": [{}, {"HTTPBearer": []}]},
)
async def readyz(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_optional_bearer)],
) -> Response:
    if credentials is not None:  # a key that is given must be good
        await authorize(services.keys, credentials.credentials, Scope.READ, services.rate)
    checks = await _database_checks(services)
    node = services.monitor.as_json()
    checks["node"] = str(node["state"])
    stale = services.workers.stale(MONEY_WORKERS, services.settings.money_worker_stale_s)
    checks["workers"] = "ok" if not stale else "stale: " + ", ".join(stale)
    ready = (
        checks["database"] == "ok"
        and checks["migrations"] == "current"
        and node["state"] == NodeState.READY.value
    )
    status = "not_ready" if not ready else "degraded" if stale else "ready"
    code = 200 if ready else 503
    if credentials is None:
        return Response(orjson.dumps({"status": status}), code, media_type="application/json")
    body: dict[str, object] = {
        "status": status,
        "checks": checks,
        "node": node,
        "workers": _workers(services),
    }
    if node["simulated"]:
        body["warning"] = "SIMULATED master node: no real money moves"
    if checks["database"] == "ok":
        body["solvency"] = await _solvency(services)
    return Response(orjson.dumps(body), code, media_type="application/json")


async def _database_checks(services: ServicesDep) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        # Bounded: a database that does not answer makes readiness fail, not hang.
        async with asyncio.timeout(DATABASE_CHECK_S), services.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
            checks["database"] = "ok"
            todo = await pending_migrations(conn)
            checks["migrations"] = "current" if not todo else f"{len(todo)} pending"
    except (
        OSError,
        TimeoutError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        MigrationError,
    ) as exc:
        checks.setdefault("database", f"unreachable: {type(exc).__name__}")
        checks.setdefault("migrations", "unknown")
    return checks


def _workers(services: ServicesDep) -> dict[str, object]:
    now = time.time()
    return {
        name: {
            "last_success_age_s": round(now - at, 1) if at else None,
            "failures": services.workers.failures.get(name, 0),
        }
        for name in sorted(services.workers.started_at)
        for at in [services.workers.last_success.get(name)]
    }


async def _solvency(services: ServicesDep) -> dict[str, object]:
    spendable = services.monitor.spendable
    age = round(time.time() - spendable.checked_at, 1) if spendable.checked_at else None
    if spendable.balances is None:
        return {"checked_age_s": age, "assets": None, "unknown": spendable.error}
    owed = await solvency.liabilities(services.pool)
    return {
        "checked_age_s": age,
        "assets": [row.as_json() for row in solvency.compare(owed, spendable.balances)],
    }


@router.get(
    "/metrics",
    summary="Prometheus metrics of this process (scope: read)",
    responses={
        200: {
            "description": "The Prometheus text exposition format.",
            "content": {CONTENT_TYPE_LATEST.split(";")[0]: {}},
        },
        **documented_errors(),
    },
)
async def metrics(_key: ReadKey, services: ServicesDep) -> Response:
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)
