"""Dropping a request's TCP connection without any HTTP answer (the drop_then_succeed fault).

ASGI has no "close the connection" message, and an exception in the app becomes a 500, which
is exactly what this fault must not look like. So :class:`DroppableFastAPI` wraps the server's
``send``: a handler asks for the drop through :func:`request_drop`, and when its answer is about
to go out the wrapper closes the socket instead. uvicorn's per-request ``send`` is a bound
method of an object holding the asyncio transport, which is closed directly. Under a server
where that is not so, the wrapper starts an answer that promises a body it never sends, so the
server closes the connection mid-answer: the client still gets no usable answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any, Final, Protocol, cast

from fastapi import FastAPI, Request
from starlette.types import Message, Receive, Scope, Send

_SCOPE_KEY: Final = "vnode.sim.drop"
_DISCONNECT_WAIT_S: Final = 2.0


@dataclass
class _DropSignal:
    requested: bool = False
    done: bool = False


def request_drop(request: Request) -> None:
    """Close this request's connection instead of sending the answer the handler returns."""
    signal = request.scope.get(_SCOPE_KEY)
    if not isinstance(signal, _DropSignal):
        raise RuntimeError("request_drop needs the app built by create_sim_app")
    signal.requested = True


class _Transport(Protocol):
    def close(self) -> None: ...

    def is_closing(self) -> bool: ...


def _transport_of(send: Send) -> _Transport | None:
    # Duck-typed: uvloop's transports are not subclasses of asyncio.BaseTransport.
    cycle: Any = getattr(send, "__self__", None)
    transport: Any = getattr(cycle, "transport", None)
    if callable(getattr(transport, "close", None)) and callable(
        getattr(transport, "is_closing", None)
    ):
        return cast(_Transport, transport)
    return None


async def _wait_disconnect(receive: Receive) -> None:
    # Once the server has seen the connection go, it stops trying to answer this request.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_DISCONNECT_WAIT_S):
            while (await receive())["type"] != "http.disconnect":
                pass


class DroppableFastAPI(FastAPI):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        signal = _DropSignal()
        scope[_SCOPE_KEY] = signal
        transport = _transport_of(send)

        async def guarded_send(message: Message) -> None:
            if not signal.requested:
                await send(message)
                return
            if signal.done:
                return
            signal.done = True
            if transport is not None:
                transport.close()
                await _wait_disconnect(receive)
            elif message["type"] == "http.response.start":
                headers = [(b"content-length", b"1048576"), (b"connection", b"close")]
                await send({"type": "http.response.start", "status": 200, "headers": headers})

        await super().__call__(scope, receive, guarded_send)
