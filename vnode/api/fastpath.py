"""POST /virtual_transfer without FastAPI's per-request machinery.

The busiest endpoint spent most of its time in dependency solving, Request objects and routing
(docs/PERFORMANCE.md). This ASGI layer serves it directly with the very same pieces the
FastAPI route uses: `authorize` for the key, `TransferBody` for validation, the catalogue's
error answers, and `handle_transfer` for the work. The FastAPI route stays, for the OpenAPI
document and as the fallback path.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi.responses import Response
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vnode.api.deps import Services, authorize
from vnode.api.errors import api_error_response, validation_error_response
from vnode.api.routes_ledger import handle_transfer
from vnode.api.schemas import TransferBody
from vnode.apikeys import Scope as KeyScope
from vnode.errors import ApiError, ErrorCode

PATH = "/virtual_transfer"
MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class _RouteLabel:
    """What the request-context middleware reads of scope["route"]: the path template."""

    path: str


class TransferFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        services = scope["app"].state.services
        assert isinstance(services, Services)
        scope["route"] = _RouteLabel(PATH)
        response = await self._serve(scope, receive, services)
        await response(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, services: Services) -> Response:
        headers = dict(scope["headers"])
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = authorization.partition(" ")
        try:
            key = await authorize(services.keys, token.strip() if scheme.lower() == "bearer"
                                  else None, KeyScope.SPEND)
            raw = await _read_body(receive)
            try:
                body = TransferBody.model_validate_json(raw)
            except ValidationError as exc:
                return validation_error_response(exc.errors(include_url=False))
            idempotency_key = headers.get(b"idempotency-key")
            return await handle_transfer(
                services, body, key,
                idempotency_key.decode("latin-1") if idempotency_key is not None else None)
        except ApiError as exc:
            return api_error_response(exc)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(ErrorCode.PAYLOAD_TOO_LARGE)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
