"""Helpers shared by the benchmarks in bench/: a throwaway PostgreSQL cluster, `vnode serve` as a
process, pgbench runs, CPU accounting per process tree and a py-spy profile summary.

Everything here is Linux-only (it reads /proc) and meant for a benchmark run, not for the service.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from vnode.db.dsn import with_database
from vnode.db.embedded import EmbeddedPostgres, bin_dir
from vnode.loopback import free_port_pair

# The repository lives beside `shared/` (here /work/main and /work/shared; CI clones the same way).
SHARED_BENCH_DIR = Path(__file__).resolve().parents[2] / "shared" / "bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------
# Machine description (for docs/PERFORMANCE.md)


def machine_facts() -> dict[str, str | int | float]:
    """CPUs, CPU model, memory and Python version (bench/run.py writes them into
    docs/PERFORMANCE.md)."""
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        cpu = next((line.split(":", 1)[1].strip()
                    for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), cpu)
    return {"cpus": os.cpu_count() or 0, "cpu": cpu,
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                / 2**30, 1),
            "python": sys.version.split()[0]}


def machine_summary() -> str:
    facts = machine_facts()
    return (f"{facts['cpus']} CPUs ({facts['cpu']}), {facts['memory_gib']} GiB RAM, "
            f"Python {facts['python']}")


def write_figures(path: Path | None, benchmark: str, figures: dict[str, float],
                  ratio: tuple[str, float], *, postgres: str) -> None:
    """A benchmark's figures as JSON, for bench/run.py (nothing when `path` is None).

    `ratio` is (what against what, value): the comparable figure each benchmark prints last.
    """
    if path is None:
        return
    # JSON has no NaN: a figure a run could not measure (no sample) is null.
    measured = {name: None if math.isnan(value) else value for name, value in figures.items()}
    document = {"benchmark": benchmark, "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine_facts(), "postgres": postgres, "figures": measured,
                "ratio": {"name": ratio[0], "value": ratio[1]}}
    path.write_text(json.dumps(document, indent=2) + "\n")


# --------------------------------------------------------------------------------------------
# PostgreSQL


def psql(dsn: str, *args: str) -> str:
    """Run the wheel's psql against `dsn`; raises with psql's stderr on any error."""
    command = [str(bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"psql {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def recreate_database(dsn: str, name: str) -> str:
    """Drop and create database `name` on the server of `dsn`; returns its DSN."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"bad database name {name!r}")
    admin = with_database(dsn, "postgres")
    psql(admin, "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql(admin, "-c", f"CREATE DATABASE {name}")
    return with_database(dsn, name)


def server_version(dsn: str) -> str:
    return psql(dsn, "-tAc", "SHOW server_version").strip()


def checkpoint(dsn: str) -> None:
    """Flush dirty buffers so that one measurement does not pay for the previous one's writes."""
    psql(dsn, "-c", "CHECKPOINT")


class BenchCluster:
    """An embedded PostgreSQL cluster in its own temporary directory, removed on stop."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="vnode-bench-"))
        self.pg = EmbeddedPostgres(self.root / "pg")
        self.dsn = ""

    def start(self) -> str:
        self.dsn = self.pg.start()
        return self.dsn

    @property
    def postmaster_pid(self) -> int | None:
        try:
            return int((self.pg.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        self.pg.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class PgbenchResult:
    tps: float
    latency_ms: float
    transactions: int
    failed: int
    output: str


_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.M)
_LATENCY = re.compile(r"^latency average = ([0-9.]+) ms", re.M)
_PROCESSED = re.compile(r"^number of transactions actually processed: (\d+)", re.M)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.M)


def parse_pgbench(output: str) -> PgbenchResult:
    tps = _TPS.search(output)
    if tps is None:
        raise RuntimeError(f"no tps in pgbench output:\n{output}")
    latency = _LATENCY.search(output)
    processed = _PROCESSED.search(output)
    failed = _FAILED.search(output)
    return PgbenchResult(
        tps=float(tps.group(1)),
        latency_ms=float(latency.group(1)) if latency else float("nan"),
        transactions=int(processed.group(1)) if processed else 0,
        failed=int(failed.group(1)) if failed else 0,
        output=output,
    )


def pgbench_command(dsn: str, script: Path, clients: int, threads: int, seconds: int) -> list[str]:
    return [str(bin_dir() / "pgbench"), "-n", "-M", "prepared", "-c", str(clients),
            "-j", str(min(threads, clients)), "-T", str(seconds), "--max-tries=10",
            "-f", str(script), dsn]


# --------------------------------------------------------------------------------------------
# vnode serve as a process


class ServeProcess:
    """`vnode serve` against an existing database, on a free port, in its own process group."""

    def __init__(self, database_url: str, data_dir: Path, workers: int, *,
                 access_log: bool = False, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port_pair()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_key = "bench-admin-" + secrets.token_urlsafe(24)
        self.data_dir = data_dir
        self.workers = workers
        self.log_path = data_dir / "serve.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("VNODE_")}
        env.update({
            "VNODE_DATABASE_URL": database_url, "VNODE_ADMIN_KEY": self.admin_key,
            # Workers (--workers > 1) read their settings from the environment only: without
            # this they would look for the simulated node beside the default port.
            "VNODE_PORT": str(self.port),
            "VNODE_ACCESS_LOG": "true" if access_log else "false",
        })
        env.update(extra_env or {})
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout_s: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-c", "from vnode.cli import main; main()", "serve",
                   "--host", "127.0.0.1", "--port", str(self.port),
                   "--data-dir", str(self.data_dir), "--workers", str(self.workers)]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(command, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        wait_ready(self.url, ready_timeout_s, self.proc, self.log_path)

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the serve process itself, or its uvicorn workers."""
        assert self.proc is not None
        if self.workers == 1:
            return [self.proc.pid]
        return [pid for pid in descendants(self.proc.pid) if _is_python_worker(pid)]

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # uvicorn: graceful shutdown, then lifespan exit
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group this object started
            self.proc.wait(5)


@dataclass
class RunningService:
    """A throwaway cluster with `vnode serve` on it, as most benchmarks start them."""

    cluster: BenchCluster
    service: ServeProcess
    dsn: str

    @classmethod
    def start(cls, workdir: Path, workers: int, *, access_log: bool = False,
              extra_env: dict[str, str] | None = None) -> RunningService:
        cluster = BenchCluster()
        try:
            dsn = cluster.start()
            service = ServeProcess(dsn, workdir / "data", workers, access_log=access_log,
                                   extra_env=extra_env)
            service.start()
        except BaseException:
            cluster.stop()
            raise
        return cls(cluster, service, dsn)

    @property
    def url(self) -> str:
        return self.service.url

    @property
    def admin_key(self) -> str:
        return self.service.admin_key

    def cpu_roots(self) -> dict[str, int]:
        """Process trees for CpuMeter: the service and PostgreSQL (postmaster and backends),
        named as the benchmarks' CPU tables name them."""
        assert self.service.proc is not None
        roots = {"vnode serve": self.service.proc.pid}
        if self.cluster.postmaster_pid is not None:
            roots["PostgreSQL"] = self.cluster.postmaster_pid
        return roots

    def stop(self) -> None:
        try:
            self.service.stop()
        finally:
            self.cluster.stop()


def _is_python_worker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # uvicorn spawns workers with multiprocessing; skip the resource tracker.
    return b"multiprocessing" in cmdline and b"resource_tracker" not in cmdline


def wait_ready(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None,
               log_path: Path | None = None) -> None:
    """Poll GET /readyz until it answers 200, the process dies, or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"vnode serve exited with {proc.returncode}"
                                   + _tail(log_path))
            try:
                response = client.get(f"{url}/readyz")
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.1)
    raise TimeoutError(f"{url}/readyz not ready after {timeout_s}s ({last})" + _tail(log_path))


def _tail(path: Path | None, lines: int = 30) -> str:
    if path is None or not path.exists():
        return ""
    return "\n--- serve log ---\n" + "\n".join(path.read_text(errors="replace")
                                              .splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# CPU accounting from /proc


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces; fields follow the last ')'.
    return raw[raw.rindex(")") + 2:].split()


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(root: int) -> list[int]:
    parents = _parents()
    found: list[int] = []
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        found.extend(children)
        frontier.extend(children)
    return found


@dataclass(frozen=True)
class Cpu:
    """User and system CPU seconds."""

    user: float = 0.0
    system: float = 0.0

    @property
    def total(self) -> float:
        return self.user + self.system

    def __add__(self, other: Cpu) -> Cpu:
        return Cpu(self.user + other.user, self.system + other.system)

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.user - other.user, self.system - other.system)


def tree_cpu(root: int) -> Cpu:
    """CPU time of `root`, its live descendants and the children they reaped."""
    user = system = 0
    for pid in [root, *descendants(root)]:
        fields = _stat_fields(pid)
        if fields is not None:
            # utime, stime, cutime, cstime: fields 14-17 of stat, here 11-14 (two removed above).
            user += int(fields[11]) + int(fields[13])
            system += int(fields[12]) + int(fields[14])
    return Cpu(user / CLOCK_TICKS, system / CLOCK_TICKS)


def machine_cpu() -> tuple[Cpu, float]:
    """(busy, idle seconds) of the whole machine since boot, all CPUs together.

    Busy system time includes interrupts and softirq (where loopback networking is often
    charged); steal time, taken by the hypervisor, counts as neither.
    """
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, idle, iowait, irq, softirq = (int(v) for v in first[:7])
    return (Cpu((user + nice) / CLOCK_TICKS, (system + irq + softirq) / CLOCK_TICKS),
            (idle + iowait) / CLOCK_TICKS)


def _rusage(who: int) -> Cpu:
    usage = resource.getrusage(who)
    return Cpu(usage.ru_utime, usage.ru_stime)


@dataclass
class CpuMeter:
    """CPU seconds spent by named process trees between start() and stop().

    `reaped_name`, when given, names the CPU of this process's children that finished and were
    waited for in between (a load generator that exits before stop() can read its /proc entry).
    `foreign_user` is user CPU that none of those, nor this process, spent: other programs
    running on the machine, which disturb the measurement.
    """

    roots: dict[str, int]
    reaped_name: str | None = None
    used: dict[str, Cpu] = field(default_factory=dict)
    machine_busy: Cpu = field(default_factory=Cpu)
    machine_idle: float = 0.0
    own: Cpu = field(default_factory=Cpu)
    _before: dict[str, Cpu] = field(default_factory=dict)
    _machine_before: tuple[Cpu, float] = (Cpu(), 0.0)
    _reaped_before: Cpu = field(default_factory=Cpu)
    _own_before: Cpu = field(default_factory=Cpu)

    def start(self) -> None:
        self._before = {name: tree_cpu(pid) for name, pid in self.roots.items()}
        self._reaped_before = _rusage(resource.RUSAGE_CHILDREN)
        self._own_before = _rusage(resource.RUSAGE_SELF)
        self._machine_before = machine_cpu()

    def stop(self) -> None:
        busy, idle = machine_cpu()
        self.machine_busy = busy - self._machine_before[0]
        self.machine_idle = idle - self._machine_before[1]
        self.own = _rusage(resource.RUSAGE_SELF) - self._own_before
        for name, pid in self.roots.items():
            self.used[name] = tree_cpu(pid) - self._before[name]
        if self.reaped_name is not None:
            self.used[self.reaped_name] = _rusage(resource.RUSAGE_CHILDREN) - self._reaped_before

    def seconds(self, name: str) -> float:
        return self.used[name].total

    @property
    def rest(self) -> float:
        """Busy CPU not spent by the measured trees: kernel work, this script, other programs."""
        return self.machine_busy.total - sum(c.total for c in self.used.values())

    @property
    def foreign_user(self) -> float:
        ours = sum(c.user for c in self.used.values()) + self.own.user
        return max(0.0, self.machine_busy.user - ours)


# --------------------------------------------------------------------------------------------
# py-spy profiles (collapsed stacks from `py-spy record --format raw`)

# Leaf-first: a sample belongs to the first rule matching one of its frames, innermost first
# (a frame is "function (file:line)" for Python, "symbol (library)" or "symbol (file.c:line)" for
# native code with --native).
PROFILE_RULES: list[tuple[str, tuple[str, ...]]] = [
    ("Python garbage collector", ("gc_collect_main",)),
    ("asyncpg (driver, protocol, pool)", ("asyncpg/", "(protocol.c", "(pgproto.c",
                                          "(record.c")),
    ("pydantic validation (incl. vnode validators)", ("pydantic", "vnode/api/schemas.py",
                                                       "vnode/domain/")),
    ("auth (API key check, HTTPBearer)", ("vnode/apikeys.py", "fastapi/security/")),
    ("metrics (prometheus_client)", ("prometheus_client/",)),
    ("FastAPI routing, dependencies, body parsing", ("fastapi/",)),
    ("Starlette (routing, Request, Response)", ("starlette/",)),
    ("uvicorn HTTP protocol (httptools)", ("uvicorn/", "httptools", "(parser.c")),
    ("vnode middleware", ("vnode/api/middleware.py", "vnode/logs.py")),
    ("vnode handler, ledger call, signer", ("vnode/",)),
    ("logging", ("logging/",)),
    ("anyio thread pool", ("anyio/", "threading.py", "queue.py")),
    ("asyncio / uvloop event loop", ("asyncio/", "uvloop", "(loop.c", "(_asynciomodule.c")),
]
# Innermost native frames that mean "in a system call": the thread may be waiting for a CPU
# (preempted after waking another process) rather than running; and frames that mean "blocked
# on a lock or the GIL" (idle thread-pool threads, GIL hand-offs). Such samples are counted apart
# and left out of the shares. Only visible with `py-spy record --native`.
_SYSCALL_LEAF = re.compile(
    r"^(write|read|epoll_p?wait|sendmsg|recvmsg|sendto|recvfrom|getpid|getrandom|syscall|"
    r"0x[0-9a-f]+) \(libc")
_WAIT_MARKERS = ("PyThread_acquire_lock", "pthread_cond_", "take_gil", "sem_wait",
                 "sem_timedwait", "sem_clockwait")
IN_SYSCALL = "in a system call (write, read, epoll...)"
WAITING = "blocked on a lock or the GIL (idle threads)"
APART = (IN_SYSCALL, WAITING)


def categorize_profile(collapsed: Path) -> list[tuple[str, int]]:
    """Samples per category, largest first, from py-spy's raw (collapsed) output.

    The categories in APART, if present, are listed last.
    """
    counts: Counter[str] = Counter()
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        frames = [f.strip() for f in stack.split(";")[1:]]  # the first is the process
        if any(marker in frame for frame in frames for marker in _WAIT_MARKERS):
            counts[WAITING] += int(number)
            continue
        if frames and _SYSCALL_LEAF.match(frames[-1]):
            counts[IN_SYSCALL] += int(number)
            continue
        category = "other"
        for frame in reversed(frames):
            hit = next((name for name, needles in PROFILE_RULES
                        if any(n in frame for n in needles)), None)
            if hit is not None:
                category = hit
                break
        counts[category] += int(number)
    apart = [(name, counts.pop(name)) for name in APART if name in counts]
    return counts.most_common() + apart


def py_spy_path() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")
