"""`vnode serve` on its embedded PostgreSQL, stopped by every stop signal, and killed.

Each stop must end the process by itself within a deadline, with its database, its simulated
node and its workers gone. A SIGKILLed service leaves its database running; the next start must
take that orphan over explicitly (and say so), and stop it when it stops.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support import ADMIN_KEY, VNODE, ServeProcess, bearer, new_user_id, wait_until
from vnode.db.embedded import EmbeddedPostgres

# Generous for a loaded 2-core machine; a stop takes about 1 s (drain, sim, fast shutdown).
STOP_DEADLINE_S = 45.0
READY_S = 180.0  # two worker processes starting on a loaded 2-core machine


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with an initialised cluster, copied by each test: initdb once, not per test
    (the first start with initdb is test_serve_embedded's)."""
    data_dir = tmp_path_factory.mktemp("initialised") / "data"
    cluster = EmbeddedPostgres(data_dir / "pg")
    cluster.start()
    cluster.stop()
    return data_dir


def _copy(initialised: Path, tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    # cp -a keeps the owners (the database user's, when run as root).
    subprocess.run(["cp", "-a", str(initialised), str(data_dir)], check=True)
    return data_dir


def process_alive(pid: int) -> bool:
    """A zombie counts as gone: an orphaned postmaster's parent is PID 1, which in a container
    may never reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in (b"Z", b"X")


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "pg" / "postmaster.pid").read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return None


def _runtime_dir(data_dir: Path) -> Path | None:
    """The server's runtime directory (socket, server binaries), as vnode recorded it."""
    try:
        return Path((data_dir / "pg.runtime").read_text().strip())
    except FileNotFoundError:
        return None


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _leave_nothing_running(data_dir: Path) -> None:
    """After a failed test: stop a server the service under test left behind, and remove its
    runtime directory (the next start of this data dir would, but there is none)."""
    pid = _postmaster_pid(data_dir)
    if pid is not None and process_alive(pid):
        os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + 10
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)  # polled against a deadline
    runtime = _runtime_dir(data_dir)
    if runtime is not None and runtime.name.startswith("vnode-pg-"):
        shutil.rmtree(runtime, ignore_errors=True)


async def _assert_all_stopped(
    data_dir: Path, postmaster: int, children: list[int], runtime: Path | None
) -> None:
    # vnode serve stops its database before it exits: no waiting for that.
    assert not process_alive(postmaster), "the embedded PostgreSQL outlived vnode serve"
    assert not (data_dir / "pg" / "postmaster.pid").exists()
    assert runtime is None or not runtime.exists()

    async def children_gone() -> bool:
        # The sim and the workers are stopped before the exit too; multiprocessing's resource
        # tracker leaves when it sees its parent gone, a moment later.
        return not [pid for pid in children if process_alive(pid)]

    await wait_until(children_gone, 10, "the sim and worker processes to exit")


async def _serve_and_stop(data_dir: Path, signum: int, workers: int = 1) -> None:
    serve = ServeProcess(None, data_dir, workers=workers)
    try:
        await serve.wait_ready(READY_S)
        postmaster = _postmaster_pid(data_dir)
        assert postmaster is not None and process_alive(postmaster)
        children = _children(serve.proc.pid)
        # the sim, and the worker processes when there is more than one
        assert len(children) >= 1 + (workers if workers > 1 else 0)
        runtime = _runtime_dir(data_dir)
        async with httpx.AsyncClient(base_url=serve.url, headers=bearer(ADMIN_KEY)) as client:
            credited = await client.post(
                "/admin/credit",
                json={"user_id": new_user_id(), "amount_msat": 1000, "reason": "before the stop"},
            )
            assert credited.status_code == 200, credited.text
        started = time.monotonic()
        code = serve.stop(signum, timeout_s=STOP_DEADLINE_S)  # SIGKILL if the deadline passes
        took = time.monotonic() - started
    finally:
        serve.stop(signal.SIGKILL)
        _leave_nothing_running(data_dir)
    name = signal.Signals(signum).name
    assert code == 0, f"exit {code} after {name} ({took:.1f}s): {serve.log()[-3000:]}"
    assert f"{name} received" in serve.log()
    await _assert_all_stopped(data_dir, postmaster, children, runtime)


async def test_sigterm_stops_embedded_postgres(initialised: Path, tmp_path: Path) -> None:
    """What systemd, Docker and `timeout` send; it used to leave the database running."""
    await _serve_and_stop(_copy(initialised, tmp_path), signal.SIGTERM)


