"""The dispatcher's crash safety: `vnode serve` killed with deliveries pending (Redis down) or in
flight (a webhook held unanswered); a new process delivers every event, each user's in order.
(The dispatcher's other guarantees, in-process: tests/integration/events/test_dispatcher.py.)"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import orjson

from harness.redis import RedisServer
from tests.conftest import SIM_HANG_S, TEST_SEED
from tests.integration.events.test_redis_streams import read_stream
from tests.support import ADMIN_KEY, ServeProcess, bearer, new_user_id, wait_until
from vnode.domain.signing import SIGNATURE_HEADER, verify


def serve_env(sim_node: str, **extra: str) -> dict[str, str]:
    return {
        "VNODE_MASTER_SEED": TEST_SEED,
        "VNODE_NODE": "sim",
        "VNODE_RLN_URL": sim_node,
        "VNODE_NODE_TIMEOUT_S": str(SIM_HANG_S / 2),
        "VNODE_EVENTS_INTERVAL_S": "0.02",
        "VNODE_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
        **extra,
    }


async def make_events(url: str, users: list[int], transfers: int) -> None:
    async with httpx.AsyncClient(base_url=url, headers=bearer(ADMIN_KEY), timeout=30) as client:
        for user in users:
            response = await client.post(
                "/admin/credit",
                json={"user_id": user, "amount_msat": 1_000_000, "reason": "crash test"},
            )
            assert response.status_code == 200, response.text
        for i in range(transfers):
            response = await client.post(
                "/virtual_transfer",
                json={
                    "from_user_id": users[i % len(users)],
                    "to_user_id": users[(i + 1) % len(users)],
                    "amount_msat": 1000 + i,
                },
            )
            assert response.status_code == 200, response.text


def sigkill(serve: ServeProcess) -> None:
    serve.proc.send_signal(signal.SIGKILL)
    serve.proc.wait(10)
    assert serve.proc.returncode == -signal.SIGKILL
    serve.stop()  # closes its log


async def test_killed_while_redis_is_down_a_new_process_delivers_everything(
    fresh_db: str, sim_node: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    key = "vnode:test:crash"
    redis_server.stop()  # down from the start; it comes back on the same port
    env = serve_env(sim_node, VNODE_REDIS_URL=redis_server.url, VNODE_REDIS_STREAM_KEY=key)
    users = [new_user_id() for _ in range(3)]
    conn = await asyncpg.connect(fresh_db)
    doomed = ServeProcess(fresh_db, tmp_path / "a", extra_env=env)
    try:
        await doomed.wait_ready()
        await make_events(doomed.url, users, transfers=12)
        total = await conn.fetchval("SELECT count(*) FROM outbox")
        assert total == 3 + 24

        async def all_tried_and_pending() -> bool:
            row = await conn.fetchrow(
                "SELECT count(*) AS n, bool_and(status = 'pending' AND attempts >= 1) AS failed "
                "FROM event_deliveries WHERE channel = 'redis'"
            )
            assert row is not None
            return bool(row["n"] == total and row["failed"])

        await wait_until(all_tried_and_pending, 20, "every delivery to fail while Redis is down")
        sigkill(doomed)
    finally:
        doomed.stop()

    successor = ServeProcess(fresh_db, tmp_path / "b", extra_env=env)
    try:
        await successor.wait_ready()
        await redis_server.start_async()

        async def all_delivered() -> bool:
            return bool(
                await conn.fetchval(
                    "SELECT count(*) FROM event_deliveries WHERE channel = 'redis' "
                    "AND status = 'delivered'"
                )
                == total
            )

        await wait_until(all_delivered, 30, "the new process to deliver everything")
        expected = [
            r["event_id"] for r in await conn.fetch("SELECT event_id::text FROM outbox ORDER BY id")
        ]
    finally:
        successor.stop()
        await conn.close()
    entries = await read_stream(redis_server.url, key)
    ids = [fields["id"] for _, fields in entries]
    assert len(ids) == len(set(ids)) and set(ids) == set(expected)  # all, each once
    # Each user's order; across users it may differ from the outbox (different backoffs).
    last: dict[str, int] = {}
    for _, fields in entries:
        assert int(fields["seq"]) == last.get(fields["user_id"], 0) + 1
        last[fields["user_id"]] = int(fields["seq"])


@dataclass
class Received:
    event_id: str
    user_id: int
    seq: int
    during_first_process: bool


class HoldingReceiver:
    """A webhook receiver on 127.0.0.1 that records every POST and, while `holding`, never
    answers (the delivery stays in flight)."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.received: list[Received] = []
        self.bad_signatures = 0
        self.holding = True
        self.release = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = dict(
                    line.decode().split(": ", 1)
                    for line in head.split(b"\r\n")[1:]
                    if b": " in line
                )
                lower = {k.lower(): v for k, v in headers.items()}
                body = await reader.readexactly(int(lower.get("content-length", "0")))
                try:
                    verify(self.secret, lower.get(SIGNATURE_HEADER.lower()), body, 300)
                except ValueError:
                    self.bad_signatures += 1
                envelope = orjson.loads(body)
                held = self.holding
                self.received.append(
                    Received(envelope["id"], envelope["user_id"], envelope["seq"], held)
                )
                if held:
                    await self.release.wait()
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.close()


