"""Finding the right server among several hosts (vnode/db/connect.py), against the suite's real
PostgreSQL and loopback stand-ins: servers that answer every connection with a FATAL error
("the database system is starting up", as a replica catching up or a primary shutting down
does; "too many clients", as a saturated standby does), and a proxy to the real server that
opens a read-only database (a replica, or a demoted primary, as far as
`target_session_attrs=read-write` can tell)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import asyncpg
import pytest

from harness.postgres import create_database
from vnode.db.connect import NoServerAvailable, candidates, connect, with_default_target
from vnode.db.dsn import database_of, with_database
from vnode.db.pool import create_pool

SSL_REQUEST = 80877103
STARTING_UP = "the database system is starting up"
TOO_MANY = "sorry, too many clients already"


def _error_response(sqlstate: str, message: str) -> bytes:
    fields = b"".join(
        kind + value.encode() + b"\0"
        for kind, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!i", len(body) + 4) + body


async def _startup_packet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """The client's startup message, after refusing TLS (asyncpg asks first on TCP)."""
    while True:
        (length,) = struct.unpack("!i", await reader.readexactly(4))
        payload = await reader.readexactly(length - 4)
        if len(payload) == 4 and struct.unpack("!i", payload)[0] == SSL_REQUEST:
            writer.write(b"N")
            await writer.drain()
            continue
        return struct.pack("!i", length) + payload


@contextlib.asynccontextmanager
async def _serve(handler: object) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)  # type: ignore[arg-type]
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def _refusing(sqlstate: str, message: str) -> object:
    """A server that answers every connection's startup message with a FATAL error."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await _startup_packet(reader, writer)
            writer.write(_error_response(sqlstate, message))
            await writer.drain()
        writer.close()

    return handle


def _socket_of(dsn: str) -> tuple[str, str]:
    """The real server's socket directory and port."""
    query = dict(parse_qsl(urlsplit(dsn).query))
    directory = query["host"]
    port = next(Path(directory).glob(".s.PGSQL.*")).name.rsplit(".", 1)[1]
    return directory, port


def _proxy_to(socket_dir: str, port: str, database: str) -> object:
    """A TCP proxy to the real server that swaps the startup message's database for
    `database`: the same DSN reaches another database through it."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            packet = await _startup_packet(reader, writer)
            parts = packet[8:].split(b"\0")
            for i in range(0, len(parts) - 1, 2):
                if parts[i] == b"database":
                    parts[i + 1] = database.encode()
            body = packet[4:8] + b"\0".join(parts)
            up_reader, up_writer = await asyncio.open_unix_connection(
                f"{socket_dir}/.s.PGSQL.{port}"
            )
            up_writer.write(struct.pack("!i", len(body) + 4) + body)

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                with contextlib.suppress(Exception):
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                dst.close()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except Exception:
            writer.close()

    return handle


def test_a_dsn_is_cut_into_one_dsn_per_host() -> None:
    # Credentials are kept on every host's DSN; a throwaway pair, made here, stands for them.
    user = f"{os.environ.get('PGUSER', 'vnode')}:{secrets.token_hex(8)}"
    found = candidates(f"postgresql://{user}@h1:5432,h2:6432/vnode?target_session_attrs=primary")
    assert found.dsns == (
        f"postgresql://{user}@h1:5432/vnode",
        f"postgresql://{user}@h2:6432/vnode",
    )
    assert found.target_session_attrs == "primary"
    in_query = candidates("postgresql://u@/vnode?host=/a,/b&port=5432&sslmode=disable")
    assert in_query.dsns == (
        "postgresql://u@/vnode?sslmode=disable&host=%2Fa&port=5432",
        "postgresql://u@/vnode?sslmode=disable&host=%2Fb&port=5432",
    )
    assert in_query.target_session_attrs == "read-write"  # the default with several hosts
    one = "postgresql://postgres@/vnode?host=/run/pg"
    assert candidates(one).dsns == (one,)  # one host: handed to asyncpg as it is
    with pytest.raises(ValueError):
        candidates("postgresql://h1,h2/vnode?target_session_attrs=whatever")
    # A read replica's pool prefers a standby unless the DSN says otherwise.
    assert with_default_target(one, "prefer-standby") == one
    both = "postgresql://u@h1,h2/vnode"
    assert candidates(with_default_target(both, "prefer-standby")).target_session_attrs == (
        "prefer-standby"
    )
    told = both + "?target_session_attrs=standby"
    assert with_default_target(told, "prefer-standby") == told


async def test_hosts_that_answer_an_error_or_are_read_only_are_skipped(
    pg_server: str, template_db: str
) -> None:
    dsn = await create_database(pg_server, template_db)
    database = database_of(dsn)
    read_only = await create_database(pg_server, template_db)
    admin = await asyncpg.connect(with_database(pg_server, "postgres"))
    ro_name = database_of(read_only)
    await admin.execute(f'ALTER DATABASE "{ro_name}" SET default_transaction_read_only = on')
    await admin.close()
    socket_dir, port = _socket_of(dsn)
    async with (
        _serve(_refusing("57P03", STARTING_UP)) as starting,
        _serve(_refusing("53300", TOO_MANY)) as full,
        _serve(_proxy_to(socket_dir, port, ro_name)) as replica,
    ):
        # asyncpg alone skips "starting up" but gives up at other server errors.
        ports = f"{starting},{full},{replica},{port}"
        hosts = f"host=127.0.0.1,127.0.0.1,127.0.0.1,{socket_dir}&port={ports}"
        multi = f"postgresql://postgres@/{database}?{hosts}"
        with pytest.raises(asyncpg.TooManyConnectionsError):
            await asyncpg.connect(multi + "&target_session_attrs=read-write")

        conn = await connect(multi + "&target_session_attrs=read-write")
        try:
            assert await conn.fetchval("SELECT current_database()") == database
            assert await conn.fetchval("SHOW transaction_read_only") == "off"
        finally:
            await conn.close()

        # read-only takes the "replica" (the proxy), skipping the host starting up.
        ro = await connect(multi + "&target_session_attrs=read-only")
        try:
            assert await ro.fetchval("SELECT current_database()") == ro_name
        finally:
            await ro.close()

        # Every pool vnode opens goes through it.
        pool = await create_pool(multi, min_size=1, max_size=2)
        try:
            assert await pool.fetchval("SELECT current_database()") == database
        finally:
            await pool.close()

        # No host fits: an OSError (503 database_unavailable), naming each host's reason.
        only_bad = f"postgresql://postgres@/{database}?host=127.0.0.1,127.0.0.1,127.0.0.1"
        with pytest.raises(NoServerAvailable) as none:
            await connect(f"{only_bad}&port={starting},{full},{replica}")
        assert isinstance(none.value, OSError)
        reasons = str(none.value)
        assert STARTING_UP in reasons and TOO_MANY in reasons and "read-only" in reasons
