"""The hot routes (vnode/api/hot.py) without FastAPI's per-request machinery.

POST /virtual_transfer, and the balance read the bot makes before every send, spent most of
their time in dependency solving, Request objects and routing (docs/PERFORMANCE.md). This ASGI
layer serves the routes it is given directly, with the very pieces of each route's declaration
(`HotRoute`) that also make its FastAPI route: `authorize` for the route's scope, its body
model for validation, the catalogue's error answers, and its handler for the work. The FastAPI
routes stay, for the OpenAPI document and as the fallback.
The body-size limit is not here: BodyLimit (vnode/api/body_limit.py) wraps this layer too, so
`receive` below raises its 413 once a body passes the one limit every route shares.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi.responses import Response
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vnode.api.deps import Services, authorize
from vnode.api.errors import api_error_response, validation_error_response
from vnode.api.hot import HotRoute
from vnode.errors import ApiError


class FastPath:
    def __init__(self, app: ASGIApp, routes: Iterable[HotRoute[Any]]) -> None:
        self.app = app
        self.routes = {route.path: route for route in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        services = scope["app"].state.services
        assert isinstance(services, Services)
        # What the request-context middleware labels the request with: the route's `path`.
        scope["route"] = route
        response = await self._serve(route, scope, receive, services)
        await response(scope, receive, send)

    async def _serve(self, route: HotRoute[Any], scope: Scope, receive: Receive,
                     services: Services) -> Response:
        headers = dict(scope["headers"])
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = authorization.partition(" ")
        try:
            key = await authorize(services.keys, token.strip() if scheme.lower() == "bearer"
                                  else None, route.scope)
            raw = await _read_body(receive)
            try:
                body = route.body.model_validate_json(raw)
            except ValidationError as exc:
                return validation_error_response(exc.errors(include_url=False))
            idempotency_key = headers.get(b"idempotency-key")
            return await route.handle(
                services, body, key,
                idempotency_key.decode("latin-1") if idempotency_key is not None else None)
        except ApiError as exc:
            return api_error_response(exc)


async def _read_body(receive: Receive) -> bytes:
    # Bounded by BodyLimit's receive, which raises before a chunk past the limit arrives here.
    chunks: list[bytes] = []
    while True:
        message: Message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
