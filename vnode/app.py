"""create_app(settings): the FastAPI application. Nothing is wired at import time."""

from __future__ import annotations

import copy
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI
from starlette.routing import BaseRoute

from vnode import __version__
from vnode.api import (
    routes_admin,
    routes_events,
    routes_ledger,
    routes_limits,
    routes_lndhub,
    routes_lnurl,  # Lightning Addresses (issue 12, part 2)
    routes_ops,
    routes_payments,
    routes_proofs,
    routes_webhooks,
)
from vnode.api.body_limit import BodyLimit
from vnode.api.deps import Services
from vnode.api.errors import install_error_handlers
from vnode.api.fastpath import FastPath
from vnode.api.middleware import RequestContextMiddleware
from vnode.apikeys import KeyVerifier
from vnode.console import routes as console_routes
from vnode.console.traffic import roll_up
from vnode.db.migrate import migrate
from vnode.db.pool import create_pool
from vnode.db.reads import ReadRouting
from vnode.events.dispatcher import Dispatcher
from vnode.events.fanout_thread import FanOutThread
from vnode.keys import SoftwareSigner, load_or_create_seed
from vnode.ledger.transfer_batch import TransferBatcher
from vnode.lightning.base import LightningBackend
from vnode.lightning.monitor import NodeMonitor, NodeState
from vnode.lightning.registry import create_backend
from vnode.limits.rate import RateLimiter
from vnode.limits.store import defaults_from_settings, write_defaults
from vnode.logs import configure_logging
from vnode.metrics import Metrics
from vnode.payments.send import PaymentSender
from vnode.settings import Settings
from vnode.workers.loops import start_workers
from vnode.workers.supervisor import Supervisor

log = logging.getLogger(__name__)
TRAFFIC_ROLLUP_S = 30.0

DESCRIPTION = """
Virtual Lightning nodes for the bitMaskRGB wallet: one per Telegram user, on one master node.

**Authentication.** Every endpoint except `/healthz`, `/readyz` and the docs takes an API key as
`Authorization: Bearer vnk_...`. Scopes are ordered, each including those below it:
`admin` > `spend` (moves money) > `receive` (invoices, nodes) > `read`. Beside them,
`console` (the operator console's read-only scope, /console) reaches what `read` reaches.
A missing or unknown key answers 401, a key whose scope is too weak 403.

**Errors.** Every refusal is `{"error": {"code", "message"}, "request_id"}` with a stable `code`;
each endpoint lists the codes it can answer. The `X-Request-ID` header echoes the request id.

**Amounts** are JSON integers with the unit in the field name: `amount_msat`, `amount_sats`,
`asset_amount`. Zero, negative, fractional, boolean, string and out-of-range values are refused.
"""


# Every route, in matching order. The routers are built once, when their modules load, with
# their prefixes, tags and documented errors applied, and each app serves the same route objects.
# (app.include_router would wrap each router, and FastAPI would build every route's request and
# response handling again for each app, on its first request: 0.2-0.3 s of CPU per app, most of
# the cost of the many apps the tests start.)
ROUTES: list[BaseRoute] = [
    route
    for router in (
        routes_ledger.router,
        routes_payments.router,
        routes_admin.router,
        routes_ops.router,
        routes_events.router,
        routes_webhooks.router,
        routes_lndhub.router,
        routes_limits.router,
        routes_lnurl.router,  # Lightning Addresses (issue 12, part 2)
        console_routes.router,  # the operator console, /console (issue 14)
        routes_proofs.router,  # proofs of liabilities (issue 16)
    )
    for route in router.routes
]


