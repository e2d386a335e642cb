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
certificate check, so virtual hosts and HTTPS work as with any client. The connections are
kept alive from batch to batch (one aiohttp session per endpoint) while the vetted addresses stay
the same: an httpx client per batch cost about 2.3 ms of CPU per delivery (docs/adr/0025).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import re
import socket
import ssl
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from standardwebhooks import Webhook

from vnode.domain.signing import SIGNATURE_HEADER, sign
from vnode.events.delivery import Result
from vnode.events.envelope import Event
from vnode.events.ssrf import Resolver, UnsafeUrl, resolve_url
from vnode.tls import tls_context

DELIVERY_TIMEOUT_S = 10.0
# Deliveries in flight per endpoint (each a user's next event): enough to fill a batch on a
# distant endpoint, few enough that the event loop's other work is not queued behind them.
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


@functools.lru_cache(maxsize=1024)
def _signer(secret: str) -> Webhook:
    # Building one decodes the key; a delivery signs with the same few secrets again and again.
    return Webhook(signing_key(secret))


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
            _signer(secret).sign(msg_id, when, body) for secret in secrets
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


class PinnedResolver(AbstractResolver):
    """Answers every name with the vetted addresses only: the connector never resolves again.

    aiohttp still does TLS with the URL's host name as server_hostname, so SNI and the
    certificate check are those of the name, not of the address."""

    def __init__(self, addresses: Sequence[str]) -> None:
        if not addresses:
            raise ValueError("no address to connect to")
        self.addresses = tuple(addresses)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        # Each was vetted; the connector tries them in the resolver's order.
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.addresses
        ]

    async def close(self) -> None:
        return None


class WebhookChannel:
    """One endpoint's deliveries, over a keep-alive connection pool of its own (aiohttp, one
    session per endpoint, reused from batch to batch; docs/adr/0025).

    Each batch resolves and vets the endpoint's host again; the pool is kept only while the
    vetted addresses stay the same, and its connector reaches them through PinnedResolver, never
    through DNS (a shared client would resolve host names again: DNS rebinding, review L1)."""

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
        self._session: aiohttp.ClientSession | None = None
        self._addresses: tuple[str, ...] = ()

    async def _session_for(self, addresses: tuple[str, ...]) -> aiohttp.ClientSession:
        if self._session is not None and addresses == self._addresses:
            return self._session
        # The addresses changed: the old pool's connections go to the old ones.
        await self.close()
        connector = aiohttp.TCPConnector(
            resolver=PinnedResolver(addresses),
            use_dns_cache=False,
            ssl=self.ssl_context or tls_context(),
            limit=PARALLEL_USERS,
            limit_per_host=0,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            trust_env=False,  # no proxy from the environment
            auto_decompress=False,
            # The answer is not read beyond MAX_ANSWER_BYTES, nor its cookies kept.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._addresses = addresses
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self, event: Event, body: bytes) -> dict[str, str]:
        timestamp = int(time.time())
        return {
            "Content-Type": "application/json",
            **standard_headers(event.event_id, body, self.endpoint.secrets, timestamp),
            # Deprecated (docs/EVENTS.md): vnode's own scheme, the current secret only.
            SIGNATURE_HEADER: sign(self.endpoint.secret.encode(), body, timestamp),
            "X-VNode-Event-Id": event.event_id,
            "X-VNode-Event-Type": event.event_type,
        }

    async def _post(self, session: aiohttp.ClientSession, event: Event) -> Result:
        body = event.encode()
        try:
            async with session.post(
                self.endpoint.url,
                data=body,
                headers=self._headers(event, body),
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT_S),
            ) as response:
                status = response.status
                read = 0
                while chunk := await response.content.read(MAX_ANSWER_BYTES):
                    read += len(chunk)
                    if read > MAX_ANSWER_BYTES:
                        response.close()  # dropped instead of reused; that is all
                        break
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            # (ValueError: a URL aiohttp cannot send to; TimeoutError: DELIVERY_TIMEOUT_S.)
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
        session = await self._session_for(target.addresses)
        gate = asyncio.Semaphore(PARALLEL_USERS)

        async def chain(user_events: list[Event]) -> list[Result]:
            done: list[Result] = []
            async with gate:
                for event in user_events:
                    result = await self._post(session, event)
                    done.append(result)
                    if result.error is not None:
                        break  # later events of this user wait for this one
            return done

        chains = await asyncio.gather(*(chain(evs) for evs in by_user.values()))
        return [result for results in chains for result in results]
