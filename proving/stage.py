"""The proving ground's stage: a throwaway PostgreSQL, `vnode sim serve`, two `vnode serve`
processes on one database (optionally a redis-server for the event stream), the peak memory of
each process, and `vnode audit` at the end. The processes themselves are the harness package's
(harness/), as in the tests and the benchmarks.

Linux only (it reads /proc). Every process is started here and stopped here, by its own pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import signal
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import asyncpg

from harness.postgres import TemporaryCluster, create_database, drop_database
from harness.processes import VNODE, clean_env
from harness.redis import RedisServer, find_redis_server
from harness.serve import ServeProcess
from harness.usage import MemorySampler
from harness.waits import wait_http_ok
from vnode.apikeys import Scope, create_key
from vnode.db.migrate import migrate
from vnode.lightning.sim_process import SimProcess
from vnode.loopback import free_port

# One RGB asset channel on the sim, as `make run` has; the load itself moves BTC only.
SIM_ASSET = "rgb:CJkb4YZw-jRiz2sk-~PARPio-wtVYI1c-XAEYCqO-wTfvRZ8=1000000000"
STREAM_KEY = "vnode:events"


# --------------------------------------------------------------------------------------------
# PostgreSQL


class Database:
    """A fresh, migrated database: on a server the caller runs (tests), or on a throwaway
    embedded cluster in `workdir` (the command line), stopped and removed at the end."""

    def __init__(self, workdir: Path, server_dsn: str | None = None) -> None:
        self.workdir = workdir
        self.server_dsn = server_dsn
        self.cluster: TemporaryCluster | None = None
        self.dsn = ""

    async def start(self) -> str:
        if self.server_dsn is None:
            self.cluster = TemporaryCluster(self.workdir / "pg")
            self.dsn = await asyncio.to_thread(self.cluster.start)
        else:
            self.dsn = await create_database(self.server_dsn, prefix="vnode_proving_")
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
        elif self.dsn:
            await drop_database(self.dsn)


def serve_node(name: str, workdir: Path, admin_key: str, env: dict[str, str]) -> ServeProcess:
    """One `vnode serve` (one worker) of the stage, in its own process group so that a SIGKILL
    takes all of it; it can be started again on the same port after a kill."""
    return ServeProcess(workdir / name, admin_key=admin_key, env=env, name=name)


async def stop_serve(serve: ServeProcess, timeout_s: float = 20.0) -> int | None:
    """SIGINT (graceful), then SIGKILL after `timeout_s`; the exit code."""
    return await asyncio.to_thread(serve.stop, signal.SIGINT, timeout_s)


async def wait_sim(sim: SimProcess, timeout_s: float = 30.0) -> None:
    def check() -> None:
        if sim.proc.poll() is not None:
            raise RuntimeError(f"vnode sim serve exited with {sim.proc.returncode}")

    await wait_http_ok(f"{sim.url}/networkinfo", timeout_s, "vnode sim serve", check)


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


def _pid_getter(serve: ServeProcess) -> Callable[[], int | None]:
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
        self.serves: list[ServeProcess] = []
        self.keys: dict[Scope, str] = {}
        self.memory: MemorySampler | None = None
        self.postgres_version = ""

    async def __aenter__(self) -> Stage:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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
        self.sim = SimProcess(
            "127.0.0.1",
            sim_port,
            self.workdir / "sim.log",
            (
                "--hang-s",
                str(self.options.sim_hang_s),
                "--settle-delay-s",
                str(self.options.settle_delay_s),
                "--rgb-asset",
                SIM_ASSET,
            ),
        )
        self.sim_url = self.sim.url
        redis_binary = find_redis_server() if self.options.redis else None
        if redis_binary is not None:
            self.redis = RedisServer(self.workdir, binary=redis_binary)
            self.redis.spawn()
        await self.database.start()
        self.postgres_version = await self.database.server_version()
        self.keys = await self.database.create_keys()
        await wait_sim(self.sim)
        if self.redis is not None:
            await asyncio.to_thread(self.redis.wait_ready)
        env = self.serve_env()
        self.serves = [
            serve_node(name, self.workdir, self.admin_key, env) for name in ("serve-a", "serve-b")
        ]
        for serve in self.serves:
            serve.start()
        await asyncio.gather(*(s.wait_ready(90.0) for s in self.serves))
        sim_proc = self.sim.proc
        roots = {serve.name: _pid_getter(serve) for serve in self.serves}
        roots["sim"] = lambda: sim_proc.pid if sim_proc.poll() is None else None
        self.memory = MemorySampler(roots)
        self.memory.start()

    def serve_env(self) -> dict[str, str]:
        """The VNODE_ settings of both processes (the admin key is set by ServeProcess)."""
        env = {
            "VNODE_DATABASE_URL": self.database.dsn,
            # Both processes must derive the same node keys for new users.
            "VNODE_MASTER_SEED": self.master_seed,
            "VNODE_NODE": "sim",
            "VNODE_RLN_URL": self.sim_url,
            "VNODE_ACCESS_LOG": "false",
            "VNODE_LOG_LEVEL": "WARNING",
            # Lightning Addresses on (the load's lnurl operation): one public URL for both
            # processes; the load calls each process's own port with the URLs' paths.
            "VNODE_PUBLIC_URL": "http://127.0.0.1",
            # LndHub's /payinvoice answers 202 "in transit" (code 9) after this long, so the
            # load's held and timed-out payments meet that answer, not only 200 and 400.
            "VNODE_LNDHUB_PAY_WAIT_S": "1.0",
        }
        if self.redis is not None:
            env["VNODE_REDIS_URL"] = self.redis.url
        env.update(self.options.serve_env)
        return env

    async def audit(self) -> AuditResult:
        """`vnode audit` against the stage's database, the sim included (solvency)."""
        env = clean_env(
            {
                "VNODE_DATABASE_URL": self.database.dsn,
                "VNODE_NODE": "sim",
                "VNODE_RLN_URL": self.sim_url,
                "VNODE_MASTER_SEED": self.master_seed,
                "VNODE_LOG_LEVEL": "WARNING",
                "COLUMNS": "120",
            }
        )
        proc = await asyncio.create_subprocess_exec(
            VNODE,
            "audit",
            "--data-dir",
            str(self.workdir / "audit"),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output_bytes, _ = await proc.communicate()
        output = output_bytes.decode(errors="replace")
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        verdict = next(
            (line for line in reversed(lines) if "audit" in line),
            lines[-1] if lines else "no output",
        )
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
                if not isinstance(record, dict) or record.get("level") not in ("error", "critical"):
                    continue
                exc = str(record.get("exc", "")).strip().splitlines()
                found[
                    f"{record.get('logger')}: {record.get('msg')}"
                    + (f" ({exc[-1][:160]})" if exc else "")
                ] += 1
        return found

    async def close(self) -> None:
        if self.memory is not None:
            await self.memory.stop()
        # A serve that does not stop on SIGINT in time is killed; its log keeps why.
        await asyncio.gather(*(stop_serve(s) for s in self.serves), return_exceptions=True)
        if self.redis is not None:
            await asyncio.to_thread(self.redis.stop)
        if self.sim is not None:
            await asyncio.to_thread(self.sim.stop)
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            await self.database.stop()
        if not self.options.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
