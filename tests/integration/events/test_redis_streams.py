"""The Redis Streams channel end to end: the real app in-process, a real redis-server.

Every committed event is XADDed once with the documented fields, in each user's order; consumer
groups read it once; while Redis is down events wait in event_deliveries and arrive when it is
back; the stream stays bounded.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import redis.asyncio as aioredis

from harness.redis import RedisServer
from tests.conftest import make_settings, node_settings
from tests.integration.api.test_api_transfer import fund
from tests.support import in_process, new_user_id, wait_until
from vnode.app import create_app

STREAM_FIELDS = {"id", "type", "user_id", "seq", "created_at", "envelope"}
Entry = tuple[str, dict[str, str]]


def stream_key() -> str:
    return f"vnode:test:{secrets.token_hex(6)}"


@asynccontextmanager
async def running_app(
    tmp_path: Path, sim_node: str, database: str, redis_url: str, key: str, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its workers (the dispatcher every 20 ms) and an admin client to it."""
    settings = make_settings(
        tmp_path,
        **node_settings(sim_node),
        redis_url=redis_url,
        redis_stream_key=key,
        events_interval_s=0.02,
        events_own_loop=True,  # the service's default: fan-out and XADD on their own thread
        **overrides,
    )
    app = create_app(settings, database)
    async with in_process(app) as client:
        yield client


async def transfer(
    client: httpx.AsyncClient, sender: int, recipient: int, amount_msat: int
) -> None:
    response = await client.post(
        "/virtual_transfer",
        json={"from_user_id": sender, "to_user_id": recipient, "amount_msat": amount_msat},
    )
    assert response.status_code == 200, response.text


@dataclass(frozen=True)
class Outboxed:
    outbox_id: int
    event_id: str
    event_type: str
    user_id: int
    user_seq: int
    payload: dict[str, Any]
    created_at: datetime


async def outbox(conn: asyncpg.Connection, after_id: int = 0) -> list[Outboxed]:
    rows = await conn.fetch(
        "SELECT id, event_id::text, event_type, user_id, user_seq, payload::text, created_at "
        "FROM outbox WHERE id > $1 ORDER BY id",
        after_id,
    )
    return [
        Outboxed(
            r["id"],
            r["event_id"],
            r["event_type"],
            r["user_id"],
            r["user_seq"],
            orjson.loads(r["payload"]),
            r["created_at"],
        )
        for r in rows
    ]


async def all_delivered_to_redis(conn: asyncpg.Connection) -> bool:
    """Every outbox row was fanned out to Redis and delivered there."""
    pending = await conn.fetchval(
        "SELECT count(*) FROM outbox o LEFT JOIN event_deliveries d "
        "  ON d.outbox_id = o.id AND d.channel = 'redis' "
        "WHERE d.status IS DISTINCT FROM 'delivered'"
    )
    return bool(pending == 0)


async def read_stream(redis_url: str, key: str) -> list[Entry]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return [
            (str(entry_id), {str(k): str(v) for k, v in (fields or {}).items()})
            for entry_id, fields in await client.xrange(key) or []
        ]
    finally:
        await client.aclose()


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def assert_entry_matches(fields: dict[str, str], event: Outboxed) -> None:
    assert set(fields) == STREAM_FIELDS
    assert fields["id"] == event.event_id
    assert fields["type"] == event.event_type
    assert fields["user_id"] == str(event.user_id)
    assert fields["seq"] == str(event.user_seq)
    assert fields["created_at"] == iso(event.created_at)
    assert orjson.loads(fields["envelope"]) == {
        "version": 1,
        "id": event.event_id,
        "type": event.event_type,
        "user_id": event.user_id,
        "seq": event.user_seq,
        "created_at": iso(event.created_at),
        "data": event.payload,
    }


def assert_user_order(entries: list[Entry]) -> None:
    """Within the stream, each user's seq only goes up."""
    last: dict[str, int] = {}
    for _, fields in entries:
        seq = int(fields["seq"])
        assert seq > last.get(fields["user_id"], 0), (fields["user_id"], seq, last)
        last[fields["user_id"]] = seq