def create_app(settings: Settings, database_url: str) -> FastAPI:
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Everything started here is stopped in reverse order, whatever fails on the way.
        async with AsyncExitStack() as stack:
            seed = load_or_create_seed(
                settings.seed_path,
                settings.master_seed.get_secret_value() if settings.master_seed else None,
            )
            pool = await create_pool(
                database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max
            )
            stack.push_async_callback(pool.close)
            reads = await _reads(settings, pool)
            stack.push_async_callback(reads.close)
            async with pool.acquire() as conn:
                applied = await migrate(conn)
            if applied:
                log.info("migrations applied", extra={"migrations": [m.name for m in applied]})
            # Per-user limits: this process's VNODE_LIMIT_* become the defaults (docs/LIMITS.md).
            await write_defaults(pool, defaults_from_settings(settings))
            admin_key = settings.admin_key.get_secret_value() if settings.admin_key else None
            keys = KeyVerifier(pool, admin_key, settings.api_key_cache_s)
            await keys.start()
            stack.push_async_callback(keys.stop)
            backend = _backend(settings)
            stack.push_async_callback(backend.close)
            monitor = await _monitor(settings, pool, backend)
            supervisor = Supervisor(metrics)
            signer = SoftwareSigner(seed)
            app.state.services = Services(
                settings,
                pool,
                signer,
                keys,
                metrics,
                backend,
                monitor,
                PaymentSender(pool, backend, monitor, settings, metrics),
                supervisor,
                rate=RateLimiter.from_settings(pool, settings),
                reads=reads,
                transfers=(
                    TransferBatcher(
                        pool, settings.transfer_batch_max, settings.transfer_batch_in_flight
                    )
                    if settings.transfer_batch_max > 1
                    else None
                ),
            )
            own_loop = settings.run_workers and settings.events_own_loop
            # With the fan-out on its own loop, the API's dispatcher delivers webhooks only.
            dispatcher = _dispatcher(settings, pool, redis=not own_loop)
            stack.push_async_callback(dispatcher.close)
            # Stopped before the dispatcher, the backend and the pool they use.
            stack.push_async_callback(supervisor.stop)
            if settings.run_workers:
                start_workers(supervisor, pool, backend, monitor, settings, metrics, signer)
                if own_loop:
                    fan_out = FanOutThread(settings, database_url, metrics)
                    await fan_out.start()
                    stack.push_async_callback(fan_out.stop)
                else:
                    supervisor.every(
                        "event-fan-out", settings.events_interval_s, dispatcher.fan_out
                    )
                    supervisor.every(
                        "redis-delivery", settings.events_interval_s, dispatcher.deliver_redis
                    )
                supervisor.every(
                    "webhook-delivery", settings.events_interval_s, dispatcher.deliver_webhooks
                )
                # The console's traffic counts per minute (vnode/console/traffic.py).
                supervisor.every("console-traffic", TRAFFIC_ROLLUP_S, lambda: roll_up(pool))
            # Start-up objects (modules, the app) never die: move them out of the collector's
            # sight, and collect the young generation less often. Full collections of that
            # heap were 16% of a worker's time under load (docs/PERFORMANCE.md).
            gc.freeze()
            gc.set_threshold(50_000, 20, 100)
            yield

    app = FastAPI(
        title="vnode",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        routes=list(ROUTES),  # a list of its own: FastAPI adds /openapi.json and /docs
    )
    install_error_handlers(app)
    app.openapi = lambda: _openapi_of(app)  # type: ignore[method-assign]
    # Inner to outer: the fast path of the hot routes (their FastAPI routes come from the same
    # table, in routes_ledger) runs inside the request-context middleware, so it gets the same
    # request id, metrics, access log and 500 answer as every route.
    app.add_middleware(FastPath, routes=routes_ledger.HOT_ROUTES)
    # Around the fast path and FastAPI, both of which read bodies through its bounded receive.
    app.add_middleware(BodyLimit, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=metrics, access_log=settings.access_log)
    # LndHub (issue 12): its paths tidied before routing.
    app.add_middleware(routes_lndhub.LndHubPaths)
    console_routes.install(app)  # the operator console's refusal pages (issue 14)
    return app


_OPENAPI: list[dict[str, Any]] = []  # the document, once made


def _openapi_of(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, made once per process (0.5 s of CPU): every app has the same
    routes (ROUTES) and the same title, version and description. Each app gets a copy of its
    own, as FastAPI's own caching would give it."""
    if app.openapi_schema is None:
        if not _OPENAPI:
            _OPENAPI.append(FastAPI.openapi(app))
        app.openapi_schema = copy.deepcopy(_OPENAPI[0])
    return app.openapi_schema


async def _monitor(
    settings: Settings, pool: asyncpg.Pool, backend: LightningBackend
) -> NodeMonitor:
    async def announce(state: NodeState) -> None:
        # Announced once across processes (node.locked / node.unlocked events).
        await pool.fetchval("SELECT vnode_node_state_changed($1)", state.value)

    monitor = NodeMonitor(backend, simulated=settings.backend_name == "sim", on_state=announce)
    await monitor.check()
    if monitor.simulated:
        log.warning(
            "the master node is SIMULATED: no real money can move",
            extra={"node_url": settings.node_url},
        )
    return monitor


async def _reads(settings: Settings, pool: asyncpg.Pool) -> ReadRouting:
    """The read routing; with VNODE_DATABASE_READ_URL, the replica's pool beside the primary's.
    A replica that cannot be reached at start is no reason not to start: reads use the
    primary until its pool answers (vnode/db/reads.py)."""
    replica = None
    if settings.database_read_url is not None:
        replica = await create_pool(
            settings.database_read_url.get_secret_value(),
            min_size=0,
            max_size=settings.db_pool_max,
            application_name="vnode-read",
            read_only=True,
        )
    routing = ReadRouting(pool, replica, max_lag_s=settings.read_max_lag_s)
    await routing.start()
    return routing


def _dispatcher(settings: Settings, pool: asyncpg.Pool, *, redis: bool) -> Dispatcher:
    return Dispatcher(
        pool,
        redis_url=(settings.redis_url.get_secret_value() if settings.redis_url and redis else None),
        redis_stream_key=settings.redis_stream_key,
        redis_maxlen=settings.redis_stream_maxlen,
        allow_hosts=settings.allowed_webhook_hosts,
    )


def _backend(settings: Settings) -> LightningBackend:
    return create_backend(
        settings.backend_name,
        rln_url=settings.node_url,
        rln_token=settings.rln_token.get_secret_value() if settings.rln_token else None,
        timeout_s=settings.node_timeout_s,
    )


def app_from_environment() -> FastAPI:
    """uvicorn factory for `vnode serve --workers N`: each worker reads the same environment."""
    settings = Settings()
    configure_logging(settings.log_level)
    if settings.database_url is None:
        raise RuntimeError("VNODE_DATABASE_URL must be set for worker processes")
    return create_app(settings, settings.database_url.get_secret_value())
