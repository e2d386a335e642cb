"""Signed webhook deliveries: POST the envelope with Standard Webhooks headers.

Every delivery carries `webhook-id` (the event id, the same on every retry),
`webhook-timestamp` (unix seconds) and `webhook-signature` (`v1,<base64 HMAC-SHA256>` over
`<id>.<timestamp>.<body>`), made by the `standardwebhooks` library
(https://www.standardwebhooks.com). While an endpoint's secret is being rotated, the signature
header holds one signature per secret (the new one first), space-separated; a receiver accepts
the delivery when any of them matches. The deprecated `X-VNode-Signature` (vnode's own scheme,
the inbound webhook's) is still sent, signed with the current secret only, so receivers written
against it keep working while they move to the standard headers (docs/EVENTS.md).

Each delivery batch resolves the endpoint's host once, vets every address (vnode/events/
ssrf.py), and connects only to those addresses: the HTTP client never resolves the name again,
so a DNS answer that changes after the check (rebinding to 127.0.0.1 or a metadata address)
is never used. The URL's host name still goes in the Host header, in TLS SNI and in the
certificate check, so virtual hosts and HTTPS work as with any client.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import httpcore
import httpx
from standardwebhooks import Webhook

from vnode.domain.signing import SIGNATURE_HEADER, sign
from vnode.events.delivery import Result
from vnode.events.envelope import Event
from vnode.events.ssrf import Resolver, UnsafeUrl, resolve_url
from vnode.tls import tls_context

DELIVERY_TIMEOUT_S = 10.0
PARALLEL_USERS = 64
# A receiver's answer body is not used; read a little of it so the connection can be reused,
# never a hostile receiver's gigabytes.
MAX_ANSWER_BYTES = 64 * 1024

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
STANDARD_SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
# The secrets vnode made before it signed the Standard Webhooks way: `whsec_` and 43 URL-safe
# characters (secrets.token_urlsafe(32)), used as HMAC key as they are (their UTF-8 bytes). Never
# the length of padded base64, so never mistaken for the `whsec_<base64>` form.
_LEGACY_SECRET = re.compile(r"whsec_[A-Za-z0-9_-]{43}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+")


def signing_key(secret: str) -> bytes:
    """The HMAC key a webhook secret stands for.

    `whsec_<base64>` (the Standard Webhooks form, every secret vnode makes): the decoded bytes.
    vnode's earlier secrets (`whsec_` + 43 URL-safe characters) and any other text: the text
    itself, UTF-8 encoded, as `X-VNode-Signature` always used them."""
    if secret.startswith(SECRET_PREFIX) and not _LEGACY_SECRET.fullmatch(secret):
        encoded = secret[len(SECRET_PREFIX) :].rstrip("=")
        if _BASE64.fullmatch(encoded) and len(encoded) % 4 != 1:  # padding optional
            return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    return secret.encode()


def standard_secret(secret: str) -> str:
    """The same key in the `whsec_<base64>` form that Standard Webhooks libraries take (for an
    endpoint made before vnode signed the standard way, the secret it was shown then)."""
    return SECRET_PREFIX + base64.b64encode(signing_key(secret)).decode()


def standard_headers(
    msg_id: str, body: bytes, secrets: Sequence[str], timestamp: int | None = None
) -> dict[str, str]:
    """`webhook-id`, `webhook-timestamp` and `webhook-signature` (one `v1,...` per secret,
    space-separated, in the order given), signed by the standardwebhooks library."""
    if not secrets:
        raise ValueError("a delivery is signed with at least one secret")
    t = int(time.time()) if timestamp is None else timestamp
    when = datetime.fromtimestamp(t, UTC)
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(t),
        STANDARD_SIGNATURE_HEADER: " ".join(
            Webhook(signing_key(secret)).sign(msg_id, when, body) for secret in secrets
        ),
    }


@dataclass(frozen=True)
class Endpoint:
    id: int
    url: str
    secret: str
    # The secret replaced by a rotation, while its grace period lasts (the dispatcher passes it
    # only until then); deliveries are signed with both.
    previous_secret: str | None = None

    @property
    def channel(self) -> str:
        return f"webhook:{self.id}"

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secrets that sign a delivery, the current one first."""
        if self.previous_secret is None or self.previous_secret == self.secret:
            return (self.secret,)
        return (self.secret, self.previous_secret)


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections to vetted addresses only, whatever host name it is asked for.

    httpcore still does TLS with the URL's host name as server_hostname, so SNI and the
    certificate check are those of the name, not of the address."""

    def __init__(self, addresses: Sequence[str]) -> None:
        if not addresses:
            raise ValueError("no address to connect to")
        self._addresses = tuple(addresses)
        self._inner = httpcore.AnyIOBackend()

    # (The signatures are httpcore's, timeout parameters included.)
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in self._addresses:  # each was vetted; try them in the resolver's order
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhook deliveries use TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (same exception mapping, same HTTP/1.1 handling), with a
    connection pool whose network backend is pinned to the vetted addresses."""

    def __init__(self, addresses: Sequence[str], ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=PARALLEL_USERS,
            max_keepalive_connections=PARALLEL_USERS,
            network_backend=PinnedBackend(addresses),
        )


