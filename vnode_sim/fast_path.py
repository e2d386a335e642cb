"""The payment routes' fast path: POST /sendpayment and /getpayment without FastAPI's routing,
dependency injection and response encoding, which were most of the sim's CPU per payment
(bench/payments.py measures the sim alone; docs/PERFORMANCE.md).

Only the plain case takes it: the node unlocked and no fault armed (no next-payment fault, no
hostile answer). Then it does what the routes do, in the same order, with the same models:
the body parsed by the request model, the engine called, the answer checked by the response
model the adapter reads (`sound`), an RlnError answered with the same body and status as
the app's handler. Anything else (a fault armed, the node locked, a body the request model
refuses) goes to the full app with the body it sent, so every fault and every refusal is
served by exactly the code the chaos tests exercise.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vnode.lightning import rln_api as api
from vnode_sim import errors
from vnode_sim.faults import HostileRoute
from vnode_sim.routes_rln import sound
from vnode_sim.state import SimNode

Json = dict[str, object]
_JSON_HEADERS = [(b"content-type", b"application/json")]


def _send_payment(node: SimNode, body: bytes) -> Json:
    result = node.ln.send_payment(api.SendPaymentRequest.model_validate_json(body))
    # No fault was armed, so none was taken: the answer goes out as it is.
    assert result.wire_fault is None
    return sound(api.SendPaymentResponse, result.body)


def _get_payment(node: SimNode, body: bytes) -> Json:
    payment = node.ln.get_payment(api.GetPaymentRequest.model_validate_json(body).payment_hash)
    sound(api.GetPaymentResponse, {"payment": payment})
    (served,) = node.faults.serve(HostileRoute.GETPAYMENT, [payment])
    return {"payment": served}


_ROUTES: dict[str, Callable[[SimNode, bytes], Json]] = {
    "/sendpayment": _send_payment,
    "/getpayment": _get_payment,
}


class FastPayments:
    """ASGI middleware: the plain case of the payment routes, everything else to `app`."""

    def __init__(self, app: ASGIApp, node: SimNode) -> None:
        self.app = app
        self.node = node

    def _plain(self) -> bool:
        faults = self.node.faults
        return not faults.locked and faults.next_payment is None and not faults.hostile

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = _ROUTES.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST" or not self._plain():
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            answer, status = route(self.node, body), 200
        except ValidationError:
            await self.app(scope, _replay(body, receive), send)  # its 400, as the app words it
            return
        except errors.RlnError as exc:
            answer, status = exc.body(), exc.status
        payload = orjson.dumps(answer)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the already-read body over once, then the client's own messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
