"""Signed webhook deliveries: POST the envelope, `X-VNode-Signature` as the inbound webhook."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from vnode.events.delivery import Result
from vnode.events.envelope import Event
from vnode.events.ssrf import UnsafeUrl, check_url
from vnode.payments.signing import SIGNATURE_HEADER, sign

DELIVERY_TIMEOUT_S = 10.0
PARALLEL_USERS = 64


@dataclass(frozen=True)
class Endpoint:
    id: int
    url: str
    secret: str

    @property
    def channel(self) -> str:
        return f"webhook:{self.id}"


class WebhookChannel:
    def __init__(self, endpoint: Endpoint, client: httpx.AsyncClient,
                 allow_hosts: frozenset[str]) -> None:
        self.endpoint = endpoint
        self.client = client
        self.allow_hosts = allow_hosts

    async def _post(self, event: Event) -> Result:
        body = event.encode()
        try:
            await check_url(self.endpoint.url, self.allow_hosts)
            response = await self.client.post(self.endpoint.url, content=body, headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(self.endpoint.secret.encode(), body),
                "X-VNode-Event-Id": event.event_id,
                "X-VNode-Event-Type": event.event_type,
            }, timeout=DELIVERY_TIMEOUT_S)
        except UnsafeUrl as exc:
            return Result(event.outbox_id, f"refused: {exc}")
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return Result(event.outbox_id, f"{type(exc).__name__}: {exc}")
        if 200 <= response.status_code < 300:
            return Result(event.outbox_id)
        return Result(event.outbox_id, f"HTTP {response.status_code}")

    async def send(self, events: Sequence[Event]) -> list[Result]:
        """Users in parallel; each user's events in order, stopping at the first failure."""
        by_user: dict[int, list[Event]] = defaultdict(list)
        for event in events:
            by_user[event.user_id].append(event)
        gate = asyncio.Semaphore(PARALLEL_USERS)

        async def chain(user_events: list[Event]) -> list[Result]:
            done: list[Result] = []
            async with gate:
                for event in user_events:
                    result = await self._post(event)
                    done.append(result)
                    if result.error is not None:
                        break  # later events of this user wait for this one
            return done

        chains = await asyncio.gather(*(chain(evs) for evs in by_user.values()))
        return [result for results in chains for result in results]