class WebhookChannel:
    """One endpoint's deliveries. Each batch gets a client pinned to the addresses vetted for
    that batch: a shared client would resolve host names again (DNS rebinding, review L1)."""

    def __init__(
        self,
        endpoint: Endpoint,
        allow_hosts: frozenset[str],
        *,
        resolver: Resolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.allow_hosts = allow_hosts
        self.resolver = resolver
        self.ssl_context = ssl_context

    async def _post(self, client: httpx.AsyncClient, event: Event) -> Result:
        body = event.encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            **standard_headers(event.event_id, body, self.endpoint.secrets, timestamp),
            # Deprecated (docs/EVENTS.md): vnode's own scheme, the current secret only.
            SIGNATURE_HEADER: sign(self.endpoint.secret.encode(), body, timestamp),
            "X-VNode-Event-Id": event.event_id,
            "X-VNode-Event-Type": event.event_type,
        }
        try:
            async with client.stream(
                "POST", self.endpoint.url, content=body, headers=headers
            ) as response:
                status = response.status_code
                read = 0
                async for chunk in response.aiter_raw():
                    read += len(chunk)
                    if read > MAX_ANSWER_BYTES:
                        break  # the connection is dropped instead of reused; that is all
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return Result(event.outbox_id, f"{type(exc).__name__}: {exc}")
        if 200 <= status < 300:
            return Result(event.outbox_id)
        return Result(event.outbox_id, f"HTTP {status}")

    async def send(self, events: Sequence[Event]) -> list[Result]:
        """Users in parallel; each user's events in order, stopping at the first failure."""
        by_user: dict[int, list[Event]] = defaultdict(list)
        for event in events:
            by_user[event.user_id].append(event)
        try:
            # Once per batch: every connection of the batch goes to these addresses.
            target = await resolve_url(self.endpoint.url, self.allow_hosts, self.resolver)
        except UnsafeUrl as exc:
            # Each user's first event fails; the later ones wait behind it, as on any failure.
            return [
                Result(user_events[0].outbox_id, f"refused: {exc}")
                for user_events in by_user.values()
            ]
        gate = asyncio.Semaphore(PARALLEL_USERS)
        transport = PinnedTransport(target.addresses, self.ssl_context or tls_context())
        async with httpx.AsyncClient(
            transport=transport, follow_redirects=False, trust_env=False, timeout=DELIVERY_TIMEOUT_S
        ) as client:

            async def chain(user_events: list[Event]) -> list[Result]:
                done: list[Result] = []
                async with gate:
                    for event in user_events:
                        result = await self._post(client, event)
                        done.append(result)
                        if result.error is not None:
                            break  # later events of this user wait for this one
                return done

            chains = await asyncio.gather(*(chain(evs) for evs in by_user.values()))
        return [result for results in chains for result in results]