async def test_every_event_is_xadded_once_with_the_documented_fields(
    fresh_db: str, sim_node: str, redis_url: str, tmp_path: Path
) -> None:
    key = stream_key()
    alice, bob = new_user_id(), new_user_id()
    conn = await asyncpg.connect(fresh_db)
    try:
        async with running_app(tmp_path, sim_node, fresh_db, redis_url, key) as client:
            await fund(client, alice, 1_000_000)
            await fund(client, bob, 500_000)
            for amount in (1, 999, 1000, 1001, 5000):
                await transfer(client, alice, bob, amount)
            for amount in (7, 70, 700):
                await transfer(client, bob, alice, amount)
            await wait_until(
                lambda: all_delivered_to_redis(conn), 20, "every event to be delivered to Redis"
            )
        # The app is stopped: nothing can be XADDed any more.
        events = await outbox(conn)
        entries = await read_stream(redis_url, key)
    finally:
        await conn.close()

    assert Counter(e.event_type for e in events) == {"admin.credit": 2, "transfer.completed": 16}
    assert len(entries) == len(events)  # exactly once: no event missing, none twice
    by_id = {fields["id"]: fields for _, fields in entries}
    assert len(by_id) == len(entries)
    for event in events:
        assert_entry_matches(by_id[event.event_id], event)
    # One request at a time, nothing failing: the stream is the outbox, in order.
    assert [fields["id"] for _, fields in entries] == [e.event_id for e in events]
    assert_user_order(entries)


async def test_consumer_group_reads_every_event_once_across_two_consumers(
    fresh_db: str, sim_node: str, redis_url: str, tmp_path: Path
) -> None:
    key, group = stream_key(), "bots"
    users = [new_user_id() for _ in range(4)]
    reader = aioredis.Redis.from_url(redis_url, decode_responses=True)
    await reader.xgroup_create(key, group, id="0", mkstream=True)
    received: dict[str, list[str]] = {"c1": [], "c2": []}
    stop = asyncio.Event()

    async def consume(name: str) -> None:
        """XREADGROUP a few at a time, process, XACK: a bot worker."""
        while not stop.is_set():
            # redis-py types the decoded answer loosely: [(stream, [(id, fields)])]
            answer: Any = await reader.xreadgroup(group, name, {key: ">"}, count=3, block=50)
            for _, messages in answer or []:
                for entry_id, fields in messages:
                    received[name].append(fields["id"])
                    await reader.xack(key, group, entry_id)
            await asyncio.sleep(0)  # let the other consumer take its turn

    consumers = [asyncio.create_task(consume(name)) for name in received]
    conn = await asyncpg.connect(fresh_db)
    try:
        async with running_app(tmp_path, sim_node, fresh_db, redis_url, key) as client:
            for user in users:
                await fund(client, user, 100_000)
            rng = random.Random(7)
            for _ in range(20):
                sender, recipient = rng.sample(users, 2)
                await transfer(client, sender, recipient, rng.randint(1, 1000))
            await wait_until(
                lambda: all_delivered_to_redis(conn), 20, "every event to be delivered to Redis"
            )
        expected = {e.event_id for e in await outbox(conn)}

        async def all_read() -> bool:
            return set(received["c1"]) | set(received["c2"]) >= expected

        await wait_until(all_read, 20, "the two consumers to read every event")
        stop.set()
        await asyncio.gather(*consumers)
        pending = await reader.xpending(key, group)
    finally:
        stop.set()
        await asyncio.gather(*consumers, return_exceptions=True)
        await reader.aclose()
        await conn.close()

    assert len(expected) == 4 + 40
    everything = received["c1"] + received["c2"]
    assert len(everything) == len(set(everything)) == len(expected)  # each once, in one consumer
    assert set(everything) == expected
    assert received["c1"] and received["c2"]  # the work was shared
    assert pending["pending"] == 0  # all acknowledged


async def test_each_users_seq_order_holds_in_the_stream(
    fresh_db: str, sim_node: str, redis_url: str, tmp_path: Path
) -> None:
    key = stream_key()
    users = [new_user_id() for _ in range(6)]
    conn = await asyncpg.connect(fresh_db)
    try:
        async with running_app(tmp_path, sim_node, fresh_db, redis_url, key) as client:
            await asyncio.gather(*(fund(client, user, 1_000_000) for user in users))
            rng = random.Random(11)
            pairs = [rng.sample(users, 2) for _ in range(120)]
            # Concurrent transfers: the outbox interleaves users while the dispatcher runs.
            for start in range(0, len(pairs), 12):
                await asyncio.gather(
                    *(
                        transfer(client, a, b, rng.randint(1, 500))
                        for a, b in pairs[start : start + 12]
                    )
                )
            await wait_until(
                lambda: all_delivered_to_redis(conn), 30, "every event to be delivered to Redis"
            )
        events = await outbox(conn)
        entries = await read_stream(redis_url, key)
    finally:
        await conn.close()

    assert len(entries) == len(events) == 6 + 240
    assert_user_order(entries)
    for user in users:
        seqs = [int(f["seq"]) for _, f in entries if f["user_id"] == str(user)]
        assert seqs == list(range(1, len(seqs) + 1))  # each user's whole sequence, no gap


