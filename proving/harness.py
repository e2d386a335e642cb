"""The proving ground's stage: a throwaway PostgreSQL, `vnode sim serve`, two `vnode serve`
processes on one database (optionally a redis-server for the event stream), the peak memory of
each process, and `vnode audit` at the end.

Linux only (it reads /proc). Every process is started here and stopped here, by its own pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import asyncpg
import httpx

from vnode.apikeys import Scope, create_key
from vnode.db.dsn import with_database
from vnode.db.embedded import EmbeddedPostgres
from vnode.db.migrate import migrate
from vnode.lightning.sim_process import SimProcess
from vnode.loopback import free_port

VNODE = [sys.executable, "-m", "vnode.cli"]
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
# One RGB asset channel on the sim, as `make run` has; the load itself moves BTC only.
SIM_ASSET = "rgb:CJkb4YZw-jRiz2sk-~PARPio-wtVYI1c-XAEYCqO-wTfvRZ8=1000000000"


async def wait_for(condition: Callable[[], object], timeout_s: float, what: str,
                   period_s: float = 0.1) -> None:
    """Poll an async (or plain) condition until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        held = condition()
        if asyncio.iscoroutine(held):
            held = await held
        if held:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        await asyncio.sleep(period_s)


def base_env() -> dict[str, str]:
    """This process's environment without any VNODE_ setting a developer may have exported."""
    return {k: v for k, v in os.environ.items() if not k.startswith("VNODE_")}


# --------------------------------------------------------------------------------------------
# PostgreSQL


class Database:
    """A fresh, migrated database: on a server the caller runs (tests), or on a throwaway
    embedded cluster in `workdir` (the command line), stopped and removed at the end."""

    def __init__(self, workdir: Path, server_dsn: str | None = None) -> None:
        self.workdir = workdir
        self.server_dsn = server_dsn
        self.cluster: EmbeddedPostgres | None = None
        self.dsn = ""
        self._created: str | None = None

    async def start(self) -> str:
        if self.server_dsn is None:
            self.cluster = EmbeddedPostgres(self.workdir / "pg" / "data")
            self.dsn = await asyncio.to_thread(self.cluster.start)
        else:
            self._created = "vnode_proving_" + secrets.token_hex(5)
            admin = await asyncpg.connect(with_database(self.server_dsn, "postgres"))
            try:
                await admin.execute(f"CREATE DATABASE {self._created}")
            finally:
                await admin.close()
            self.dsn = with_database(self.server_dsn, self._created)
        conn = await asyncpg.connect(self.dsn)
        try:
            await migrate(conn)  # once, before the two processes start
        finally:
            await conn.close()
        return self.dsn

    async def server_version(self) -> str:
        conn = await asyncpg.connect(self.dsn)
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    async def create_keys(self) -> dict[Scope, str]:
        """A spend key for money, a receive key for invoices and a read key for reads, as the
        bot would hold them (the admin key comes from VNODE_ADMIN_KEY, for funding only)."""
        conn = await asyncpg.connect(self.dsn)
        try:
            keys = {}
            for scope in (Scope.SPEND, Scope.RECEIVE, Scope.READ):
                _, keys[scope] = await create_key(conn, f"proving-{scope.value}", scope)
            return keys
        finally:
            await conn.close()

    async def stop(self) -> None:
        if self.cluster is not None:
            await asyncio.to_thread(self.cluster.stop)
        elif self._created is not None and self.server_dsn is not None:
            admin = await asyncpg.connect(with_database(self.server_dsn, "postgres"))
            try:
                await admin.execute(f"DROP DATABASE IF EXISTS {self._created} WITH (FORCE)")
            finally:
                await admin.close()


# --------------------------------------------------------------------------------------------
# Processes


