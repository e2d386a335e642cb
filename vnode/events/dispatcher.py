"""The outbox dispatcher: fan out, then deliver each channel. Runs in every vnode process;
the database makes that safe (SKIP LOCKED fan-out, one deliverer per channel at a time)."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from vnode.events.delivery import deliver_once
from vnode.events.fanout import fan_out_once
from vnode.events.redis_stream import RedisStreamChannel
from vnode.events.webhooks import Endpoint, WebhookChannel

log = logging.getLogger(__name__)
# Channels delivered at once; each holds a pool connection while it delivers.
PARALLEL_CHANNELS = 4


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
        self.allow_hosts = allow_hosts

    async def fan_out(self) -> int:
        return await fan_out_once(self.pool, redis_enabled=self.redis is not None)

    async def deliver_redis(self) -> int:
        if self.redis is None:
            return 0
        return await deliver_once(self.pool, "redis", self.redis.send)

    async def deliver_webhooks(self) -> int:
        """Every endpoint side by side: a slow endpoint does not hold up the others, and one
        endpoint's failure does not stop the rest. (Redis has a loop of its own.)"""
        # A secret replaced by a rotation signs too, until its grace period ends.
        rows = await self.pool.fetch(
            "SELECT id, url, secret, CASE WHEN previous_secret_until > now() "
            "THEN previous_secret END AS previous_secret "
            "FROM webhook_endpoints WHERE removed_at IS NULL ORDER BY id"
        )
        gate = asyncio.Semaphore(PARALLEL_CHANNELS)

        async def one(row: asyncpg.Record) -> int:
            webhook = WebhookChannel(
                Endpoint(row["id"], row["url"], row["secret"], row["previous_secret"]),
                self.allow_hosts,
            )
            async with gate:
                try:
                    return await deliver_once(self.pool, webhook.endpoint.channel, webhook.send)
                except Exception:
                    log.exception(
                        "delivering a webhook failed", extra={"channel": webhook.endpoint.channel}
                    )
                    return 0

        return sum(await asyncio.gather(*(one(row) for row in rows)))

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.close()
