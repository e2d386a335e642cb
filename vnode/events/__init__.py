"""Events: the outbox fanned out to channels (Redis Streams, signed webhooks) and a live stream."""
