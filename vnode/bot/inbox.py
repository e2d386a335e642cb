"""Where the bot hears vnode's events: a Redis Streams consumer group (the default) or a
signed-webhook receiver. Both hand each envelope to `Notifier.handle`, which tells the user
once; what it could not handle now is left to come again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

import orjson
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from vnode.bot.notify import TryLater
from vnode.payments.signing import SIGNATURE_HEADER, SignatureError, verify

log = logging.getLogger(__name__)
EnvelopeHandler = Callable[[dict[str, Any]], Awaitable[None]]
_BLOCK_MS = 2000
_BATCH = 50
_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)


class StreamInbox:
    """XREADGROUP on vnode's stream, XACK after each event is handled.

    After a start it first reads back what this consumer had read but not acknowledged
    (a crash between the two), then new entries. An event that must be tried again stops
    the batch, so one user's events stay in order.
    """

    def __init__(self, redis: Redis, stream: str, group: str, consumer: str,
                 handle: EnvelopeHandler) -> None:
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
            self.group, self.consumer, {self.stream: start}, count=_BATCH,
            block=None if start == "0" else _BLOCK_MS)
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


class WebhookInbox:
    """POST endpoint for vnode's signed webhooks (`vnode webhooks add URL`): verifies
    `X-VNode-Signature` with the endpoint's secret, answers 2xx once handled and 503 to have
    vnode retry."""

    def __init__(self, secret: bytes, window_s: int, path: str,
                 handle: EnvelopeHandler) -> None:
        self.secret = secret
        self.window_s = window_s
        self.path = path
        self.handle = handle
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        application = web.Application(client_max_size=256 * 1024)
        application.router.add_post(self.path, self.receive)
        return application

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify(self.secret, request.headers.get(SIGNATURE_HEADER), body, self.window_s)
        except SignatureError as exc:
            return web.json_response({"error": {"code": "invalid_signature",
                                                "message": str(exc)}}, status=401)
        try:
            envelope = orjson.loads(body)
            if not isinstance(envelope, dict):
                raise ValueError("not an object")
        except ValueError:
            return web.json_response({"error": {"code": "invalid_json",
                                                "message": "not a JSON event"}}, status=400)
        try:
            await self.handle(envelope)
        except TryLater as exc:
            return web.json_response({"error": {"code": "unavailable",
                                                "message": str(exc)}}, status=503)
        except (KeyError, ValueError, TypeError):
            return web.json_response({"error": {"code": "invalid_event",
                                                "message": "not a vnode event"}}, status=400)
        return web.json_response({"ok": True})

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
