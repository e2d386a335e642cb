"""Opening a connection to the right PostgreSQL server: the one home for it. Every pool
(`vnode.db.pool.create_pool`) and every connection vnode opens goes through `connect`.

A DSN names one server (usually, through HAProxy in front of a Patroni cluster: SCALING.md) or
several, libpq's way: `postgresql://u@h1:5432,h2:5432/vnode?target_session_attrs=read-write`
(or `?host=h1,h2&port=5432,5432`). asyncpg (0.32) takes such a DSN and skips a host that
refuses the connection or says "cannot connect now" before authenticating, but gives up at any
other server error during the connect: too many clients on a saturated standby, a database
missing on a rebuilt node, a server shutting down after authentication, a failure of its own
session check. One such host stops the whole list. Here each host is tried in turn, a host that
fails in any way is skipped, and `target_session_attrs` is checked after connecting:

- `read-write` (the default with several hosts): `transaction_read_only` is off, so a replica,
  and a primary set read-only, are skipped;
- `primary`: `pg_is_in_recovery()` is false; `standby`: it is true; `read-only`: the opposite of
  read-write; `prefer-standby`: a standby if any answers, else the first host that does;
  `any`: the first host that answers.

When no host fits, `NoServerAvailable` (an OSError, so the API answers 503
`database_unavailable`, vnode/db/unavailable.py) names every host and why.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

log = logging.getLogger(__name__)

SESSION_ATTRS = ("any", "read-write", "primary", "read-only", "standby", "prefer-standby")
# Per host: a host that does not answer at all must not hold the others, or a request, up for
# asyncpg's 60 s.
DEFAULT_HOST_TIMEOUT_S = 10.0


class NoServerAvailable(ConnectionError):
    """No host of the DSN accepted a connection of the asked `target_session_attrs`."""


@dataclass(frozen=True)
class Candidates:
    """A DSN cut into one DSN per host, and what the session must be."""

    dsns: tuple[str, ...]
    target_session_attrs: str


def candidates(dsn: str) -> Candidates:
    """One single-host DSN per host of `dsn`, in order, without `target_session_attrs`
    (checked here, not by asyncpg). A DSN of one host is returned as it is."""
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query, keep_blank_values=True)
    attrs = [v for k, v in query if k == "target_session_attrs"]
    rest = [(k, v) for k, v in query if k != "target_session_attrs"]
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    netloc_hosts = hostlist.split(",") if hostlist else []
    query_hosts = [v for k, v in rest if k == "host"]
    query_ports = [v for k, v in rest if k == "port"]
    target = attrs[-1] if attrs else None
    if len(netloc_hosts) > 1:
        dsns = tuple(
            urlunsplit(
                parts._replace(
                    netloc=f"{userinfo}@{host}" if userinfo else host, query=urlencode(rest)
                )
            )
            for host in netloc_hosts
        )
    elif query_hosts and "," in query_hosts[-1]:
        hosts = query_hosts[-1].split(",")
        ports = query_ports[-1].split(",") if query_ports else []
        if len(ports) not in (0, 1, len(hosts)):
            raise ValueError("a DSN's port list must have one port or one per host")
        others = [(k, v) for k, v in rest if k not in ("host", "port")]
        built = []
        for i, host in enumerate(hosts):
            one = [*others, ("host", host)]
            if ports:
                one.append(("port", ports[i] if len(ports) > 1 else ports[0]))
            built.append(urlunsplit(parts._replace(query=urlencode(one))))
        dsns = tuple(built)
    else:
        # One host: asyncpg handles it (and target_session_attrs) unchanged.
        return Candidates((dsn,), "any")
    target = target or "read-write"
    if target not in SESSION_ATTRS:
        raise ValueError(f"target_session_attrs={target!r} is not one of {SESSION_ATTRS}")
    return Candidates(dsns, target)


def with_default_target(dsn: str, target: str) -> str:
    """`dsn` with `target_session_attrs=target` when it names several hosts and no target."""
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if len(candidates(dsn).dsns) == 1 or any(k == "target_session_attrs" for k, _ in query):
        return dsn
    return urlunsplit(parts._replace(query=urlencode([*query, ("target_session_attrs", target)])))


async def _session_fits(conn: asyncpg.Connection[Any], target: str) -> tuple[bool, bool]:
    """(fits, is a standby) of an open connection for `target`."""
    row = await conn.fetchrow(
        "SELECT pg_is_in_recovery() AS standby, "
        "current_setting('transaction_read_only') = 'on' AS read_only"
    )
    assert row is not None
    standby, read_only = bool(row["standby"]), bool(row["read_only"])
    fits = {
        "any": True,
        "read-write": not read_only,
        "primary": not standby,
        "read-only": read_only,
        "standby": standby,
        "prefer-standby": standby,
    }[target]
    return fits, standby


async def connect(dsn: str, **kwargs: Any) -> asyncpg.Connection[Any]:
    """A connection to the first host of `dsn` that answers and fits its
    `target_session_attrs` (the module docstring). `kwargs` go to `asyncpg.connect`; its
    `timeout` (per host) is DEFAULT_HOST_TIMEOUT_S unless given, not asyncpg's 60 s: a request
    waiting for a connection to a host that does not answer gets its 503 sooner."""
    found = candidates(dsn)
    kwargs.setdefault("timeout", DEFAULT_HOST_TIMEOUT_S)
    if len(found.dsns) == 1:
        single: asyncpg.Connection[Any] = await asyncpg.connect(found.dsns[0], **kwargs)
        return single
    reasons: list[str] = []
    fallback: asyncpg.Connection[Any] | None = None
    for number, one in enumerate(found.dsns, start=1):
        try:
            conn: asyncpg.Connection[Any] = await asyncpg.connect(one, **kwargs)
        except Exception as exc:  # refused, timed out, or a server error during the connect
            reasons.append(f"host {number}: {type(exc).__name__}: {str(exc)[:120]}")
            continue
        try:
            fits, standby = await _session_fits(conn, found.target_session_attrs)
        except Exception as exc:
            reasons.append(f"host {number}: {type(exc).__name__}: {str(exc)[:120]}")
            conn.terminate()
            continue
        if fits:
            if fallback is not None:
                await _close(fallback)
            return conn
        if found.target_session_attrs == "prefer-standby" and fallback is None:
            fallback = conn  # a primary will do if no standby answers
            continue
        reasons.append(f"host {number}: {'a standby' if standby else 'read-only'}")
        await _close(conn)
    if fallback is not None:
        return fallback
    raise NoServerAvailable(
        f"no server fits target_session_attrs={found.target_session_attrs}: " + "; ".join(reasons)
    )


async def _close(conn: asyncpg.Connection[Any]) -> None:
    with contextlib.suppress(Exception):
        await conn.close(timeout=2)
