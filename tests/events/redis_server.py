"""A real `redis-server` process for the event tests (Debian's package: apt-get install -y
redis-server), on a free 127.0.0.1 port, with no persistence."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.support import free_port, wait_until

INSTALL_HINT = ("redis-server is not installed; the event tests need a real one: "
                "apt-get install -y redis-server")


def redis_server_binary() -> str:
    binary = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)
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
    """`redis-server --save "" --appendonly no` on 127.0.0.1; stop() and start() again keep the
    port (a restarted server is empty: nothing is persisted)."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.binary = redis_server_binary()
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = log_dir / f"redis-{self.port}.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"redis-server on {self.port} is already running")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "--save", "", "--appendonly", "no", "--port", str(self.port),
                 "--bind", "127.0.0.1", "--daemonize", "no"],
                stdout=log, stderr=subprocess.STDOUT)
        return self.proc

    def _check_alive(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}: "
                               + self.log_path.read_text(errors="replace")[-2000:])

    def start(self, timeout_s: float = 10.0) -> None:
        """Start and wait (polling PING, with a deadline) until it answers."""
        proc = self._spawn()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_alive(proc)
            if ping(self.port):
                return
            time.sleep(0.02)
        raise TimeoutError(f"redis-server on {self.port} did not answer PING in {timeout_s}s")

    async def start_async(self, timeout_s: float = 10.0) -> None:
        """start() for a test running an event loop (waits with tests.support.wait_until)."""
        proc = self._spawn()

        async def answers() -> bool:
            self._check_alive(proc)
            return ping(self.port)
        await wait_until(answers, timeout_s, f"redis-server on {self.port} to answer PING")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
