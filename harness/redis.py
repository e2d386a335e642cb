"""A real `redis-server` (Debian's package: apt-get install -y redis-server) on a free
127.0.0.1 port, with no persistence. stop() and start() again keep the port; a restarted
server is empty."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from pathlib import Path

from harness.processes import Process
from harness.waits import wait_until, wait_until_blocking
from vnode.loopback import free_port

INSTALL_HINT = (
    "redis-server is not installed; the event tests need a real one: "
    "apt-get install -y redis-server"
)


def find_redis_server() -> str | None:
    """The redis-server binary, or None when it is not installed."""
    binary = shutil.which("redis-server")
    if binary is None and Path("/usr/bin/redis-server").exists():
        binary = "/usr/bin/redis-server"
    return binary


def redis_server_binary() -> str:
    binary = find_redis_server()
    if binary is None:
        raise RuntimeError(INSTALL_HINT)
    return binary


def ping(port: int, timeout_s: float = 0.5) -> bool:
    """True when a Redis server answers PING on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """`redis-server --save "" --appendonly no` on 127.0.0.1, logging to
    `log_dir/redis-PORT.log`."""

    def __init__(self, log_dir: Path, port: int | None = None, binary: str | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = log_dir / f"redis-{self.port}.log"
        self.process = Process(
            [
                binary or redis_server_binary(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "no",
            ],
            self.log_path,
            own_group=False,
        )

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.process.proc

    def _answers(self) -> bool:
        self.process.check_alive("redis-server")
        return ping(self.port)

    def spawn(self) -> None:
        """Start without waiting (wait_ready later, to start other things meanwhile)."""
        self.process.start()

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        wait_until_blocking(
            self._answers, timeout_s, f"redis-server on {self.port} to answer PING", period_s=0.02
        )

    def start(self, timeout_s: float = 10.0) -> None:
        """Start and wait (polling PING, with a deadline) until it answers."""
        self.spawn()
        self.wait_ready(timeout_s)

    async def start_async(self, timeout_s: float = 10.0) -> None:
        """start() for code running an event loop."""
        self.spawn()
        await wait_until(
            self._answers, timeout_s, f"redis-server on {self.port} to answer PING", period_s=0.02
        )

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, SIGKILL after `timeout_s`."""
        self.process.stop(signal.SIGTERM, timeout_s)

    def stream_length(self, key: str) -> int | None:
        """XLEN of a stream; None when the server does not answer."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2.0) as sock:
                sock.sendall(f"XLEN {key}\r\n".encode())
                line = sock.makefile("rb").readline()
        except OSError:
            return None
        return int(line[1:]) if line.startswith(b":") else None
