"""GET /virtual_events over a real HTTP server (uvicorn on a free port, in-process).

httpx's ASGITransport collects a whole response before returning it, so an endless stream
needs a real server. Events are made through the usual in-process app (`app_client`) on the
same database; the stream's server reads them from the outbox like any other vnode process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn

from tests.conftest import make_settings, node_settings
from tests.integration.test_api_transfer import fund
from tests.support import ADMIN_KEY, bearer, free_port, new_user_id, wait_until
from vnode.apikeys import Scope, create_key, revoke_key
from vnode.app import create_app
from vnode.events import sse


@pytest.fixture(scope="module")
async def server_url(shared_db: str, sim_node: str,
                     tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A second vnode app on the shared database, served by uvicorn (no workers: the
    in-process app_client's workers run the flows)."""
    data_dir: Path = tmp_path_factory.mktemp("sse-app")
    app = create_app(make_settings(data_dir, run_workers=False, **node_settings(sim_node)),
                     shared_db)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                            access_log=False, lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        if task.done():
            task.result()  # raises what stopped it
        return server.started
    await wait_until(started, 30, "uvicorn to start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@dataclass
class Stream:
    """An open event stream, read in the background into `events` and `comments`."""

    response: httpx.Response
    events: list[dict[str, Any]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    ended: bool = False

    async def read(self) -> None:
        frame: dict[str, str] = {}
        try:
            async for line in self.response.aiter_lines():
                if line == "":
                    if "data" in frame:
                        envelope = json.loads(frame["data"])
                        assert frame["id"] == str(envelope["seq"])
                        assert frame["event"] == envelope["type"]
                        self.events.append(envelope)
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
async def open_stream(url: str, user_id: int | str, key: str = ADMIN_KEY,
                      last_event_id: int | None = None) -> AsyncIterator[Stream]:
    headers = bearer(key)
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    async with (
        httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(30, read=None)) as client,
        client.stream("GET", "/virtual_events", params={"user_id": user_id},
                      headers=headers) as response,
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


async def transfer(client: httpx.AsyncClient, sender: int, recipient: int,
                   amount_msat: int) -> None:
    response = await client.post("/virtual_transfer", json={
        "from_user_id": sender, "to_user_id": recipient, "amount_msat": amount_msat})
    assert response.status_code == 200, response.text


async def no_streams_left() -> bool:
    return sse.active_streams() == 0


async def test_live_events_of_one_user_only(server_url: str, app_client: httpx.AsyncClient,
                                            scoped_keys: dict[Scope, str]) -> None:
    alice, bob = new_user_id(), new_user_id()
    await fund(app_client, alice, 100_000)
    await fund(app_client, bob, 100_000)  # before the streams: not sent (no Last-Event-ID)
    async with open_stream(server_url, alice, scoped_keys[Scope.READ]) as stream_a, \
            open_stream(server_url, f"vn_{bob}", scoped_keys[Scope.READ]) as stream_b:
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
        "transfer.completed", "transfer.completed", "admin.credit", "transfer.completed"]
    assert [e["data"]["direction"] for e in stream_a.events] == ["out", "in", "out"]
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
        await transfer(app_client, alice, bob, 14)
        await resumed.wait_for(4, "missed and live events")
    assert resumed.seqs() == [3, 4, 5, 6]
    assert [e["data"]["amount_msat"] for e in resumed.events] == [11, 12, 13, 14]
    async with open_stream(server_url, alice, last_event_id=0) as everything:
        await everything.wait_for(6, "the whole history")
    assert everything.seqs() == [1, 2, 3, 4, 5, 6]
    assert [e["id"] for e in everything.events[2:]] == [e["id"] for e in resumed.events]


async def test_keep_alive_comment(server_url: str, app_client: httpx.AsyncClient,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 1)
    monkeypatch.setattr(sse, "KEEPALIVE_S", 0.3)
    async with open_stream(server_url, alice) as stream:
        async def kept_alive() -> bool:
            return ": keep-alive" in stream.comments
        await wait_until(kept_alive, 10, "a keep-alive comment")
    assert stream.events == []


async def test_revoked_key_ends_the_stream(server_url: str, app_client: httpx.AsyncClient,
                                           shared_db: str) -> None:
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


async def test_refusals(server_url: str, app_client: httpx.AsyncClient,
                        scoped_keys: dict[Scope, str]) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 1000)
    read_key = scoped_keys[Scope.READ]

    async def get(params: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        async with httpx.AsyncClient(base_url=server_url, timeout=10) as client:
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
        ({"user_id": alice}, {**bearer(read_key), "Last-Event-ID": "x"}, 422,
         "invalid_request"),
        ({"user_id": alice}, {**bearer(read_key), "Last-Event-ID": "99"}, 422,
         "invalid_request"),
    ]
    for params, headers, status, code in cases:
        response = await get(params, headers)
        assert response.status_code == status, (params, headers, response.text)
        assert response.json()["error"]["code"] == code, (params, response.text)
    twice = f"{server_url}/virtual_events?user_id={alice}&user_id={alice}"
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(twice, headers=bearer(read_key))
    assert response.status_code == 422
