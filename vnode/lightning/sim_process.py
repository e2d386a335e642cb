"""`vnode serve` with no node configured runs the simulated node beside it, as a child process
that dies with its parent (so a killed service never leaves a sim holding the port).

It runs in a session of its own: Ctrl-C in a terminal signals the whole foreground process
group, and the sim must keep answering while vnode drains its requests; vnode stops it after.

The child runs `vnode sim serve`, the one command that imports the sim (the package vnode_sim,
which the service itself never imports: tests/unit/test_layering.py)."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from vnode.tls import tls_context

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """preexec_fn of a child that must not outlive vnode: SIGTERM when its parent dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class SimProcess:
    def __init__(
        self, host: str, port: int, log_path: Path, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.url = f"http://{host}:{port}"
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vnode.cli",
                "sim",
                "serve",
                "--host",
                host,
                "--port",
                str(port),
                *extra_args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
            start_new_session=True,
        )

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=1, verify=tls_context()) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the simulated node exited with {self.proc.returncode}")
                try:
                    if client.get(f"{self.url}/networkinfo").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise TimeoutError(f"the simulated node at {self.url} did not start")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (uvicorn drains), SIGKILL after `timeout_s`: a bounded stop."""
        if stop_child(self.proc, signal.SIGTERM, timeout_s):
            log.warning("the simulated node did not stop within %.0fs; killed it", timeout_s)
        self._log.close()

    def kill(self) -> None:
        """Last resort (from another thread): no waiting."""
        kill_child(self.proc)


def stop_child(
    proc: subprocess.Popen[bytes], sig: int, timeout_s: float, *, group: bool = False
) -> bool:
    """A bounded stop of a child process: `sig`, then SIGKILL if it has not exited within
    `timeout_s` (its whole process group with `group`, for a child that leads one of its own).
    True when it had to be killed. The test, benchmark and proving harnesses stop their
    children with this too (harness/processes.py)."""
    if proc.poll() is not None:
        return False
    proc.send_signal(sig)
    try:
        proc.wait(timeout_s)
        return False
    except subprocess.TimeoutExpired:
        kill_child(proc, group=group)
        proc.wait()
        return True


def kill_child(proc: subprocess.Popen[bytes], *, group: bool = False) -> None:
    """SIGKILL, without waiting: the child, or with `group` its whole process group."""
    if group:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    elif proc.poll() is None:
        proc.kill()
