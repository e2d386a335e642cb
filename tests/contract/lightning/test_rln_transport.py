"""The adapter's HTTP client (aiohttp, vnode/lightning/node_http.py) on the transport faults the
scripted node cannot make: a node that resets the connection, answers something that is not
HTTP, cuts its answer short or stalls in the middle of it, a kept-alive connection closed
under a request, and a certificate nobody vouches for.

Each is real TCP on 127.0.0.1 (a raw asyncio server), and each must end as docs/NODE.md's
first row says: NodeUnreachable (the payment is maybe sent, never refunded), named as httpx
named it, with the request sent exactly once.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.contract.lightning.invoices import NOW
from tests.contract.lightning.rln_cases import OUT, error
from tests.contract.lightning.server import Exchange, ScriptedNode
from vnode.lightning import bolt11
from vnode.lightning.base import NodeUnreachable, PaymentOutcome
from vnode.lightning.rln import RlnBackend

READ_TIMEOUT_S = 0.4
Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


@asynccontextmanager
async def raw_node(
    behaviour: Behaviour, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A node that reads each request whole, records it, then does `behaviour`."""
    requests: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    requests.append(await _read_request(reader))
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                await behaviour(reader, writer)
                if writer.is_closing():
                    return
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if tls else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}", requests
    finally:
        server.close()
        await server.wait_closed()


def backend(url: str) -> RlnBackend:
    return RlnBackend(url, connect_timeout_s=2.0, read_timeout_s=READ_TIMEOUT_S, clock=lambda: NOW)


async def _pay(url: str) -> NodeUnreachable:
    """pay_invoice against `url`, which must fail as NodeUnreachable; that exception."""
    adapter = backend(url)
    try:
        with pytest.raises(NodeUnreachable) as caught:
            await adapter.pay_invoice(bolt11.decode(OUT.text), amount_msat=None, fee_limit_msat=1)
    finally:
        await adapter.close()
    return caught.value


async def _reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # SO_LINGER 0: close() sends a TCP reset instead of a FIN.
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"SSH-2.0-OpenSSH_9.6\r\nnot http at all\r\n\r\n")
    await writer.drain()
    writer.close()


async def _truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    body = b'{"status": "Pending"}'
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n" % (len(body) + 50) + body
    )
    await writer.drain()
    writer.close()


async def _stall_mid_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
    writer.write(b"content-length: 40\r\n\r\n{")
    await writer.drain()
    # Far past the client's read timeout; the client gives up first and closes.
    await reader.read()


@pytest.mark.parametrize(
    ("behaviour", "names"),
    [
        (_reset, {"ReadError", "RemoteProtocolError"}),
        (_garbage, {"RemoteProtocolError"}),
        (_truncated, {"RemoteProtocolError"}),
        (_stall_mid_answer, {"ReadTimeout"}),
    ],
    ids=["reset", "not-http", "truncated", "stalled-mid-answer"],
)
async def test_transport_fault_after_a_send_is_ambiguous(
    behaviour: Behaviour, names: set[str]
) -> None:
    async with raw_node(behaviour) as (url, requests):
        caught = await _pay(url)
    assert caught.name in names, caught
    assert type(caught).__name__ in {"NodeUnreachable", "NodeProtocolError"}
    # Sent exactly once: never again behind the payment code's back.
    assert len(requests) == 1
    assert requests[0].startswith(b"POST /sendpayment ")


async def test_kept_alive_connection_closed_under_a_get_is_read_again(
    scripted_node: tuple[ScriptedNode, str],
) -> None:
    """A GET (a read) on a kept-alive connection the node closed is sent again on a new one:
    the node's state is read, not changed, and a monitor that called the node unreachable
    for it would refuse every request until its next check."""
    node, url = scripted_node
    node.load(
        (
            Exchange("GET", "/listchannels", answer={"channels": []}),
            Exchange("GET", "/listchannels", kind="drop"),
            Exchange("GET", "/listchannels", answer={"channels": []}),
        ),
        None,
    )
    adapter = backend(url)
    try:
        assert await adapter.spendable_balances() == {"BTC": 0}  # the connection is kept
        assert await adapter.spendable_balances() == {"BTC": 0}  # dropped, then read again
    finally:
        await adapter.close()
    assert node.mismatches == []
    assert [r.path for r in node.requests] == ["/listchannels"] * 3


