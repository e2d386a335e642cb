"""The hot routes (vnode/api/hot.py) without FastAPI's per-request machinery.

POST /virtual_transfer, and the balance read the bot makes before every send, spent most of
their time in dependency solving, Request objects and routing (docs/PERFORMANCE.md). This ASGI
layer serves the routes it is given directly, with the very pieces of each route's declaration
(`HotRoute`) that also make its FastAPI route: `authorize` for the route's scope, its body
model for validation, and its handler for the work. The FastAPI routes stay, for the OpenAPI
document and for every body this layer does not take as it is (no JSON Content-Type, empty, or
refused by the body model): it hands those on, body replayed, so each refusal has one source
and both paths answer every request alike (tests/integration/api/test_fastpath.py).
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
from vnode.api.errors import api_error_response
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
        if isinstance(response, _Refer):
            # A body this layer does not take as it is: FastAPI's route, made from the same
            # declaration, answers it, so both paths give one answer to every request.
            await self.app(scope, response.replay, send)
            return
        await response(scope, receive, send)

    async def _serve(
        self, route: HotRoute[Any], scope: Scope, receive: Receive, services: Services
    ) -> Response | _Refer:
        headers = dict(scope["headers"])
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = authorization.partition(" ")
        try:
            key = await authorize(
                services.keys,
                token.strip() if scheme.lower() == "bearer" else None,
                route.scope,
                services.rate,
            )
            raw = await _read_body(receive)
            if not raw or not _is_json(headers.get(b"content-type")):
                return _Refer(raw, receive)
            try:
                body = route.body.model_validate_json(raw)
            except ValidationError:
                return _Refer(raw, receive)
            idempotency_key = headers.get(b"idempotency-key")
            return await route.handle(
                services,
                body,
                key,
                idempotency_key.decode("latin-1") if idempotency_key is not None else None,
            )
        except ApiError as exc:
            return api_error_response(exc)


def _is_json(content_type: bytes | None) -> bool:
    # What FastAPI reads as JSON: application/json, with parameters, or an application/*+json.
    if content_type is None:
        return False
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


class _Refer:
    """A request for the FastAPI route: the body this layer already read, then the rest of the
    connection's messages (a disconnect) as they come."""

    def __init__(self, body: bytes, receive: Receive) -> None:
        self.body: bytes | None = body
        self.receive = receive

    async def replay(self) -> Message:
        if self.body is None:
            return await self.receive()
        body, self.body = self.body, None
        return {"type": "http.request", "body": body, "more_body": False}


async def _read_body(receive: Receive) -> bytes:
    # Bounded by BodyLimit's receive, which raises before a chunk past the limit arrives here.
    chunks: list[bytes] = []
    while True:
        message: Message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
