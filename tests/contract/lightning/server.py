"""A scripted RGB Lightning Node: a real HTTP server (uvicorn, 127.0.0.1, free port) that
answers each request with the next exchange of a script, after checking the request.

Every request is recorded, and every difference from what the script expects (method, path,
JSON body, bearer token) is collected in ``mismatches`` for the test to assert on. Besides
answering, an exchange can drop the connection without a byte of answer, or hang past the
client's read timeout.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn

Kind = Literal["answer", "drop", "hang"]
MISMATCH_STATUS = 599  # not an RLN status: an adapter seeing it fails the test loudly


@dataclass(frozen=True)
class Exchange:
    """One HTTP request vnode must send, and what the node does about it."""

    method: str
    path: str
    request: Any = None  # the exact JSON body expected (None: no body, as for GET)
    status: int = 200
    answer: Any = None  # JSON answer
    raw: bytes | None = None  # a non-JSON answer body instead (sent as text/html)
    kind: Kind = "answer"
    hang_s: float = 3.0  # how long a "hang" exchange waits before giving up on the client
    # False for answers that deliberately break the spec (malformed-answer rows).
    conforms: bool = True


@dataclass
class Recorded:
    method: str
    path: str
    body: Any
    authorization: str | None


@dataclass
class ScriptedNode:
    """The ASGI app. Load a script, let the adapter run, then read ``requests``."""

    script: deque[Exchange] = field(default_factory=deque)
    requests: list[Recorded] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    token: str | None = None
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def load(self, exchanges: tuple[Exchange, ...] | list[Exchange], token: str | None) -> None:
        with self.lock:
            self.script = deque(exchanges)
            self.requests = []
            self.mismatches = []
            self.token = token

    def unanswered(self) -> list[Exchange]:
        with self.lock:
            return list(self.script)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> object:
        assert scope["type"] == "http"
        raw_body = b""
        while True:
            message = await receive()
            raw_body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        body: Any = None
        if raw_body:
            try:
                body = json.loads(raw_body)
            except ValueError:
                body = raw_body.decode("utf-8", "replace")
        recorded = Recorded(scope["method"], scope["path"], body, headers.get("authorization"))
        with self.lock:
            self.requests.append(recorded)
            expected = self.script.popleft() if self.script else None
            problems = self._check(recorded, expected, headers)
            self.mismatches += problems
        if expected is None or problems:
            await _send(send, MISMATCH_STATUS, json.dumps({"mismatch": problems}).encode())
            return None
        if expected.kind == "drop":
            # uvicorn closes the connection, answering nothing, when an ASGI app returns a
            # value other than None before starting a response (test_drop_is_a_real_drop
            # checks that this still holds).
            return "drop the connection"
        if expected.kind == "hang":
            deadline = time.monotonic() + expected.hang_s
            while time.monotonic() < deadline and not self.release.is_set():
                await asyncio.sleep(0.02)
        if expected.raw is not None:
            await _send(send, expected.status, expected.raw, b"text/html")
        else:
            await _send(send, expected.status, json.dumps(expected.answer).encode())
        return None

    def _check(
        self, got: Recorded, expected: Exchange | None, headers: dict[str, str]
    ) -> list[str]:
        where = f"{got.method} {got.path}"
        if expected is None:
            return [f"{where}: not in the script"]
        problems = []
        if (got.method, got.path) != (expected.method, expected.path):
            problems.append(f"{where}: expected {expected.method} {expected.path}")
        if got.body != expected.request:
            problems.append(f"{where}: body {got.body!r}, expected {expected.request!r}")
        if got.body is not None and headers.get("content-type") != "application/json":
            problems.append(f"{where}: content-type {headers.get('content-type')!r}")
        wanted = f"Bearer {self.token}" if self.token else None
        if got.authorization != wanted:
            problems.append(f"{where}: authorization {got.authorization!r}, expected {wanted!r}")
        return problems


async def _send(
    send: Any, status: int, body: bytes, content_type: bytes = b"application/json"
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


@contextmanager
def serve(app: Any, *, lifespan: bool = False) -> Iterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1 in a background thread; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="on" if lifespan else "off",
        http="h11",
        log_level="critical",  # the drop exchanges make uvicorn log an error on purpose
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the scripted node did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        release = getattr(app, "release", None)
        if isinstance(release, threading.Event):
            release.set()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
