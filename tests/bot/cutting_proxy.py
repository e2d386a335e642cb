"""A TCP proxy in front of vnode that can lose answers: the request reaches vnode and is
carried out, the answer never reaches the bot. The one failure an Idempotency-Key is for. It
can also hold answers back until the test lets them through (`held`)."""

from __future__ import annotations

import asyncio
import contextlib


class CuttingProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.cut_next = 0  # how many of the next answers to lose
        self.cut = 0  # answers lost so far
        self.held: asyncio.Event | None = None  # when set to an unset Event: answers wait for it
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.url = ""

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._connections:  # keep-alive connections the bot still holds
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        forward = asyncio.ensure_future(self._pipe(client_r, up_w))
        try:
            while data := await up_r.read(65536):
                if self.cut_next > 0:
                    # vnode answered; the bot will never know what.
                    self.cut_next -= 1
                    self.cut += 1
                    break
                if self.held is not None:
                    await self.held.wait()
                client_w.write(data)
                await client_w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            forward.cancel()
            for writer in (client_w, up_w):
                writer.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await writer.wait_closed()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
