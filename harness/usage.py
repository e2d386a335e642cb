"""What processes use: the CPU and the resident memory of a process tree (a process and all
its descendants), read from /proc (Linux only)."""

from __future__ import annotations

import asyncio
import os
import resource
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


# --------------------------------------------------------------------------------------------
# Process trees


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name (which is in parentheses and may hold spaces):
    field 0 is the state, 1 the parent pid, 11..14 utime, stime, cutime, cstime."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def children_by_parent() -> dict[int, list[int]]:
    """Every process's children, now."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def descendants(root: int, children: dict[int, list[int]] | None = None) -> list[int]:
    """Every descendant of `root` (children, grandchildren...), not `root` itself."""
    children = children_by_parent() if children is None else children
    found: list[int] = []
    todo = [root]
    while todo:
        below = children.get(todo.pop(), [])
        found.extend(below)
        todo.extend(below)
    return found


def tree_pids(root: int, children: dict[int, list[int]] | None = None) -> list[int]:
    """`root` and every descendant."""
    return [root, *descendants(root, children)]


# --------------------------------------------------------------------------------------------
# CPU


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
    for pid in tree_pids(root):
        fields = _stat_fields(pid)
        if fields is not None:
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
    return (
        Cpu((user + nice) / CLOCK_TICKS, (system + irq + softirq) / CLOCK_TICKS),
        (idle + iowait) / CLOCK_TICKS,
    )


def rusage(who: int) -> Cpu:
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
        self._reaped_before = rusage(resource.RUSAGE_CHILDREN)
        self._own_before = rusage(resource.RUSAGE_SELF)
        self._machine_before = machine_cpu()

    def stop(self) -> None:
        busy, idle = machine_cpu()
        self.machine_busy = busy - self._machine_before[0]
        self.machine_idle = idle - self._machine_before[1]
        self.own = rusage(resource.RUSAGE_SELF) - self._own_before
        for name, pid in self.roots.items():
            self.used[name] = tree_cpu(pid) - self._before[name]
        if self.reaped_name is not None:
            self.used[self.reaped_name] = rusage(resource.RUSAGE_CHILDREN) - self._reaped_before

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
# Memory


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
    _thread: threading.Thread | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

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

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stopping.wait(self.period_s):
                return

    def start(self) -> None:
        """Sample in a thread of its own (reading /proc never blocks an event loop)."""
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Stop sampling, after a last sample; may be called again."""
        self._stopping.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        await asyncio.to_thread(self.sample)