async def test_sigint_stops_embedded_postgres(initialised: Path, tmp_path: Path) -> None:
    await _serve_and_stop(_copy(initialised, tmp_path), signal.SIGINT)


async def test_sighup_stops_embedded_postgres(initialised: Path, tmp_path: Path) -> None:
    """The terminal went away: stop cleanly rather than die with the database running."""
    await _serve_and_stop(_copy(initialised, tmp_path), signal.SIGHUP)


async def test_sigquit_stops_embedded_postgres_with_workers(
    initialised: Path, tmp_path: Path
) -> None:
    """Two worker processes: uvicorn's supervisor ignored SIGQUIT and restarted on SIGHUP."""
    await _serve_and_stop(_copy(initialised, tmp_path), signal.SIGQUIT, workers=2)


async def test_sigint_during_database_start_leaves_no_postgres(
    initialised: Path, tmp_path: Path
) -> None:
    """A stop signal while vnode is starting its database waits for the start to finish and
    then stops it: no half-started server is left behind."""
    data_dir = _copy(initialised, tmp_path)  # no initdb: the start goes straight to the server
    serve = ServeProcess(None, data_dir)
    try:

        async def server_appeared() -> bool:
            return _postmaster_pid(data_dir) is not None

        # Signal as soon as the server's pid file appears, while vnode waits for it.
        await wait_until(server_appeared, 60, "the embedded PostgreSQL to start")
        postmaster = _postmaster_pid(data_dir)
        code = serve.stop(signal.SIGINT, timeout_s=STOP_DEADLINE_S)
    finally:
        serve.stop(signal.SIGKILL)
        _leave_nothing_running(data_dir)
    assert code == 0, serve.log()[-3000:]
    assert postmaster is not None and not process_alive(postmaster), serve.log()[-3000:]
    assert not (data_dir / "pg" / "postmaster.pid").exists()
    assert not (data_dir / "pg.runtime").exists()


async def test_sigkill_then_restart_recovers_orphan(initialised: Path, tmp_path: Path) -> None:
    data_dir = _copy(initialised, tmp_path)
    user = new_user_id()
    first = ServeProcess(None, data_dir)
    try:
        await first.wait_ready(READY_S)
        orphan = _postmaster_pid(data_dir)
        old_runtime = _runtime_dir(data_dir)
        async with httpx.AsyncClient(base_url=first.url, headers=bearer(ADMIN_KEY)) as client:
            credited = await client.post(
                "/admin/credit",
                json={"user_id": user, "amount_msat": 777, "reason": "before the kill"},
            )
            assert credited.status_code == 200, credited.text
    finally:
        first.stop(signal.SIGKILL)
    # Nothing could stop the database of a killed service: it is an orphan now.
    assert orphan is not None and process_alive(orphan)

    second = ServeProcess(None, data_dir)
    try:
        await second.wait_ready(READY_S)
        log = second.log()
        assert f"pid {orphan} on {data_dir.resolve() / 'pg'} is still running" in log, log
        assert f"recovered the orphaned embedded PostgreSQL pid {orphan}" in log
        assert not process_alive(orphan)
        assert old_runtime is None or not old_runtime.exists()
        server = _postmaster_pid(data_dir)
        assert server is not None and server != orphan and process_alive(server)
        async with httpx.AsyncClient(base_url=second.url, headers=bearer(ADMIN_KEY)) as client:
            found = await client.post("/virtual_assetbalance", json={"user_id": user})
            assert found.status_code == 200 and found.json()["balance_msat"] == 777
        # A command beside a live service is not an orphan's heir: it uses the server and
        # leaves it running for the service.
        env = {k: v for k, v in os.environ.items() if not k.startswith("VNODE_")}
        listed = subprocess.run(
            [VNODE, "keys", "list", "--data-dir", str(data_dir)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listed.returncode == 0, listed.stderr
        assert "recovered" not in listed.stderr
        assert _postmaster_pid(data_dir) == server and process_alive(server)
        runtime = _runtime_dir(data_dir)
        children = _children(second.proc.pid)
        code = second.stop(signal.SIGTERM, timeout_s=STOP_DEADLINE_S)
    finally:
        second.stop(signal.SIGKILL)
        _leave_nothing_running(data_dir)
    assert code == 0, second.log()[-3000:]
    await _assert_all_stopped(data_dir, server, children, runtime)