async def test_redis_down_events_wait_and_arrive_once_when_it_is_back(
    fresh_db: str, sim_node: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    key = stream_key()
    users = [new_user_id() for _ in range(3)]
    conn = await asyncpg.connect(fresh_db)
    try:
        async with running_app(tmp_path, sim_node, fresh_db, redis_server.url, key) as client:
            for user in users:
                await fund(client, user, 1_000_000)
            await wait_until(lambda: all_delivered_to_redis(conn), 20, "the credits in Redis")
            before = await outbox(conn)
            first_stream = await read_stream(redis_server.url, key)
            assert [f["id"] for _, f in first_stream] == [e.event_id for e in before]

            redis_server.stop()
            for i in range(10):
                await transfer(client, users[i % 3], users[(i + 1) % 3], 100 + i)
            during = await outbox(conn, after_id=before[-1].outbox_id)
            assert len(during) == 20

            async def retried_while_down() -> bool:
                # Every new event is pending on the Redis channel, and the oldest was tried
                # at least twice (so it is in backoff, not merely not yet attempted).
                row = await conn.fetchrow(
                    "SELECT count(*) FILTER (WHERE status = 'pending') AS pending, "
                    "  max(attempts) AS attempts, bool_and(last_error LIKE 'redis:%') AS why "
                    "FROM event_deliveries WHERE channel = 'redis' AND outbox_id > $1",
                    before[-1].outbox_id,
                )
                assert row is not None
                return bool(row["pending"] == 20 and row["attempts"] >= 2 and row["why"])

            await wait_until(retried_while_down, 20, "deliveries to be retried while Redis is down")
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM event_deliveries WHERE channel = 'redis' "
                    "AND status = 'delivered' AND outbox_id > $1",
                    before[-1].outbox_id,
                )
                == 0
            )

            await redis_server.start_async()  # same port; the restarted server is empty
            await wait_until(
                lambda: all_delivered_to_redis(conn),
                30,
                "the waiting events to reach Redis once it is back",
            )
        after_stream = await read_stream(redis_server.url, key)
        dead = await conn.fetchval("SELECT count(*) FROM event_deliveries WHERE status = 'dead'")
    finally:
        await conn.close()

    # None lost, none twice: the restarted stream holds exactly the events of the outage (each
    # user's in order; users apart may interleave differently, their backoffs differ), and none
    # of those delivered before it was sent again.
    ids = [fields["id"] for _, fields in after_stream]
    assert len(ids) == len(set(ids)) and set(ids) == {e.event_id for e in during}
    by_id = {fields["id"]: fields for _, fields in after_stream}
    for event in during:
        assert_entry_matches(by_id[event.event_id], event)
    assert_user_order(after_stream)
    assert dead == 0


async def test_the_stream_is_bounded_by_maxlen(
    fresh_db: str, sim_node: str, redis_url: str, tmp_path: Path
) -> None:
    key, maxlen = stream_key(), 1000  # the smallest VNODE_REDIS_STREAM_MAXLEN accepted
    alice, bob = new_user_id(), new_user_id()
    conn = await asyncpg.connect(fresh_db)
    try:
        async with running_app(
            tmp_path, sim_node, fresh_db, redis_url, key, redis_stream_maxlen=maxlen
        ) as client:
            await fund(client, alice, 10_000_000)
            await fund(client, bob, 10_000_000)
            # 800 transfers (1,600 events) through the ledger function itself, in one
            # statement, for speed: back and forth between the two.
            codes = await conn.fetch(
                "SELECT t.code FROM generate_series(0, 799) AS i, LATERAL vnode_transfer("
                "CASE WHEN i % 2 = 1 THEN $1::bigint ELSE $2::bigint END,"
                " CASE WHEN i % 2 = 1 THEN $2::bigint ELSE $1::bigint END,"
                " 'unused', 'BTC', 1, NULL, 'test', NULL, NULL) AS t",
                alice,
                bob,
            )
            assert [row["code"] for row in codes] == ["ok"] * 800
            await wait_until(
                lambda: all_delivered_to_redis(conn), 60, "1,602 events to be delivered to Redis"
            )
        client_ = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            length = await client_.xlen(key)
            config: Any = await client_.config_get("stream-node-max-entries")
            node_entries = int(config["stream-node-max-entries"])
            newest: Any = await client_.xrevrange(key, count=1)
        finally:
            await client_.aclose()
        last_event = (await outbox(conn))[-1]
    finally:
        await conn.close()

    # MAXLEN ~: Redis trims whole macro nodes, so the length stays within one node of maxlen.
    assert maxlen <= length < maxlen + node_entries, length
    assert newest[0][1]["id"] == last_event.event_id  # the newest are the ones kept
