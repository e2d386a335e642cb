"""One pure ASGI middleware for request ids, metrics, the access log, the 503 answer when the
database cannot be reached, and the 500 answer.

Pure ASGI rather than BaseHTTPMiddleware: it adds no task or stream copy to every request,
which shows in the transfer rate.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vnode.api.errors import error_response
from vnode.db.unavailable import (
    DATABASE_DOWN,
    DATABASE_DOWN_MESSAGE,
    RETRY_AFTER_S,
    describe,
)
from vnode.errors import CATALOGUE, ErrorCode
from vnode.lndhub import wire as lndhub_wire
from vnode.lnurl.wire import DATABASE_DOWN_REASON, LudError
from vnode.logs import request_id_var
from vnode.metrics import Metrics

log = logging.getLogger("vnode.http")
_CLIENT_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")


def database_down_response(path: str, request_id: str) -> Response:
    """503 with Retry-After in the shape the caller reads: LndHub's for /lndhub (code 6, the
    general error, which no wallet takes as "log in again"), a LUD error for LNURL, vnode's
    `database_unavailable` for everything else."""
    headers = {"x-request-id": request_id, "retry-after": str(RETRY_AFTER_S)}
    status = CATALOGUE[ErrorCode.DATABASE_UNAVAILABLE].status
    if path.startswith("/lndhub"):
        body = lndhub_wire.database_down().body()
        return Response(orjson.dumps(body), status, headers, "application/json")
    if path.startswith(("/.well-known/lnurlp/", "/lnurlp/")):
        lud = LudError(reason=DATABASE_DOWN_REASON)
        return Response(orjson.dumps(lud.wire()), status, headers, "application/json")
    return error_response(
        status, ErrorCode.DATABASE_UNAVAILABLE.value, DATABASE_DOWN_MESSAGE, headers
    )


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and _CLIENT_ID.fullmatch(value):
            return str(value.decode())
    return uuid.uuid4().hex


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, access_log: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        # Each request runs in its own task, so the value cannot leak into another request.
        request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except DATABASE_DOWN as exc:
            # One line, no traceback: the database failing is not vnode's bug.
            log.warning(
                "database unavailable: %s",
                describe(exc),
                extra={"path": scope["path"]},
            )
            self.metrics.ledger_errors.labels("database_down").inc()
            if not response_started:
                response = database_down_response(scope["path"], request_id)
                await response(scope, receive, send)
                status = response.status_code
        except Exception:
            # Details go to the log only; the caller gets the request id to quote.
            log.exception("unhandled error", extra={"path": scope["path"]})
            self.metrics.ledger_errors.labels("unhandled").inc()
            if not response_started:
                spec = CATALOGUE[ErrorCode.INTERNAL_ERROR]
                response = error_response(
                    spec.status,
                    ErrorCode.INTERNAL_ERROR.value,
                    spec.description,
                    {"x-request-id": request_id},
                )
                await response(scope, receive, send)
            status = 500
        finally:
            elapsed_s = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            method = scope["method"]
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(elapsed_s)
            if self.access_log:
                log.info(
                    "request",
                    extra={
                        "method": method,
                        "route": template,
                        "status": status,
                        "ms": round(elapsed_s * 1000, 2),
                    },
                )
