"""`vnode serve` as a real process on a free loopback port: started, waited for (/readyz, or
/healthz for "answers at all"), stopped with a signal in a bounded time, SIGKILLed, started
again on the same port."""

from __future__ import annotations

import secrets
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

from harness.processes import VNODE, Process, clean_env
from harness.usage import descendants
from harness.waits import wait_http_ok, wait_http_ok_blocking
from vnode.loopback import free_port, free_port_pair


class ServeProcess:
    """One `vnode serve` against `database_url` (None: its own embedded cluster in
    `data_dir`). Without VNODE_NODE in `env` it runs the simulated node beside it on port + 1,
    so the port is picked with port + 1 free. `env` adds VNODE_ settings to a clean environment
    ("" unsets one); a given `port` restarts a service where its clients expect it. Its log is
    `data_dir/log_name`, where `{port}` stands for the port.

    `embedded_redis`: run the data dir's embedded Redis server when `env` names none (the
    product's default; off here unless asked).

    `own_group`: in a process group of its own, so that kill() and a stop past its deadline
    take its workers and its sim too. The tests keep it in theirs (False): a Ctrl-C of pytest
    stops it with the test run.
    """

    def __init__(
        self,
        data_dir: Path,
        database_url: str | None = None,
        *,
        admin_key: str | None = None,
        workers: int = 1,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        name: str = "vnode serve",
        log_name: str = "serve.log",
        own_group: bool = True,
        embedded_redis: bool = False,
    ) -> None:
        env = dict(env or {})
        self.port = port or (free_port() if "VNODE_NODE" in env else free_port_pair())
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = name
        self.data_dir = data_dir
        self.workers = workers
        # None: a random one; "": none (the service mints its bootstrap key).
        self.admin_key = (
            "harness-admin-" + secrets.token_urlsafe(24) if admin_key is None else admin_key
        )
        settings = {"VNODE_ADMIN_KEY": self.admin_key, "VNODE_ACCESS_LOG": "false"}
        if not embedded_redis:
            # Most tests want no Redis channel unless they give VNODE_REDIS_URL; the ones about
            # the embedded defaults ask for it.
            settings["VNODE_EMBEDDED_REDIS"] = "false"
        if database_url is not None:
            settings["VNODE_DATABASE_URL"] = database_url
        settings.update(env)
        self.env = clean_env(settings)
        self.log_path = data_dir / log_name.format(port=self.port)
        self.process = Process(
            [
                VNODE,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data-dir",
                str(data_dir),
                "--workers",
                str(workers),
            ],
            self.log_path,
            env=self.env,
            own_group=own_group,
        )

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.process.proc

    @property
    def pid(self) -> int | None:
        """Its pid while it runs, else None."""
        return self.process.pid

    def start(self) -> None:
        """Start (or start again after a stop or a kill, same port; the log is appended)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process.start()

    def _check_alive(self) -> None:
        self.process.check_alive(self.name)

    async def wait_ready(self, timeout_s: float = 60.0, *, path: str = "/readyz") -> None:
        """Until `path` answers 200 (/readyz: ready to pay; /healthz: up, maybe not ready);
        RuntimeError with its log's tail if it exits first."""
        await wait_http_ok(
            self.url + path, timeout_s, f"{self.name} to answer {path}", self._check_alive
        )

    def wait_ready_blocking(self, timeout_s: float = 60.0, *, path: str = "/readyz") -> None:
        """wait_ready for code without an event loop."""
        wait_http_ok_blocking(
            self.url + path, timeout_s, f"{self.name} to answer {path}", self._check_alive
        )

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 30.0) -> int | None:
        """`sig` (SIGINT: drain, then the lifespan's cleanup), SIGKILL after `timeout_s`; the
        exit code."""
        return self.process.stop(sig, timeout_s)

    def kill(self) -> None:
        """SIGKILL without waiting: no shutdown hook, no flush, connections cut."""
        self.process.kill()

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the serve process itself, or its uvicorn
        workers (Linux: from /proc)."""
        pid = self.process.pid
        if pid is None:
            return []
        if self.workers == 1:
            return [pid]
        return [child for child in descendants(pid) if _is_python_worker(child)]

    def log(self) -> str:
        return self.process.log()

    def log_tail(self, chars: int = 2000) -> str:
        return self.process.log_tail(chars)


def _is_python_worker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # uvicorn spawns workers with multiprocessing; skip the resource tracker.
    return b"multiprocessing" in cmdline and b"resource_tracker" not in cmdline
