"""The outbox dispatcher: fan out, then deliver each channel. Runs in every vnode process;
the database makes that safe (SKIP LOCKED fan-out, one deliverer per channel at a time).

Each webhook endpoint is delivered by a task of its own, so a slow or failing endpoint never
holds up the others: a pass starts a task for every endpoint that has none running, and
returns as soon as one of them finishes (or after PASS_WAIT_S), not when the slowest does. An
endpoint's channel, with its keep-alive connections, lives as long as the endpoint is
unchanged (docs/adr/0025).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import asyncpg

from vnode.events.delivery import deliver_once, deliver_pipelined
from vnode.events.fanout import FAN_OUT_BATCH, DirectRedis, fan_out_once
from vnode.events.redis_stream import RedisStreamChannel
from vnode.events.webhooks import Endpoint, WebhookChannel

log = logging.getLogger(__name__)
# Channels delivered at once; each holds a pool connection while it delivers.
PARALLEL_CHANNELS = 4
# The longest a webhook pass waits for an endpoint's task before it returns (the tasks go on).
PASS_WAIT_S = 1.0
# How long one fan-out pass goes on while every batch it takes is full: a backlog is worked
# off without the period's pause between batches, and the supervisor still sees passes end.
FAN_OUT_PASS_S = 1.0


@dataclass
class _Delivering:
    channel: WebhookChannel
    task: asyncio.Task[int] | None = None


class Dispatcher:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        redis_url: str | None,
        redis_stream_key: str,
        redis_maxlen: int,
        allow_hosts: frozenset[str],
    ) -> None:
        self.pool = pool
        self.redis = (
            RedisStreamChannel(redis_url, stream_key=redis_stream_key, maxlen=redis_maxlen)
            if redis_url
            else None
        )
        # The fan-out XADDs in its own transaction (vnode/events/fanout.py, docs/adr/0030).
        self._direct = DirectRedis(self.redis.send) if self.redis is not None else None
        self.allow_hosts = allow_hosts
        self._gate = asyncio.Semaphore(PARALLEL_CHANNELS)
        self._webhooks: dict[int, _Delivering] = {}

    async def fan_out(self) -> int:
        """Fan out what is committed, XADDing it to Redis in the fan-out's transaction, and
        deliver in the same pass what that left pending (a user with an earlier event pending,
        Redis failing): the stream's lag is one fan-out, not a fan-out and a delivery period.
        The Redis loop delivers the rest: retries, and what another process fanned out."""
        total = 0
        loop = asyncio.get_running_loop()
        until = loop.time() + FAN_OUT_PASS_S
        direct = self._direct
        while True:
            fanned = await fan_out_once(
                self.pool, redis_enabled=self.redis is not None, redis=direct
            )
            total += fanned
            if fanned and direct is not None and direct.left_pending and not direct.paused:
                await self.deliver_redis()
            if fanned < FAN_OUT_BATCH or loop.time() >= until:
                return total

    async def deliver_redis(self) -> int:
        if self.redis is None:
            return 0
        return await deliver_once(self.pool, "redis", self.redis.send)

    async def _endpoints(self) -> list[Endpoint]:
        # A secret replaced by a rotation signs too, until its grace period ends.
        rows = await self.pool.fetch(
            "SELECT id, url, secret, CASE WHEN previous_secret_until > now() "
            "THEN previous_secret END AS previous_secret "
            "FROM webhook_endpoints WHERE removed_at IS NULL ORDER BY id"
        )
        return [
            Endpoint(row["id"], row["url"], row["secret"], row["previous_secret"]) for row in rows
        ]

    async def _drain(self, channel: WebhookChannel) -> int:
        """Deliver the endpoint's due events: one pipelined pass (batches of 100, the next read
        and sent while the one before is acknowledged; docs/adr/0027)."""
        try:
            async with self._gate:
                return await deliver_pipelined(self.pool, channel.endpoint.channel, channel.send)
        except Exception:
            log.exception(
                "delivering a webhook failed", extra={"channel": channel.endpoint.channel}
            )
            return 0

    async def deliver_webhooks(self) -> int:
        """Start delivering every endpoint that is not being delivered; returns the deliveries
        of the endpoints' tasks that finished during this pass."""
        endpoints = await self._endpoints()
        current = {endpoint.id: endpoint for endpoint in endpoints}
        for webhook_id, old in list(self._webhooks.items()):
            # A removed or changed endpoint (its URL or secrets) is let go once its batch in
            # flight is over: cancelling it would deliver again what it already sent.
            if current.get(webhook_id) != old.channel.endpoint and old.task is None:
                await self._forget(webhook_id)
        for endpoint in endpoints:
            known = self._webhooks.get(endpoint.id)
            if known is None:
                known = self._webhooks[endpoint.id] = _Delivering(
                    WebhookChannel(endpoint, self.allow_hosts)
                )
            if known.task is None:
                known.task = asyncio.create_task(
                    self._drain(known.channel), name=f"deliver {endpoint.channel}"
                )
        running = [d.task for d in self._webhooks.values() if d.task is not None]
        if not running:
            return 0
        await asyncio.wait(running, timeout=PASS_WAIT_S, return_when=asyncio.FIRST_COMPLETED)
        delivered = 0
        for delivering in self._webhooks.values():
            if delivering.task is not None and delivering.task.done():
                delivered += delivering.task.result()
                delivering.task = None
        return delivered

    async def _forget(self, webhook_id: int) -> None:
        delivering = self._webhooks.pop(webhook_id)
        if delivering.task is not None:
            # Only when the dispatcher closes: what the batch did not acknowledge stays pending
            # and is delivered again (at least once).
            delivering.task.cancel()
            await asyncio.gather(delivering.task, return_exceptions=True)
        await delivering.channel.close()

    async def close(self) -> None:
        for webhook_id in list(self._webhooks):
            await self._forget(webhook_id)
        if self.redis is not None:
            await self.redis.close()