class ServeNode:
    """One `vnode serve` (one worker) on a fixed port, in its own process group so that a
    SIGKILL takes all of it; it can be started again on the same port after a kill."""

    def __init__(self, name: str, workdir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = workdir / name
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / "serve.log"
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    @property
    def pid(self) -> int | None:
        return None if self.proc is None or self.proc.poll() is not None else self.proc.pid

    def spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*VNODE, "serve", "--host", "127.0.0.1", "--port", str(self.port),
                 "--data-dir", str(self.data_dir), "--workers", "1"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1

    async def wait_serving(self, timeout_s: float, *, ready: bool) -> None:
        """Until /readyz says ready (`ready`), or merely until the process answers HTTP (a
        restart while the node is locked is serving, just not ready to pay)."""
        proc = self.proc
        assert proc is not None
        async with httpx.AsyncClient(base_url=self.url, timeout=2.0) as client:
            async def up() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {proc.returncode}: "
                                       f"{self.log_tail()}")
                try:
                    answer = await client.get("/readyz" if ready else "/healthz")
                except httpx.TransportError:
                    return False
                return answer.status_code == 200
            await wait_for(up, timeout_s, f"{self.name} to serve", period_s=0.05)

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown hook, no flush, connections cut."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.kills += 1

    async def reap(self, timeout_s: float = 10.0) -> None:
        proc = self.proc
        if proc is not None:
            await wait_for(lambda: proc.poll() is not None, timeout_s, f"{self.name} to exit",
                           period_s=0.02)

    async def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGINT (graceful), then SIGKILL after `timeout_s`; the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                await self.reap(timeout_s)
            except TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await self.reap(5.0)
        return proc.returncode

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class RedisServer:
    """`redis-server` without persistence, so the event dispatcher runs as in production."""

    def __init__(self, workdir: Path, binary: str) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.binary = binary
        self.log_path = workdir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "--save", "", "--appendonly", "no", "--port", str(self.port),
                 "--bind", "127.0.0.1", "--daemonize", "no"],
                stdout=log, stderr=subprocess.STDOUT)

    async def wait_ready(self, timeout_s: float = 10.0) -> None:
        async def pong() -> bool:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                return False
            try:
                writer.write(b"PING\r\n")
                return (await reader.read(64)).startswith(b"+PONG")
            finally:
                writer.close()
        await wait_for(pong, timeout_s, "redis-server to answer PING", period_s=0.05)

    async def stream_length(self, key: str = "vnode:events") -> int | None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return None
        try:
            writer.write(f"XLEN {key}\r\n".encode())
            line = await reader.readline()
            return int(line[1:]) if line.startswith(b":") else None
        finally:
            writer.close()

    async def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                await wait_for(lambda: proc.poll() is not None, 10.0, "redis-server to exit")
            except TimeoutError:
                proc.kill()


# --------------------------------------------------------------------------------------------
# Peak memory


def children_by_parent() -> dict[int, list[int]]:
    """Every process's children (from /proc/*/stat's parent pid)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces: split after it.
        fields = stat.rsplit(")", 1)[1].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def tree_pids(root: int, children: dict[int, list[int]]) -> list[int]:
    """`root` and every descendant."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def rss_kib(pid: int) -> int:
    """Resident set size of one process in KiB (0 once it is gone)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB
    except (OSError, IndexError, ValueError):
        return 0


def hwm_kib(pid: int) -> int:
    """The kernel's own peak RSS (VmHWM) of one process, in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


