"""One request-body limit for every route, enforced while the body is read.

FastAPI reads and parses a route's whole body before it solves dependencies (so before the API
key is checked), and uvicorn has no body limit of its own: without this layer any anonymous
client could make a worker hold gigabytes (security review M3). This middleware sits outside
the fast path and FastAPI, so both read through it:

- a declared `Content-Length` above the limit is answered 413 at once, before the application
  runs, so no byte of the body is read; one within the limit passes untouched, since the
  server delivers no byte past the length it framed the body by;
- a body without a length (chunked) is counted as the application reads it; the chunk that
  passes the limit is dropped and `receive` raises `BodyTooLarge` instead, so at most the
  limit (plus the server's one read buffer) is ever held.

`BodyTooLarge` is a Starlette `HTTPException` on purpose: FastAPI's body reader turns any
other exception from `receive` into a 400 but re-raises an HTTPException, which the app's
handler renders as the usual 413 `payload_too_large`. Where nothing renders it (the fast path),
this middleware answers the 413 itself. Every 413 asks the server to close the connection, so
the rest of an oversized upload is never read.

Pure ASGI, not BaseHTTPMiddleware: no task or stream copy per request (docs/PERFORMANCE.md).
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vnode.api.errors import error_response
from vnode.errors import CATALOGUE, ErrorCode

# Without it uvicorn would keep the connection and read (and drop) the rest of the upload.
_CLOSE = {"connection": "close"}
# More digits than any limit worth configuring: refused before int() is asked to parse them
# (int() of a 5,000-digit string raises ValueError, a 500 by another name).
_MAX_LENGTH_DIGITS = 18


def _message(limit: int) -> str:
    return f"{CATALOGUE[ErrorCode.PAYLOAD_TOO_LARGE].description} The limit is {limit} bytes."


class BodyTooLarge(HTTPException):
    """Raised by the limited `receive` once the body has passed the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _message(limit), _CLOSE)


def _framing(scope: Scope) -> tuple[bytes | None, bool]:
    """The Content-Length header, if any, and whether a Transfer-Encoding was given."""
    length = None
    encoded = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            length = value
        elif name == b"transfer-encoding":
            encoded = True
    return length, encoded


class BodyLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit
        length, encoded = _framing(scope)
        # bytes.isdigit() is ASCII-only; a malformed length is the server's to refuse (and is
        # counted below if it ever got through).
        if length is not None and length.isdigit():
            if len(length) > _MAX_LENGTH_DIGITS or int(length) > limit:
                await self._refuse(scope, receive, send)
                return
            if not encoded:
                # The server frames the body by this length and delivers no byte past it, so
                # a body within the limit needs no counting: the common case costs nothing.
                await self.app(scope, receive, send)
                return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            if received > limit:
                # Asked again after the refusal (someone caught it): still refused, and no
                # more of the body is pulled from the socket.
                raise BodyTooLarge(limit)
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge:
            if response_started:
                # The answer is half sent and cannot become a 413: let the server see the
                # failure and drop the connection.
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, ErrorCode.PAYLOAD_TOO_LARGE.value, _message(self.limit), _CLOSE
        )
        await response(scope, receive, send)
