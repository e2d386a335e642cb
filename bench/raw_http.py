"""A load generator's HTTP/1.1 client on a raw asyncio connection: JSON POSTs, kept alive.

A benchmark's client must cost less CPU than the thing it measures: httpx's AsyncClient used
8.1-8.6 ms of CPU per payment in bench/payments.py, more than the simulated node it loaded
(docs/PERFORMANCE.md, "Issue 13, payments (session 6)"). This speaks just what the servers
of the benches answer (uvicorn: Content-Length or chunked bodies) and nothing more.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import orjson

__all__ = ["Answer", "RawConnection", "TransportError"]

TransportError = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)


class Answer:
    """A status and a body; ``json()`` parses the body."""

    __slots__ = ("body", "status_code")

    def __init__(self, status_code: int, body: bytes) -> None:
        self.status_code = status_code
        self.body = body

    def json(self) -> Any:
        return orjson.loads(self.body)


class RawConnection:
    """One kept-alive connection to `url`, one request at a time; reconnects after the server
    closes it (or after a transport error, which the caller sees)."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self._head = f"Host: {self.host}:{self.port}\r\nContent-Type: application/json\r\n{extra}"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: object) -> Answer:
        payload = orjson.dumps(body)
        if self._writer is None or self._reader is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        try:
            head = f"POST {path} HTTP/1.1\r\n{self._head}Content-Length: {len(payload)}\r\n\r\n"
            writer.write(head.encode() + payload)
            header = await reader.readuntil(b"\r\n\r\n")
            status = int(header[9:12])
            length, chunked, close = 0, False, False
            for line in header.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked = True
                elif name == b"connection" and b"close" in value.lower():
                    close = True
            data = await _chunked(reader) if chunked else await reader.readexactly(length)
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        return Answer(status, data)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers from these servers
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