async def test_kept_alive_connection_closed_under_a_post_is_not_sent_again(
    scripted_node: tuple[ScriptedNode, str],
) -> None:
    """A POST (here a payment) on a kept-alive connection the node closed is never sent again
    behind the payment code's back: it ends ambiguous, as every transport fault after a send."""
    node, url = scripted_node
    node.load(
        (
            Exchange("GET", "/listchannels", answer={"channels": []}),
            Exchange("POST", "/sendpayment", {"invoice": OUT.text}, kind="drop"),
        ),
        None,
    )
    adapter = backend(url)
    try:
        assert await adapter.spendable_balances() == {"BTC": 0}  # the connection is kept
        with pytest.raises(NodeUnreachable) as caught:
            await adapter.pay_invoice(bolt11.decode(OUT.text), amount_msat=None, fee_limit_msat=1)
    finally:
        await adapter.close()
    assert caught.value.name == "RemoteProtocolError"
    assert [r.path for r in node.requests] == ["/listchannels", "/sendpayment"]


async def test_connections_are_kept_alive(scripted_node: tuple[ScriptedNode, str]) -> None:
    """The point of the client: one connection for a run of calls, not one per call."""
    node, url = scripted_node
    pending = {
        "payment_id": OUT.payment_hash,
        "payment_hash": OUT.payment_hash,
        "payment_secret": OUT.payment_secret,
        "status": "Pending",
    }
    node.load([Exchange("POST", "/sendpayment", {"invoice": OUT.text}, answer=pending)] * 5, None)
    adapter = backend(url)
    try:
        for _ in range(5):
            sent = await adapter.pay_invoice(
                bolt11.decode(OUT.text), amount_msat=None, fee_limit_msat=1
            )
            assert sent.outcome is PaymentOutcome.PENDING, node.mismatches
        session = adapter._http._session
        assert session is not None
        connector = session.connector
        assert connector is not None
        # Every call went through one kept-alive connection.
        assert sum(len(c) for c in connector._conns.values()) == 1
    finally:
        await adapter.close()
    assert node.mismatches == []


async def test_a_closed_adapter_sends_nothing() -> None:
    adapter = backend("http://127.0.0.1:9")
    await adapter.close()
    with pytest.raises(RuntimeError):
        await adapter.spendable_balances()


async def test_error_answers_on_a_kept_connection_keep_their_mapping(
    scripted_node: tuple[ScriptedNode, str],
) -> None:
    """Answers read whole on a reused connection: a 403 then a 500 on the same one."""
    node, url = scripted_node
    node.load(
        (
            Exchange("GET", "/listchannels", None, 403, error(403, "LockedNode")),
            Exchange("GET", "/listchannels", None, 500, error(500, "Unexpected")),
        ),
        None,
    )
    adapter = backend(url)
    try:
        with pytest.raises(Exception) as first:
            await adapter.spendable_balances()
        with pytest.raises(NodeUnreachable) as second:
            await adapter.spendable_balances()
    finally:
        await adapter.close()
    assert node.mismatches == []
    assert type(first.value).__name__ == "NodeLocked"
    assert second.value.name == "Unexpected"
    assert node.mismatches == []


def _self_signed(where: Path) -> ssl.SSLContext:
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "node.key", "-out", "node.pem",
            "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        cwd=where, check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(where / "node.pem", where / "node.key")
    return context


async def test_an_untrusted_certificate_is_refused(tmp_path: Path) -> None:
    """TLS is verified (vnode/tls.py's context): a node whose certificate no trusted CA signed
    is not spoken to, and the send is ambiguous like any other failure to connect."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise AssertionError("no request may reach a node with an untrusted certificate")

    async with raw_node(answer, tls=_self_signed(tmp_path)) as (url, requests):
        caught = await _pay(url)
    assert caught.name == "ConnectError"
    assert requests == []