async def test_killed_mid_webhook_delivery_the_event_is_redelivered(
    fresh_db: str, sim_node: str, tmp_path: Path
) -> None:
    secret = "whsec-crash-" + "c" * 24
    receiver = HoldingReceiver(secret)
    await receiver.start()
    conn = await asyncpg.connect(fresh_db)
    hook = await conn.fetchval(
        "INSERT INTO webhook_endpoints (url, secret) VALUES ($1, $2) RETURNING id",
        receiver.url,
        secret,
    )
    env = serve_env(sim_node)
    users = [new_user_id() for _ in range(3)]
    doomed = ServeProcess(fresh_db, tmp_path / "a", extra_env=env)
    try:
        await doomed.wait_ready()
        await make_events(doomed.url, users, transfers=9)

        async def in_flight() -> bool:
            return bool(receiver.received)  # held unanswered (kill before the 10 s timeout)

        await wait_until(in_flight, 5, "a delivery to be in flight")
        sigkill(doomed)
    finally:
        doomed.stop()
    try:
        # The kill rolled the delivery transaction back: nothing counts as delivered.
        assert (
            await conn.fetchval("SELECT count(*) FROM event_deliveries WHERE status = 'delivered'")
            == 0
        )
        receiver.holding = False
        successor = ServeProcess(fresh_db, tmp_path / "b", extra_env=env)
        try:
            await successor.wait_ready()
            total = await conn.fetchval("SELECT count(*) FROM outbox")

            async def all_delivered() -> bool:
                return bool(
                    await conn.fetchval(
                        "SELECT count(*) FROM event_deliveries WHERE channel = $1 "
                        "AND status = 'delivered'",
                        f"webhook:{hook}",
                    )
                    == total
                )

            await wait_until(all_delivered, 30, "the new process to deliver everything")
        finally:
            successor.stop()
        expected = {r["event_id"] for r in await conn.fetch("SELECT event_id::text FROM outbox")}
    finally:
        await receiver.stop()
        await conn.close()

    assert total == 3 + 18
    assert receiver.bad_signatures == 0
    ids = [r.event_id for r in receiver.received]
    assert set(ids) == expected  # none lost
    # At least once: only the deliveries in flight at the kill came twice, and only twice.
    in_flight_ids = {r.event_id for r in receiver.received if r.during_first_process}
    twice = {event_id for event_id, n in Counter(ids).items() if n > 1}
    assert twice == in_flight_ids and max(Counter(ids).values()) == 2
    for user in users:
        seqs = [r.seq for r in receiver.received if r.user_id == user]
        assert seqs == sorted(seqs)  # each user's order, even across the crash
        assert sorted(set(seqs)) == list(range(1, max(seqs) + 1))
