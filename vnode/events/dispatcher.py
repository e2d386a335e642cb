"""The outbox dispatcher: fan out, then deliver each channel. Runs in every vnode process;
the database makes that safe (SKIP LOCKED fan-out, one deliverer per channel at a time)."""

from __future__ import annotations

import asyncpg
import httpx

from vnode.events.delivery import deliver_once
from vnode.events.fanout import fan_out_once
from vnode.events.redis_stream import RedisStreamChannel
from vnode.events.webhooks import Endpoint, WebhookChannel


class Dispatcher:
    def __init__(self, pool: asyncpg.Pool, *, redis_url: str | None, redis_stream_key: str,
                 redis_maxlen: int, allow_hosts: frozenset[str]) -> None:
        self.pool = pool
        self.redis = (RedisStreamChannel(redis_url, stream_key=redis_stream_key,
                                         maxlen=redis_maxlen) if redis_url else None)
        self.allow_hosts = allow_hosts
        self.http = httpx.AsyncClient(follow_redirects=False)

    async def fan_out(self) -> int:
        return await fan_out_once(self.pool, redis_enabled=self.redis is not None)

    async def deliver(self) -> int:
        delivered = 0
        if self.redis is not None:
            delivered += await deliver_once(self.pool, "redis", self.redis.send)
        rows = await self.pool.fetch(
            "SELECT id, url, secret FROM webhook_endpoints WHERE removed_at IS NULL ORDER BY id")
        for row in rows:
            channel = WebhookChannel(Endpoint(row["id"], row["url"], row["secret"]), self.http,
                                     self.allow_hosts)
            delivered += await deliver_once(self.pool, channel.endpoint.channel, channel.send)
        return delivered

    async def close(self) -> None:
        await self.http.aclose()
        if self.redis is not None:
            await self.redis.close()
