"""GET /virtual_events over a real HTTP server (uvicorn on a free port, in-process).

httpx's ASGITransport collects a whole response before returning it, so an endless stream
needs a real server. Events are made through the usual in-process app (`app_client`) on the
same database; the stream's server reads them from the outbox like any other vnode process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import fastapi.routing
import fastapi.sse
import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from tests.conftest import make_settings, node_settings
from tests.integration.api.test_api_transfer import fund
from tests.support import ADMIN_KEY, bearer, free_port, new_user_id, wait_until
from vnode.apikeys import Scope, create_key, revoke_key
from vnode.app import create_app
from vnode.events import sse
from vnode.tls import tls_context


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """`app` served by uvicorn on a free port, in this process; yields its URL."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        if task.done():
            task.result()  # raises what stopped it
        return server.started

    await wait_until(started, 30, "uvicorn to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture(scope="module")
async def server_url(
    shared_db: str, sim_node: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A second vnode app on the shared database, served by uvicorn (no workers: the
    in-process app_client's workers run the flows)."""
    data_dir: Path = tmp_path_factory.mktemp("sse-app")
    app = create_app(
        make_settings(data_dir, run_workers=False, **node_settings(sim_node)), shared_db
    )
    async with serving(app) as url:
        yield url


@dataclass
class Stream:
    """An open event stream, read in the background into `events`, `comments` and `retries`."""

    response: httpx.Response
    events: list[dict[str, Any]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retries: list[str] = field(default_factory=list)
    ended: bool = False

    async def read(self) -> None:
        frame: dict[str, str] = {}
        try:
            async for line in self.response.aiter_lines():
                if line == "":
                    if "data" in frame:
                        # The contract (docs/EVENTS.md): id = seq, event = type, data = envelope.
                        assert set(frame) == {"id", "event", "data"}, frame
                        envelope = json.loads(frame["data"])
                        assert frame["id"] == str(envelope["seq"])
                        assert frame["event"] == envelope["type"]
                        self.events.append(envelope)
                    elif frame:
                        assert set(frame) == {"retry"}, frame
                        self.retries.append(frame["retry"])
                    frame = {}
                elif line.startswith(":"):
                    self.comments.append(line)
                else:
                    name, _, value = line.partition(": ")
                    assert name not in frame, line
                    frame[name] = value
        except (httpx.ReadError, httpx.RemoteProtocolError):
            pass
        self.ended = True

    def seqs(self) -> list[int]:
        return [e["seq"] for e in self.events]

    async def wait_for(self, count: int, what: str = "events") -> None:
        async def arrived() -> bool:
            return len(self.events) >= count

        await wait_until(arrived, 15, f"{count} {what}")


@contextlib.asynccontextmanager
async def open_stream(
    url: str, user_id: int | str, key: str = ADMIN_KEY, last_event_id: int | None = None
) -> AsyncIterator[Stream]:
    headers = bearer(key)
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    async with (
        httpx.AsyncClient(
            base_url=url, timeout=httpx.Timeout(30, read=None), verify=tls_context()
        ) as client,
        client.stream(
            "GET", "/virtual_events", params={"user_id": user_id}, headers=headers
        ) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = Stream(response)
        reader = asyncio.create_task(stream.read())
        try:
            yield stream
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def transfer(
    client: httpx.AsyncClient, sender: int, recipient: int, amount_msat: int
) -> None:
    response = await client.post(
        "/virtual_transfer",
        json={"from_user_id": sender, "to_user_id": recipient, "amount_msat": amount_msat},
    )
    assert response.status_code == 200, response.text


async def open_streams(url: str) -> float:
    """The server's `vnode_sse_streams` gauge (GET /metrics)."""
    async with httpx.AsyncClient(
        base_url=url, headers=bearer(ADMIN_KEY), timeout=10, verify=tls_context()
    ) as client:
        text = (await client.get("/metrics")).text
    return next(
        float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("vnode_sse_streams ")
    )


async def test_live_events_of_one_user_only(
    server_url: str, app_client: httpx.AsyncClient, scoped_keys: dict[Scope, str]
) -> None:
    alice, bob = new_user_id(), new_user_id()
    await fund(app_client, alice, 100_000)
    await fund(app_client, bob, 100_000)  # before the streams: not sent (no Last-Event-ID)
    async with (
        open_stream(server_url, alice, scoped_keys[Scope.READ]) as stream_a,
        open_stream(server_url, f"vn_{bob}", scoped_keys[Scope.READ]) as stream_b,
    ):
        await transfer(app_client, alice, bob, 1000)
        await transfer(app_client, bob, alice, 400)
        await fund(app_client, bob, 5)
        await stream_a.wait_for(2, "of alice's events")
        await stream_b.wait_for(3, "of bob's events")
        await transfer(app_client, alice, bob, 1)
        await stream_a.wait_for(3, "of alice's events")
        await stream_b.wait_for(4, "of bob's events")
    assert {e["user_id"] for e in stream_a.events} == {alice}
    assert {e["user_id"] for e in stream_b.events} == {bob}
    assert stream_a.seqs() == [2, 3, 4]  # seq 1 (the funding) came before the stream
    assert stream_b.seqs() == [2, 3, 4, 5]
    assert [e["type"] for e in stream_b.events] == [
        "transfer.completed",
        "transfer.completed",
        "admin.credit",
        "transfer.completed",
    ]
    assert [e["data"]["direction"] for e in stream_a.events] == ["out", "in", "out"]

    async def no_streams_left() -> bool:
        return await open_streams(server_url) == 0

    await wait_until(no_streams_left, 10, "the server to end the closed streams")


async def test_resume_with_last_event_id(server_url: str, app_client: httpx.AsyncClient) -> None:
    alice, bob = new_user_id(), new_user_id()
    await fund(app_client, alice, 100_000)
    async with open_stream(server_url, alice) as first:
        await transfer(app_client, alice, bob, 10)
        await first.wait_for(1)
    last_seen = first.events[-1]["seq"]
    assert last_seen == 2
    for amount in (11, 12, 13):  # while nobody listens
        await transfer(app_client, alice, bob, amount)
    async with open_stream(server_url, alice, last_event_id=last_seen) as resumed:
        await resumed.wait_for(3, "missed events")
        assert await open_streams(server_url) == 1
        assert resumed.retries == [str(sse.RETRY_MS)]  # sent first, once
        await transfer(app_client, alice, bob, 14)
        await resumed.wait_for(4, "missed and live events")
    assert resumed.seqs() == [3, 4, 5, 6]
    assert [e["data"]["amount_msat"] for e in resumed.events] == [11, 12, 13, 14]
    async with open_stream(server_url, alice, last_event_id=0) as everything:
        await everything.wait_for(6, "the whole history")
    assert everything.seqs() == [1, 2, 3, 4, 5, 6]
    assert [e["id"] for e in everything.events[2:]] == [e["id"] for e in resumed.events]


async def test_keep_alive_comment(
    server_url: str, app_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 1)
    # FastAPI's EventSourceResponse pings after 15 s without an event (docs/EVENTS.md). Its
    # routing module imported the interval and reads it at each wait: patched there (setattr
    # fails should it be renamed), it holds for the server in this process.
    assert fastapi.sse._PING_INTERVAL == 15.0
    monkeypatch.setattr(fastapi.routing, "_PING_INTERVAL", 0.3)
    async with open_stream(server_url, alice) as stream:

        async def kept_alive() -> bool:
            return len(stream.comments) >= 2

        await wait_until(kept_alive, 10, "two keep-alive comments")
    assert set(stream.comments) == {": ping"}
    assert stream.events == []


async def test_revoked_key_ends_the_stream(
    server_url: str, app_client: httpx.AsyncClient, shared_db: str
) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 1)
    conn = await asyncpg.connect(shared_db)
    try:
        info, key = await create_key(conn, "sse-revoke", Scope.READ)
        async with open_stream(server_url, alice, key) as stream:
            await revoke_key(conn, info.id)

            async def ended() -> bool:
                return stream.ended

            await wait_until(ended, 10, "the stream to end after the revocation")
    finally:
        await conn.close()


async def test_refusals(
    server_url: str, app_client: httpx.AsyncClient, scoped_keys: dict[Scope, str]
) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 1000)
    read_key = scoped_keys[Scope.READ]

    async def get(params: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        async with httpx.AsyncClient(
            base_url=server_url, timeout=10, verify=tls_context()
        ) as client:
            return await client.get("/virtual_events", params=params, headers=headers)

    cases: list[tuple[dict[str, Any], dict[str, str], int, str]] = [
        ({"user_id": alice}, {}, 401, "unauthorized"),
        ({"user_id": alice}, bearer("vnk_not-a-key"), 401, "unauthorized"),
        # A key in the query string is never accepted, and refused even beside a header.
        ({"user_id": alice, "api_key": read_key}, {}, 401, "unauthorized"),
        ({"user_id": alice, "api_key": read_key}, bearer(read_key), 422, "invalid_request"),
        ({"user_id": new_user_id()}, bearer(read_key), 404, "unknown_user"),
        ({"user_id": "12x"}, bearer(read_key), 422, "invalid_user_id"),
        ({"user_id": 0}, bearer(read_key), 422, "invalid_user_id"),
        ({}, bearer(read_key), 422, "invalid_request"),
        ({"user_id": alice}, {**bearer(read_key), "Last-Event-ID": "x"}, 422, "invalid_request"),
        ({"user_id": alice}, {**bearer(read_key), "Last-Event-ID": "99"}, 422, "invalid_request"),
    ]
    for params, headers, status, code in cases:
        response = await get(params, headers)
        assert response.status_code == status, (params, headers, response.text)
        assert response.json()["error"]["code"] == code, (params, response.text)
    twice = f"{server_url}/virtual_events?user_id={alice}&user_id={alice}"
    async with httpx.AsyncClient(timeout=10, verify=tls_context()) as client:
        response = await client.get(twice, headers=bearer(read_key))
    assert response.status_code == 422


# --- L2: caps on open streams, and streams never starve the money endpoints -----------------


async def try_stream(url: str, user_id: int, key: str) -> httpx.Response:
    """Open a stream that is expected to be refused; returns the (read) refusal."""
    async with (
        httpx.AsyncClient(base_url=url, timeout=10, verify=tls_context()) as client,
        client.stream(
            "GET", "/virtual_events", params={"user_id": user_id}, headers=bearer(key)
        ) as response,
    ):
        assert response.status_code != 200, "the stream was admitted"
        await response.aread()
        return response


def hub_of(app: FastAPI) -> sse.StreamHub:
    hub: sse.StreamHub = app.state.sse_hub
    return hub


async def test_l2_sse_streams_capped(
    app_client: httpx.AsyncClient, shared_db: str, sim_node: str, tmp_path: Path
) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 1)
    conn = await asyncpg.connect(shared_db)
    try:
        key_a, key_b, key_c = [
            (await create_key(conn, f"sse-cap-{n}", Scope.READ))[1] for n in "abc"
        ]
    finally:
        await conn.close()
    app = create_app(
        make_settings(
            tmp_path,
            run_workers=False,
            sse_max_streams=3,
            sse_max_streams_per_key=2,
            **node_settings(sim_node),
        ),
        shared_db,
    )
    async with serving(app) as url, contextlib.AsyncExitStack() as streams:
        first_a = await streams.enter_async_context(contextlib.AsyncExitStack())
        await first_a.enter_async_context(open_stream(url, alice, key_a))
        await streams.enter_async_context(open_stream(url, alice, key_a))

        per_key = await try_stream(url, alice, key_a)  # a third stream of one key
        assert per_key.status_code == 429, per_key.text
        body = per_key.json()
        assert set(body) == {"error", "request_id"} and body["request_id"]
        assert body["error"]["code"] == "too_many_streams"
        assert "per API key" in body["error"]["message"]

        await streams.enter_async_context(open_stream(url, alice, key_b))  # 3 of 3
        in_all = await try_stream(url, alice, key_c)
        assert in_all.status_code == 429 and in_all.json()["error"]["code"] == "too_many_streams"
        assert hub_of(app).open_streams == 3

        await first_a.aclose()  # the client goes away: its place is given back

        async def freed() -> bool:
            return hub_of(app).open_streams == 2

        await wait_until(freed, 10, "the closed stream's place to be given back")
        # A stream admitted, then refused (no such user), gives its place back at once.
        assert (await try_stream(url, new_user_id(), key_c)).status_code == 404
        assert hub_of(app).open_streams == 2
        await streams.enter_async_context(open_stream(url, alice, key_c))
        assert hub_of(app).open_streams == 3
        # Refused streams never took a place.
        assert (await try_stream(url, alice, key_b)).status_code == 429

    async def none_left() -> bool:
        return hub_of(app).open_streams == 0

    await wait_until(none_left, 10, "every place to be given back")


async def lock_waiters(conn: asyncpg.Connection) -> int:
    """Sessions of this database waiting for a lock (here: SSE queries behind LOCK outbox)."""
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE NOT l.granted AND d.datname = current_database()"
        )
    )


async def test_l2_money_endpoints_answer_with_many_streams_open(
    fresh_db: str, sim_node: str, tmp_path: Path
) -> None:
    """Streams whose queries are stuck (here: the outbox locked, as a stand-in for a slow
    database) must not take the connections balance reads and transfers need.

    Before: every stream polled on its own with no bound on pool use, so 24 stuck streams held
    the whole 4-connection pool and money requests waited for as long as the lock."""
    streams_n = 24
    app = create_app(
        make_settings(
            tmp_path,
            run_workers=False,
            db_pool_min=2,
            db_pool_max=4,
            sse_max_streams=100,
            sse_max_streams_per_key=100,
            **node_settings(sim_node),
        ),
        fresh_db,
    )
    alice, bob = new_user_id(), new_user_id()
    locker = await asyncpg.connect(fresh_db)
    monitor = await asyncpg.connect(fresh_db)
    async with (
        serving(app) as url,
        httpx.AsyncClient(
            base_url=url, headers=bearer(ADMIN_KEY), timeout=10, verify=tls_context()
        ) as client,
        contextlib.AsyncExitStack() as stack,
    ):
        await fund(client, alice, 1_000_000)
        await fund(client, bob, 1)
        streams = [
            await stack.enter_async_context(open_stream(url, alice)) for _ in range(streams_n)
        ]
        lock = locker.transaction()
        await lock.start()
        try:
            await locker.execute("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE")

            async def streams_stuck() -> bool:
                return await lock_waiters(monitor) >= 1

            await wait_until(streams_stuck, 10, "the streams' queries to wait on the lock")
            # Balance reads, back to back, for longer than every stream takes to poll once.
            slowest, reads = 0.0, 0
            window_ends = time.monotonic() + 1.5
            while time.monotonic() < window_ends:
                started = time.monotonic()
                response = await client.post(
                    "/virtual_assetbalance", json={"user_id": alice, "asset_id": "BTC"}, timeout=3
                )
                assert response.status_code == 200, response.text
                slowest = max(slowest, time.monotonic() - started)
                reads += 1
            stuck = await lock_waiters(monitor)
        finally:
            await lock.rollback()
        assert slowest < 0.5, f"a balance read took {slowest:.2f} s with {streams_n} streams"
        # Stream queries never hold more than their share of the pool.
        assert stuck <= hub_of(app).db_slots, stuck
        assert reads > 10
        # And the streams work again once the database does.
        started = time.monotonic()
        await transfer(client, alice, bob, 5)
        transfer_s = time.monotonic() - started
        for stream in streams:
            await stream.wait_for(1, "the transfer on every stream")
        assert transfer_s < 1.0, transfer_s
    await locker.close()
    await monitor.close()
