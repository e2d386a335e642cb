"""A real HTTP receiver of vnode's webhooks for tests: uvicorn on 127.0.0.1 in a thread.

It checks every delivery's Standard Webhooks signature with the endpoint's secret, using the
third-party `standardwebhooks` library (`Webhook(secret).verify(body, headers)`, as any receiver
would), records the events it accepted in arrival order (and each one's headers and raw body, to
check them again later), and can be
told to fail (HTTP 500) the next N requests, to fail until told otherwise (for everyone or for
one user), or to hang until released. A request that failed or hung is never recorded as
received: only a 2xx answer tells vnode the event arrived. With a certificate and key it serves
HTTPS (for the tests that check deliveries verify the URL's host name).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass
from types import TracebackType

import orjson
import uvicorn
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.requests import Request
from starlette.responses import Response

from vnode.events.webhooks import signing_key


def oracle(secret: str) -> Webhook:
    """The library's verifier for an endpoint secret: a `whsec_<base64>` secret goes to it as it
    is; an older secret that is not in that form (vnode's `whsec_` + 43 URL-safe characters, or a
    test's own text) is, as before, its own UTF-8 bytes, which the library takes as a raw key."""
    if signing_key(secret) == secret.encode():
        return Webhook(secret.encode())
    return Webhook(secret)


def _verify_any(secrets: tuple[str, ...], body: bytes, headers: dict[str, str]) -> None:
    """What the library's verify does, for whichever of `secrets` signed the delivery."""
    for secret in secrets[:-1]:
        try:
            oracle(secret).verify(body, headers)
        except WebhookVerificationError:
            continue
        return
    oracle(secrets[-1]).verify(body, headers)


@dataclass(frozen=True)
class Delivery:
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass(frozen=True)
class Received:
    id: str
    type: str
    user_id: int
    seq: int
    header_event_id: str | None
    header_event_type: str | None
    data: dict[str, object]


class WebhookReceiver:
    def __init__(
        self,
        secret: str | None = None,
        path: str = "/hook",
        *,
        certfile: str | None = None,
        keyfile: str | None = None,
    ) -> None:
        # Set it once the endpoint is created (the URL comes first); a tuple accepts a delivery
        # any of them signed (a receiver switching secrets in step with a rotation).
        self.secret: str | tuple[str, ...] | None = secret
        self.path = path
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._deliveries: list[Delivery] = []  # the accepted requests, as they came
        self._attempts: list[Delivery] = []  # every well-signed request, failed ones too
        self.bad_signatures: list[str] = []
        self.failed_requests = 0
        self.requests = 0
        self.host_headers: list[str] = []  # the Host header of every request, in order
        self.hung = 0  # requests that arrived while hanging was on
        self._fail_next = 0
        self._fail_all = False
        self._fail_users: set[int] = set()
        self._hang = threading.Event()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)  # connections queue from now on, before the server runs
        self.port: int = self._sock.getsockname()[1]
        self.scheme = "https" if certfile else "http"
        config = uvicorn.Config(
            self._app,
            interface="asgi3",
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"receiver-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{self.path}"

    # --- control ----------------------------------------------------------------------------

    def fail_next(self, count: int) -> None:
        with self._lock:
            self._fail_next = count

    def fail_all(self, on: bool = True) -> None:
        with self._lock:
            self._fail_all = on

    def fail_user(self, user_id: int, on: bool = True) -> None:
        with self._lock:
            (self._fail_users.add if on else self._fail_users.discard)(user_id)

    def hang(self, on: bool = True) -> None:
        """Hold every request open (answering nothing) until hang(False)."""
        if on:
            self._hang.set()
        else:
            self._hang.clear()

    # --- what arrived -----------------------------------------------------------------------

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    @property
    def attempts(self) -> list[Delivery]:
        with self._lock:
            return list(self._attempts)

    def ids(self) -> list[str]:
        return [r.id for r in self.received]

    def seqs_by_user(self) -> dict[int, list[int]]:
        found: dict[int, list[int]] = {}
        for r in self.received:
            found.setdefault(r.user_id, []).append(r.seq)
        return found

    # --- the server -------------------------------------------------------------------------

    async def _app(self, scope: dict[str, object], receive: object, send: object) -> None:
        request = Request(scope, receive)  # type: ignore[arg-type]
        response = await self._handle(request)
        await response(scope, receive, send)  # type: ignore[arg-type]

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        with self._lock:
            self.requests += 1
            self.host_headers.append(request.headers.get("host", ""))
        if request.method != "POST" or request.url.path != self.path:
            return Response(status_code=404)
        if self._hang.is_set():
            with self._lock:
                self.hung += 1
            while self._hang.is_set():  # a stuck bot: vnode must not take this as delivered
                await asyncio.sleep(0.05)
            return Response(status_code=503)
        secret = self.secret
        headers = {name.lower(): value for name, value in request.headers.items()}
        try:
            if secret is None:
                raise WebhookVerificationError("the receiver has no secret yet")
            _verify_any((secret,) if isinstance(secret, str) else secret, body, headers)
        except WebhookVerificationError as exc:
            with self._lock:
                self.bad_signatures.append(str(exc))
            return Response(status_code=401)
        envelope = orjson.loads(body)
        event = Received(
            str(envelope["id"]),
            str(envelope["type"]),
            int(envelope["user_id"]),
            int(envelope["seq"]),
            request.headers.get("X-VNode-Event-Id"),
            request.headers.get("X-VNode-Event-Type"),
            dict(envelope["data"]),
        )
        with self._lock:
            self._attempts.append(Delivery(headers, body))
            if self._fail_next > 0 or self._fail_all or event.user_id in self._fail_users:
                self._fail_next = max(self._fail_next - 1, 0)
                self.failed_requests += 1
                return Response(status_code=500)
            self._received.append(event)
            self._deliveries.append(Delivery(headers, body))
        return Response(b'{"ok":true}', media_type="application/json")

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._sock]))

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._hang.clear()
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
