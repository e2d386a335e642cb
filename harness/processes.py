"""A child process with a log file: started (again, after a stop or a kill, appending to its
log), stopped in a bounded time, killed; in a process group of its own when asked, so that a
kill takes its children too.

The bounded stop itself is vnode's (`vnode.lightning.sim_process.stop_child`, which `vnode
serve` uses for the simulated node): one rule for stopping a child, in the product and here.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vnode.lightning.sim_process import kill_child, stop_child

# The one way the harnesses run the `vnode` command: the one installed beside this interpreter
# (the same venv), as `[VNODE, "serve", ...]`.
VNODE = str(Path(sys.executable).with_name("vnode"))


def clean_env(settings: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any VNODE_ setting a developer may have exported,
    plus `settings`; an empty value there unsets the variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VNODE_")}
    env.update(settings or {})
    return {k: v for k, v in env.items() if v != ""}


class Process:
    """`command` as a child process writing to `log_path`. The first start truncates the log,
    a restart appends to it (so the log keeps every incarnation)."""

    def __init__(
        self,
        command: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        own_group: bool = True,
        user: pwd.struct_passwd | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.command = list(command)
        # Run as this OS user (root's groups dropped), as PostgreSQL's server must (harness/ha.py).
        self.user = user
        self.cwd = cwd
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.own_group = own_group
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    def start(self) -> None:
        if self.alive:
            raise RuntimeError(f"{self.command[0]} (pid {self.pid}) is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab" if self.starts else "wb") as log:
            self.proc = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.own_group,
                cwd=self.cwd,
                **as_user(self.user),
            )
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The pid while it runs; None before the start and once it exited."""
        return self.proc.pid if self.proc is not None and self.alive else None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> int | None:
        """`sig`, then SIGKILL (the group, if it has its own) after `timeout_s`; the exit code
        (None if it was never started)."""
        if self.proc is None:
            return None
        stop_child(self.proc, sig, timeout_s, group=self.own_group)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL (the whole group, if it has its own) without waiting: no shutdown hook."""
        if self.proc is not None and self.proc.poll() is None:
            kill_child(self.proc, group=self.own_group)
            self.kills += 1

    def wait(self, timeout_s: float) -> int:
        """Its exit code; subprocess.TimeoutExpired if it still runs after `timeout_s`."""
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def check_alive(self, what: str) -> None:
        """RuntimeError with the tail of its log if it has exited (for readiness waits)."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {self.proc.returncode}: {self.log_tail()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, chars: int = 2000) -> str:
        return self.log()[-chars:]


def as_user(user: pwd.struct_passwd | None) -> dict[str, Any]:
    """Popen's arguments that run the child as `user` with none of this process's groups."""
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
