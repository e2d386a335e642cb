"""The Redis Streams channel: every event XADDed to one bounded stream, ready for consumer
groups (XREADGROUP / XACK give the resumable, at-least-once delivery a Kafka consumer has).

Key: `vnode:events` (configurable prefix). Fields: `id` (event id, for idempotent consumers),
`type`, `user_id`, `seq`, `created_at`, `envelope` (the whole JSON envelope).
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from vnode.events.delivery import Result
from vnode.events.envelope import Event

DEFAULT_MAXLEN = 1_000_000


class RedisStreamChannel:
    def __init__(
        self, url: str, *, stream_key: str = "vnode:events", maxlen: int = DEFAULT_MAXLEN
    ) -> None:
        self.stream_key = stream_key
        self.maxlen = maxlen
        self.client = aioredis.Redis.from_url(url)

    async def send(self, events: Sequence[Event]) -> list[Result]:
        """One pipelined round trip for the batch, in order; all delivered or all retried."""
        pipe = self.client.pipeline(transaction=False)
        for event in events:
            envelope = event.envelope()
            pipe.xadd(
                self.stream_key,
                {
                    "id": event.event_id,
                    "type": event.event_type,
                    "user_id": str(event.user_id),
                    "seq": str(event.user_seq),
                    "created_at": envelope["created_at"],
                    "envelope": orjson.dumps(envelope),
                },
                maxlen=self.maxlen,
                approximate=True,
            )
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            return [Result(e.outbox_id, f"redis: {exc}") for e in events]
        return [Result(e.outbox_id) for e in events]

    async def close(self) -> None:
        await self.client.aclose()