@dataclass
class MemorySampler:
    """Samples the RSS of each named process tree every `period_s`; keeps the peak. A process
    killed and restarted keeps its name, so its peak covers every incarnation."""

    roots: dict[str, Callable[[], int | None]]
    period_s: float = 0.5
    peak_kib: dict[str, int] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        children = children_by_parent()
        for name, pid_of in self.roots.items():
            pid = pid_of()
            if pid is None:
                continue
            pids = tree_pids(pid, children)
            now = sum(rss_kib(p) for p in pids)
            # VmHWM catches a spike between two samples (for a single-process tree).
            peak = max(now, hwm_kib(pid) if len(pids) == 1 else 0)
            self.peak_kib[name] = max(self.peak_kib.get(name, 0), peak)

    async def _run(self) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(self.period_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="memory-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self.sample)


# --------------------------------------------------------------------------------------------
# The whole stage


@dataclass
class StageOptions:
    """How the stage is built; chaos shortens the node timeout so the sim's hang is a timeout."""

    server_dsn: str | None = None
    redis: bool = True
    sim_hang_s: float = 30.0
    settle_delay_s: float = 0.02
    serve_env: dict[str, str] = field(default_factory=dict)
    keep_workdir: bool = False


@dataclass(frozen=True)
class AuditResult:
    clean: bool
    exit_code: int
    verdict: str
    output: str


def _pid_getter(serve: ServeNode) -> Callable[[], int | None]:
    return lambda: serve.pid


class Stage:
    """`async with Stage(options) as stage:` - everything running; stopped in reverse order."""

    def __init__(self, options: StageOptions) -> None:
        self.options = options
        self.workdir = Path(tempfile.mkdtemp(prefix="vnode-proving-"))
        self.admin_key = "proving-admin-" + secrets.token_urlsafe(24)
        self.master_seed = secrets.token_hex(32)
        self.database = Database(self.workdir, options.server_dsn)
        self.sim: SimProcess | None = None
        self.sim_url = ""
        self.redis: RedisServer | None = None
        self.serves: list[ServeNode] = []
        self.keys: dict[Scope, str] = {}
        self.memory: MemorySampler | None = None
        self.postgres_version = ""

    async def __aenter__(self) -> Stage:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def start(self) -> None:
        """Start everything; on any failure, stop what was started and raise."""
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise

    async def _start(self) -> None:
        sim_port = free_port()
        self.sim = SimProcess("127.0.0.1", sim_port, self.workdir / "sim.log", (
            "--hang-s", str(self.options.sim_hang_s),
            "--settle-delay-s", str(self.options.settle_delay_s), "--rgb-asset", SIM_ASSET))
        self.sim_url = self.sim.url
        redis_binary = shutil.which("redis-server") if self.options.redis else None
        if redis_binary is not None:
            self.redis = RedisServer(self.workdir, redis_binary)
            self.redis.spawn()
        await self.database.start()
        self.postgres_version = await self.database.server_version()
        self.keys = await self.database.create_keys()
        await self._wait_sim()
        if self.redis is not None:
            await self.redis.wait_ready()
        env = self.serve_env()
        self.serves = [ServeNode(name, self.workdir, env) for name in ("serve-a", "serve-b")]
        for serve in self.serves:
            serve.spawn()
        await asyncio.gather(*(s.wait_serving(90.0, ready=True) for s in self.serves))
        sim_proc = self.sim.proc
        roots = {serve.name: _pid_getter(serve) for serve in self.serves}
        roots["sim"] = lambda: sim_proc.pid if sim_proc.poll() is None else None
        self.memory = MemorySampler(roots)
        self.memory.start()

    async def _wait_sim(self) -> None:
        assert self.sim is not None
        proc = self.sim.proc
        async with httpx.AsyncClient(base_url=self.sim_url, timeout=2.0) as client:
            async def up() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"vnode sim serve exited with {proc.returncode}")
                try:
                    return (await client.get("/networkinfo")).status_code == 200
                except httpx.TransportError:
                    return False
            await wait_for(up, 30.0, "vnode sim serve", period_s=0.05)

    def serve_env(self) -> dict[str, str]:
        env = base_env()
        env.update({
            "VNODE_DATABASE_URL": self.database.dsn, "VNODE_ADMIN_KEY": self.admin_key,
            # Both processes must derive the same node keys for new users.
            "VNODE_MASTER_SEED": self.master_seed,
            "VNODE_NODE": "sim", "VNODE_RLN_URL": self.sim_url,
            "VNODE_ACCESS_LOG": "false", "VNODE_LOG_LEVEL": "WARNING",
        })
        if self.redis is not None:
            env["VNODE_REDIS_URL"] = self.redis.url
        env.update(self.options.serve_env)
        return env

    async def audit(self) -> AuditResult:
        """`vnode audit` against the stage's database, the sim included (solvency)."""
        env = base_env()
        env.update({"VNODE_DATABASE_URL": self.database.dsn, "VNODE_NODE": "sim",
                    "VNODE_RLN_URL": self.sim_url, "VNODE_MASTER_SEED": self.master_seed,
                    "VNODE_LOG_LEVEL": "WARNING", "COLUMNS": "120"})
        proc = await asyncio.create_subprocess_exec(
            *VNODE, "audit", "--data-dir", str(self.workdir / "audit"), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output_bytes, _ = await proc.communicate()
        output = output_bytes.decode(errors="replace")
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        verdict = next((line for line in reversed(lines) if "audit" in line),
                       lines[-1] if lines else "no output")
        code = proc.returncode if proc.returncode is not None else -1
        return AuditResult(code == 0 and "audit clean" in output, code, verdict, output)

    def logged_errors(self) -> Counter[str]:
        """Error and critical lines of every serve log (all incarnations), by message and the
        exception's last line: not part of the verdict, but worth a look."""
        found: Counter[str] = Counter()
        for serve in self.serves:
            try:
                lines = serve.log_path.read_text(errors="replace").splitlines()
            except OSError:
                continue
            for line in lines:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(record, dict) or record.get("level") not in ("error",
                                                                               "critical"):
                    continue
                exc = str(record.get("exc", "")).strip().splitlines()
                found[f"{record.get('logger')}: {record.get('msg')}"
                      + (f" ({exc[-1][:160]})" if exc else "")] += 1
        return found

    async def close(self) -> None:
        if self.memory is not None:
            await self.memory.stop()
        # A serve that does not stop on SIGINT in time is killed; its log keeps why.
        await asyncio.gather(*(s.stop() for s in self.serves), return_exceptions=True)
        if self.redis is not None:
            await self.redis.stop()
        if self.sim is not None:
            await asyncio.to_thread(self.sim.stop)
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            await self.database.stop()
        if not self.options.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
