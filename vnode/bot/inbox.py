"""Where the bot hears vnode's events: a Redis Streams consumer group (the default) or a
signed-webhook receiver (Standard Webhooks, verified by the standardwebhooks library). Both hand
each envelope to `Notifier.handle`, which tells the user once; what it could not handle now is
left to come again."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, cast

import orjson
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from standardwebhooks import Webhook, WebhookVerificationError

from vnode.cancelling import stop_if_cancelled
from vnode.domain.signing import SIGNATURE_HEADER, SignatureError, verify
from vnode.events.webhooks import (
    ID_HEADER,
    STANDARD_SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signing_key,
)

log = logging.getLogger(__name__)


class TryLater(Exception):
    """The event could not be handled now; leave it unacknowledged to come again.

    Declared here, beside the two consumers that honour it, so that the inbox does not load
    aiogram (7 s of CPU) through the notifier that raises it most."""


EnvelopeHandler = Callable[[dict[str, Any]], Awaitable[None]]
_BLOCK_MS = 2000
_BATCH = 50
_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)
# Unix seconds in ASCII digits (the library's float() would also take "1e9", "nan" or other
# scripts' digits; review L7).
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
# Deliveries remembered against replays; they are forgotten once too old to be accepted anyway.
_MAX_REMEMBERED = 100_000


class StreamInbox:
    """XREADGROUP on vnode's stream, XACK after each event is handled.

    After a start it first reads back what this consumer had read but not acknowledged
    (a crash between the two), then new entries. An event that must be tried again stops
    the batch, so one user's events stay in order.
    """

    def __init__(
        self, redis: Redis, stream: str, group: str, consumer: str, handle: EnvelopeHandler
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.handle = handle

    async def ensure_group(self) -> None:
        try:
            # From the start of the stream: an event written before the bot's first start
            # is still told (old ones are skipped by age in the notifier).
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self) -> None:
        failures = 0
        backlog = True  # our own unacknowledged entries first
        while True:
            try:
                if not await self._ready():
                    raise TryLater("redis not ready")
                handled_all, got = await self._read_once("0" if backlog else ">")
                backlog = not handled_all or (backlog and got > 0)
                failures = 0 if handled_all else failures + 1
            except (RedisError, OSError, TryLater) as exc:
                log.warning("event stream: %s", exc)
                failures += 1
                backlog = True
            except Exception:
                # This loop is the bot's only ear for events: whatever failed, it is logged
                # and read again from what is unacknowledged, never left dead.
                log.exception("event stream: unexpected failure")
                failures += 1
                backlog = True
            stop_if_cancelled()  # redis-py may have lost the cancel that stops this loop
            if failures:
                await asyncio.sleep(_BACKOFF_S[min(failures, len(_BACKOFF_S)) - 1])

    async def _ready(self) -> bool:
        try:
            await self.ensure_group()
        except ResponseError:
            return False
        return True

    async def _read_once(self, start: str) -> tuple[bool, int]:
        """One XREADGROUP; returns (everything read was handled, entries read)."""
        answer = await self.redis.xreadgroup(
            self.group,
            self.consumer,
            {self.stream: start},
            count=_BATCH,
            block=None if start == "0" else _BLOCK_MS,
        )
        # redis-py types the reply as a union of RESP2 and RESP3 shapes; this is RESP2's.
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], answer[0][1] if answer else [])  # type: ignore[index]
        for entry_id, fields in entries:
            try:
                await self.handle(orjson.loads(fields[b"envelope"]))
            except TryLater as exc:
                log.info("event %s left for later: %s", entry_id, exc)
                return False, len(entries)
            except (KeyError, ValueError) as exc:
                log.error("event %s unreadable, skipped: %s", entry_id, exc)
            await self.redis.xack(self.stream, self.group, entry_id)
        return True, len(entries)


class SignatureRefused(ValueError):
    pass


class Replayed(ValueError):
    pass


def secret_key(secret: bytes | str) -> bytes:
    """The HMAC key of VNODE_BOT_WEBHOOK_SECRET: `whsec_<base64>` as vnode makes it now, or any
    other text (an endpoint's secret from before: `whsec_` + 43 URL-safe characters) as it is."""
    if isinstance(secret, str):
        return signing_key(secret)
    try:
        return signing_key(secret.decode())
    except UnicodeDecodeError:
        return secret


class WebhookInbox:
    """POST endpoint for vnode's signed webhooks (`vnode webhooks add URL`): verifies the
    Standard Webhooks signature with the endpoint's secret (any of the signatures a delivery
    carries during a rotation may match), refuses timestamps outside the window and a delivery
    seen before (same `webhook-id` and timestamp), answers 2xx once handled and 503 to have
    vnode retry (a retry is signed anew, so it is not a replay).

    A delivery without the standard headers is checked by the deprecated `X-VNode-Signature`,
    which a vnode older than the standard signature sends alone."""

    def __init__(
        self,
        secret: bytes | str,
        window_s: int,
        path: str,
        handle: EnvelopeHandler,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = secret_key(secret)
        # X-VNode-Signature was always keyed with the secret's text as it is.
        self._legacy_key = secret.encode() if isinstance(secret, str) else secret
        self.window_s = window_s
        self.path = path
        self.handle = handle
        self.clock = clock
        self._webhook = Webhook(self.key)
        # (webhook-id, timestamp), or a legacy signature -> until when it could be accepted.
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        application = web.Application(client_max_size=256 * 1024)
        application.router.add_post(self.path, self.receive)
        return application

    def check(self, body: bytes, headers: Any) -> tuple[tuple[str, str], float]:
        """The delivery's replay key and until when a replay of it would pass the timestamp
        check, if it is genuine and fresh; SignatureRefused otherwise.

        `headers` is any case-insensitive mapping (aiohttp's request.headers)."""
        now = self.clock()
        msg_id, timestamp = headers.get(ID_HEADER), headers.get(TIMESTAMP_HEADER)
        signature = headers.get(STANDARD_SIGNATURE_HEADER)
        if msg_id is None and timestamp is None and signature is None:
            try:  # a vnode from before the standard headers
                legacy = verify(
                    self._legacy_key, headers.get(SIGNATURE_HEADER), body, self.window_s, now
                )
            except SignatureError as exc:
                raise SignatureRefused(str(exc)) from None
            # (Its timestamp may be up to a window ahead of this clock.)
            return ("X-VNode-Signature", legacy.hex()), now + 2 * self.window_s
        if not (msg_id and timestamp and signature):
            raise SignatureRefused("missing webhook-id, webhook-timestamp or webhook-signature")
        if not _TIMESTAMP.fullmatch(timestamp):
            raise SignatureRefused("malformed webhook-timestamp")
        if abs(now - int(timestamp)) > self.window_s:
            raise SignatureRefused("webhook-timestamp outside the allowed window")
        try:
            self._webhook.verify(
                body,
                {
                    ID_HEADER: msg_id,
                    TIMESTAMP_HEADER: timestamp,
                    STANDARD_SIGNATURE_HEADER: signature,
                },
                json_parse=False,
            )
        except WebhookVerificationError as exc:
            raise SignatureRefused(str(exc)) from None
        return (msg_id, timestamp), int(timestamp) + self.window_s

    def remember(self, key: tuple[str, str], until: float) -> None:
        """Replayed if this delivery was accepted before; otherwise remember it until `until`,
        after which the timestamp check refuses it anyway."""
        now = self.clock()
        while self._seen:
            _, first_until = next(iter(self._seen.items()))
            if first_until >= now and len(self._seen) < _MAX_REMEMBERED:
                break
            self._seen.popitem(last=False)
        if key in self._seen:
            raise Replayed("this delivery was received before")
        self._seen[key] = until

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            self.remember(*self.check(body, request.headers))
        except SignatureRefused as exc:
            return web.json_response(
                {"error": {"code": "invalid_signature", "message": str(exc)}}, status=401
            )
        except Replayed as exc:
            return web.json_response(
                {"error": {"code": "replayed", "message": str(exc)}}, status=409
            )
        try:
            envelope = orjson.loads(body)
            if not isinstance(envelope, dict):
                raise ValueError("not an object")
        except ValueError:
            return web.json_response(
                {"error": {"code": "invalid_json", "message": "not a JSON event"}}, status=400
            )
        try:
            await self.handle(envelope)
        except TryLater as exc:
            return web.json_response(
                {"error": {"code": "unavailable", "message": str(exc)}}, status=503
            )
        except (KeyError, ValueError, TypeError):
            return web.json_response(
                {"error": {"code": "invalid_event", "message": "not a vnode event"}}, status=400
            )
        return web.json_response({"ok": True})

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
