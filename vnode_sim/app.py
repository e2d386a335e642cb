"""create_sim_app: the simulated RGB Lightning Node as an ASGI app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from vnode_sim import routes_control, routes_rln
from vnode_sim.config import SimConfig
from vnode_sim.connection import DroppableFastAPI
from vnode_sim.errors import install_error_handlers
from vnode_sim.fast_path import FastPayments
from vnode_sim.state import SimNode


def create_sim_app(config: SimConfig | None = None) -> FastAPI:
    """A fresh node (its own keys, channels and payments) served as the RLN REST API + /_sim."""
    node = SimNode(config or SimConfig())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        node.attach_loop(asyncio.get_running_loop())
        yield
        await node.aclose()  # settle tasks and held-open requests end with the server

    app = DroppableFastAPI(
        title="vnode simulated RGB Lightning Node",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.sim_node = node
    install_error_handlers(app)
    app.include_router(routes_rln.router)
    app.include_router(routes_control.router)
    app.add_middleware(FastPayments, node=node)  # the plain case of the payment routes
    return app


def sim_node_of(app: FastAPI) -> SimNode:
    """The node behind an app made by create_sim_app (for in-process wiring, not for tests)."""
    node = app.state.sim_node
    if not isinstance(node, SimNode):
        raise TypeError("not an app made by create_sim_app")
    return node
