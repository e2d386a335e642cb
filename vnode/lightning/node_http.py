"""The node adapter's HTTP client: one kept-alive aiohttp session per adapter.

httpx cost about 3.4 ms of CPU per node call with 16 calls in flight, aiohttp about 0.3 ms
(docs/PERFORMANCE.md, docs/adr/0028); a payment makes several node calls, so the adapter's
HTTP client was most of vnode's CPU per payment.

What this client guarantees the adapter (vnode/lightning/rln.py), as the httpx client did:

* A request is sent at most once: no retries (aiohttp's own retry of an idempotent request on
  a kept-alive connection the server had closed is switched off) and no redirects (a 3xx is
  the answer).
* Every way the exchange can fail after it starts (timeout, refused or reset connection, a
  connection dropped before or during the answer, an answer that is not HTTP) raises
  :class:`TransportFailure`, named as httpx named it (``ReadTimeout``, ``ConnectError``,
  ``RemoteProtocolError``...; docs/NODE.md's table and the logs use these names). The adapter
  maps it to ``NodeUnreachable``: the outcome is unknown.
* Timeouts: connecting is bounded by the connect timeout, each read of the answer by the read
  timeout (the time between bytes, as httpx's read timeout), and waiting for a free pooled
  connection by the read timeout too (httpx's pool timeout).
* TLS is the process's one context (vnode/tls.py: certifi, or SSL_CERT_FILE / SSL_CERT_DIR).
  No proxy or netrc from the environment (aiohttp would look both up in a thread on every
  request), no cookies.
* The whole answer body is read, as httpx read it (no limit of its own); the adapter decodes
  it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import aiohttp

from vnode.tls import tls_context

__all__ = ["Answer", "NodeHttp", "TransportFailure"]

# At most this many connections to the node, as httpx's default pool.
MAX_CONNECTIONS: Final = 100
# An idle connection is dropped after this long, below the 5 s after which uvicorn (the
# simulated node, and many proxies) closes one: reusing a connection the server is closing
# would turn a request into an ambiguous failure.
KEEPALIVE_S: Final = 4.0


class TransportFailure(Exception):
    """The exchange failed at the HTTP level; ``name`` is httpx's name for the failure."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"{name}: {detail}")
        self.name = name


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


def failure_name(exc: BaseException) -> str:
    """httpx's name for an aiohttp failure (most specific class first)."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "ConnectTimeout"  # connecting, or waiting for a pooled connection
    if isinstance(exc, TimeoutError):
        return "ReadTimeout"  # aiohttp.SocketTimeoutError and any other timeout
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "ConnectError"  # refused, unreachable, DNS, TLS handshake or certificate
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "RemoteProtocolError"  # closed before or during the answer
    if isinstance(exc, aiohttp.ClientResponseError):
        return "RemoteProtocolError"  # an answer that is not HTTP
    if isinstance(exc, aiohttp.InvalidURL):
        return "UnsupportedProtocol"
    if isinstance(exc, OSError):
        return "ReadError"  # reset while sending or reading
    return type(exc).__name__


class NodeHttp:
    """Requests to one node. The session is made on first use, inside the running loop."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        connect_timeout_s: float,
        read_timeout_s: float,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = dict(headers)
        self._connect_timeout_s = connect_timeout_s
        self._default_timeout = self._timeout(read_timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _timeout(self, read_timeout_s: float) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=None,
            # Waiting for a pooled connection (httpx's pool timeout) and then connecting.
            connect=read_timeout_s + self._connect_timeout_s,
            sock_connect=self._connect_timeout_s,
            sock_read=read_timeout_s,
        )

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            # As httpx: a closed client is not reopened behind the caller's back.
            raise RuntimeError("the node's HTTP client has been closed")
        if self._session is None:
            connector = aiohttp.TCPConnector(
                ssl=tls_context(), limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_S
            )
            session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                timeout=self._default_timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                raise_for_status=False,
            )
            # aiohttp sends a request again on a new connection when the kept-alive one it
            # reused turns out closed, for idempotent methods only: here the GETs, which all
            # read (/nodeinfo, /networkinfo, /listchannels, /listpayments). Every POST (a
            # payment, an invoice) is sent at most once. Without it, a connection the node
            # closed as it was reused made the monitor call the node unreachable, and every
            # request failed with 503 until the next check (seen under a loaded test run).
            self._session = session
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        body: object | None = None,
        *,
        read_timeout_s: float | None = None,
    ) -> Answer:
        """The node's answer (any status), or TransportFailure."""
        session = self._open()
        data: bytes | None = None
        headers: dict[str, str] | None = None
        if body is not None:
            # The bytes httpx sent for json=body.
            data = json.dumps(
                body, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode()
            headers = {"Content-Type": "application/json"}
        # Always a ClientTimeout: aiohttp reads timeout=None as "no timeout at all".
        timeout = self._default_timeout if read_timeout_s is None else self._timeout(read_timeout_s)
        try:
            async with session.request(
                method,
                self._base_url + path,
                data=data,
                headers=headers,
                allow_redirects=False,
                timeout=timeout,
            ) as response:
                return Answer(response.status, await response.read())
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # The request may or may not have reached the node, and may or may not have done
            # its work there.
            raise TransportFailure(failure_name(exc), str(exc) or type(exc).__name__) from exc

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
            # Let the transports' close callbacks run (aiohttp's advice), so that a closed
            # adapter leaves no socket for the garbage collector to warn about.
            await asyncio.sleep(0)
