"""The busiest endpoints without FastAPI's per-request machinery.

POST /virtual_transfer, and the balance read the bot makes before every send, spent most of
their time in dependency solving, Request objects and routing (docs/PERFORMANCE.md). This ASGI
layer serves them directly with the very same pieces their FastAPI routes use: `authorize` for
the key, the route's body model for validation, the catalogue's error answers, and the route's
handler for the work. The FastAPI routes stay, for the OpenAPI document and as the fallback.
The body-size limit is not here: BodyLimit (vnode/api/body_limit.py) wraps this layer too, so
`receive` below raises its 413 once a body passes the one limit every route shares.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vnode.api.deps import Services, authorize
from vnode.api.errors import api_error_response, validation_error_response
from vnode.api.routes_ledger import handle_assetbalance, handle_transfer
from vnode.api.schemas import AssetBalanceBody, TransferBody
from vnode.apikeys import Principal
from vnode.apikeys import Scope as KeyScope
from vnode.errors import ApiError


@dataclass(frozen=True)
class FastRoute:
    scope: KeyScope
    body: type[BaseModel]
    # (services, validated body, caller, Idempotency-Key header) -> the answer
    handle: Callable[[Services, Any, Principal, str | None], Awaitable[Response]]


async def _assetbalance(services: Services, body: AssetBalanceBody, _key: Principal,
                        _idempotency_key: str | None) -> Response:
    return await handle_assetbalance(services, body)


ROUTES = {
    "/virtual_transfer": FastRoute(KeyScope.SPEND, TransferBody, handle_transfer),
    "/virtual_assetbalance": FastRoute(KeyScope.READ, AssetBalanceBody, _assetbalance),
}


@dataclass(frozen=True)
class _RouteLabel:
    """What the request-context middleware reads of scope["route"]: the path template."""

    path: str


class FastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = ROUTES.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        services = scope["app"].state.services
        assert isinstance(services, Services)
        scope["route"] = _RouteLabel(scope["path"])
        response = await self._serve(route, scope, receive, services)
        await response(scope, receive, send)

    async def _serve(self, route: FastRoute, scope: Scope, receive: Receive,
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
