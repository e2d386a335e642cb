"""M3 against a real `vnode serve`: a huge upload with no key is refused while it is being read,
and the worker's memory does not grow with it (security review 1)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import select
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import TEST_SEED, WEBHOOK_SECRET
from tests.support import ServeProcess

UPLOAD_BYTES = 200 * 1024 * 1024
CHUNK = b"0" * (256 * 1024)
MAX_GROWTH_BYTES = 20 * 1024 * 1024
DEADLINE_S = 60.0


@dataclass
class Answer:
    status: int | None  # None: the connection ended before a status line came
    body: bytes
    sent: int  # body bytes the client got onto the wire before the answer or the close


def _kib(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB$", status, re.MULTILINE)
    assert match, status
    return int(match[1]) * 1024


def _reset_peak(pid: int) -> bool:
    """Set VmHWM (peak RSS) back to the current RSS, so it measures only what comes next."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class RssWatch:
    """Peak RSS of a process while the block runs: VmHWM where the kernel lets us reset it,
    and in any case the largest VmRSS seen polling every 5 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = 0
        self.peak = 0

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        hwm_reset = _reset_peak(self.pid)
        self.before = self.peak = _kib(self.pid, "VmRSS")
        stop = asyncio.Event()

        async def poll() -> None:
            while not stop.is_set():
                self.peak = max(self.peak, _kib(self.pid, "VmRSS"))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.005)

        poller = asyncio.create_task(poll())
        try:
            yield
        finally:
            stop.set()
            await poller
            if hwm_reset:
                self.peak = max(self.peak, _kib(self.pid, "VmHWM"))

    @property
    def growth(self) -> int:
        return self.peak - self.before


def _read_answer(sock: socket.socket, deadline: float) -> tuple[int | None, bytes]:
    """Status and body of one HTTP/1.1 answer (Content-Length framed), or what arrived of it
    before the server closed the connection or the deadline passed."""
    data = b""
    expected: int | None = None
    with contextlib.suppress(ConnectionError, TimeoutError):
        while expected is None or len(data) < expected:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            more = sock.recv(65536)
            if not more:
                break
            data += more
            head, found, _ = data.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)\r?$", head)
            if found and length:
                expected = len(head) + 4 + int(length[1])
    status = re.match(rb"HTTP/1\.[01] (\d{3}) ", data)
    return (int(status[1]) if status else None), data.partition(b"\r\n\r\n")[2]


def _upload(
    port: int, path: str, total: int, headers: dict[str, str], chunked: bool, deadline_s: float
) -> Answer:
    """POST `total` bytes the way a hostile client would: keep sending until the server answers
    or hangs up, whatever it says. A plain socket, not asyncio streams: those drop whatever the
    server answered as soon as a write fails, and a server that refuses an upload closes the
    connection on purpose."""
    deadline = time.monotonic() + deadline_s
    framing = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(total)}
    head = "".join(
        f"{name}: {value}\r\n"
        for name, value in {
            "Host": "vnode",
            "Content-Type": "application/json",
            **framing,
            **headers,
        }.items()
    )
    frame = b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK)
    # The chunked body on the wire: whole chunks up to `total`, then the last (empty) chunk.
    frames = iter([frame] * -(-total // len(CHUNK)) + [b"0\r\n\r\n"] if chunked else [])
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=deadline_s) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\n{head}\r\n".encode())
        pending = memoryview(next(frames, b""))
        with contextlib.suppress(ConnectionError):
            while pending and time.monotonic() < deadline:
                readable, writable, _ = select.select([sock], [sock], [], 0.5)
                if readable:
                    break  # the answer (or the close) came: stop sending
                if writable:
                    done = sock.send(pending)
                    sent += done
                    pending = pending[done:] or memoryview(next(frames, b""))
        status, body = _read_answer(sock, deadline)
    return Answer(status, body, sent)


async def upload(
    port: int,
    path: str,
    total: int,
    headers: dict[str, str],
    chunked: bool = True,
    deadline_s: float = DEADLINE_S,
) -> Answer:
    # In a thread, so the RSS poll on the event loop keeps running meanwhile.
    return await asyncio.to_thread(_upload, port, path, total, headers, chunked, deadline_s)


@pytest.fixture
async def server(fresh_db: str, sim_node: str, tmp_path: Path) -> AsyncIterator[ServeProcess]:
    # The session's sim, not one started beside the service: one process less to start, and
    # the RSS read below is the service's alone.
    serve = ServeProcess(
        fresh_db,
        tmp_path / "serve",
        workers=1,
        extra_env={
            "VNODE_MASTER_SEED": TEST_SEED,
            "VNODE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "VNODE_NODE": "sim",
            "VNODE_RLN_URL": sim_node,
        },
    )
    try:
        await serve.wait_ready()
        yield serve
    finally:
        serve.stop()


def assert_refused(answer: Answer, what: str) -> None:
    # The 413 is sent before the connection is closed; the client saw it while still sending.
    assert answer.status == 413, (what, answer)
    error = orjson.loads(answer.body)["error"]
    assert error["code"] == "payload_too_large", (what, error)
    # Far less than the upload went onto the wire: the server stopped reading, then hung up.
    assert answer.sent < 64 * 1024 * 1024, (what, answer.sent)


async def test_m3_streamed_200mb_no_key_rss_bounded(server: ServeProcess) -> None:
    pid = server.proc.pid
    port = server.port
    # `--workers 1` serves the app in this very process: its RSS is the worker's.
    assert Path(f"/proc/{pid}/status").exists()
    # Warm up the routes (first request imports and caches lazily) before measuring.
    for path in ("/webhook/payment", "/virtual_sendpayment"):
        small = await upload(port, path, len(CHUNK), {})
        assert small.status is not None and small.status < 500, small

    results: dict[str, tuple[Answer, int]] = {}
    for path in ("/webhook/payment", "/virtual_sendpayment"):
        watch = RssWatch(pid)
        async with watch.watching():
            answer = await upload(port, path, UPLOAD_BYTES, {})
        results[path] = (answer, watch.growth)
    report = {path: (a.status, a.sent, growth // 1024) for path, (a, growth) in results.items()}
    print(
        f"\nM3 upload results (status, bytes sent, RSS growth KiB): {report}; "
        f"RSS now {_kib(pid, 'VmRSS') // 1024} KiB"
    )
    for path, (answer, growth) in results.items():
        assert_refused(answer, path)
        assert growth < MAX_GROWTH_BYTES, (path, growth)
    # A declared length of 10 GB is refused before a byte of it is read (nothing is sent:
    # a server that waits for the body does not answer within the deadline).
    declared = await upload(port, "/admin/credit", 10 * 1024**3, {}, chunked=False, deadline_s=10)
    assert_refused(declared, "Content-Length: 10 GB")
    assert declared.sent == 0

    # The service is still there and well, and nothing was a 500.
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/healthz")).status_code == 200
    assert server.proc.poll() is None
    assert "unhandled error" not in server.log()
