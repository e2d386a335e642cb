"""The webhook SSRF guard (L1): deliveries connect only to the address that was vetted, keep
the URL's host name for Host, SNI and the certificate check, and IPv6 prefixes that carry an
IPv4 address are judged by that address."""

from __future__ import annotations

import socket
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.events.webhook_receiver import WebhookReceiver
from vnode.events import webhooks
from vnode.events.envelope import Event
from vnode.events.ssrf import UnsafeUrl, check_url, resolve_url
from vnode.events.webhooks import Endpoint, WebhookChannel

SECRET = "whsec_test_" + "s" * 32
# A global address nothing in the test listens on (a public DNS resolver's IPv6 address; the
# delivery to it fails or times out, which is all the test needs).
PUBLIC_V6 = "2606:4700:4700::1111"


def an_event(user_id: int = 42, seq: int = 1) -> Event:
    return Event(
        outbox_id=seq,
        event_id=str(uuid.uuid4()),
        event_type="transfer.completed",
        user_id=user_id,
        user_seq=seq,
        payload={"amount_msat": 1},
        created_at=datetime.now(UTC),
    )


async def test_l1_delivery_connects_to_vetted_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """A DNS server that answers a public address to the check and 127.0.0.1 afterwards (DNS
    rebinding) must not get a delivery into the machine.

    The system resolver itself is replaced (socket.getaddrinfo, which asyncio, anyio and httpx
    all end up calling), so whatever resolves the name a second time meets the rebinding."""
    real_getaddrinfo = socket.getaddrinfo
    asked: list[str] = []

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host  # anyio passes IDNA bytes
        if name != "rebind.test":
            return real_getaddrinfo(host, port, *args, **kwargs)
        asked.append(name)
        if len(asked) == 1:
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (PUBLIC_V6, int(port), 0, 0))]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", int(port)))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(webhooks, "DELIVERY_TIMEOUT_S", 2.0)
    with WebhookReceiver(SECRET) as receiver:
        endpoint = Endpoint(1, f"http://rebind.test:{receiver.port}/hook", SECRET)
        channel = WebhookChannel(endpoint, frozenset())
        results = await channel.send([an_event()])
        assert receiver.requests == 0, receiver.host_headers
    assert len(results) == 1 and results[0].error is not None
    assert "refused" not in results[0].error  # vetted, then the connection to it failed
    assert asked == ["rebind.test"]  # resolved once, for the check and the connection


@pytest.mark.parametrize(
    "url",
    [
        "http://[2002:a9fe:a9fe::]/hook",  # 6to4 of 169.254.169.254 (cloud metadata)
        "http://[2002:7f00:1::1]/hook",  # 6to4 of 127.0.0.1
        "http://[2002:a00:1::]/hook",  # 6to4 of 10.0.0.1
        "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of 169.254.169.254
        "http://[64:ff9b::7f00:1]/hook",  # NAT64 of 127.0.0.1
        "http://[64:ff9b::c0a8:10a]/hook",  # NAT64 of 192.168.1.10
        "http://[64:ff9b:1::5db8:d822]/hook",  # local-use NAT64: refused whatever it holds
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook",  # Teredo: refused outright
        "http://[2001:0:5db8:d822::1]/hook",  # Teredo with a public server address too
        "http://[::ffff:a9fe:a9fe]/hook",  # IPv4-mapped (handled before; kept)
    ],
)
async def test_l1_6to4_teredo_nat64_refused(url: str, app_client: httpx.AsyncClient) -> None:
    with pytest.raises(UnsafeUrl, match="non-public address"):
        await check_url(url, frozenset())
    # The same through the admin API (the session app has no allow-list).
    response = await app_client.post("/admin/webhooks", json={"url": url})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "unsafe_url"

    # A name that resolves to such an address is refused the same way, at delivery too.
    address = url.split("[", 1)[1].split("]", 1)[0]

    async def resolver(host: str, port: int) -> list[str]:
        return [address]

    with pytest.raises(UnsafeUrl, match="non-public address"):
        await resolve_url("https://hooks.example/x", frozenset(), resolver)
    channel = WebhookChannel(
        Endpoint(1, "https://hooks.example/x", SECRET), frozenset(), resolver=resolver
    )
    [result] = await channel.send([an_event()])
    assert result.error is not None and result.error.startswith("refused:")


@pytest.mark.parametrize(
    "address",
    [
        "2002:5db8:d822::1",  # 6to4 of a public address: a gateway forwards there
        "64:ff9b::5db8:d822",  # NAT64 of the same
        "2606:4700:4700::1111",  # plain global IPv6
    ],
)
async def test_l1_embedded_public_ipv4_still_allowed(address: str) -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return [address]

    target = await resolve_url("https://hooks.example/x", frozenset(), resolver)
    assert target.addresses == (address,) and target.host == "hooks.example"
    assert target.port == 443


# --- TLS: the vetted address is dialled, the host name is what TLS and Host see ------------


@dataclass(frozen=True)
class Certs:
    ca: Path
    hooks_cert: Path  # for hooks.test, signed by the CA
    hooks_key: Path
    other_cert: Path  # for other.test, signed by the same CA
    other_key: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Certs]:
    """A test CA and two server certificates, made with the openssl command-line tool."""
    where = tmp_path_factory.mktemp("tls")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=vnode test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=where,
    )
    for name in ("hooks", "other"):
        _openssl(
            "req",
            "-new",
            *ec,
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={name}.test",
            cwd=where,
        )
        (where / f"{name}.ext").write_text(
            f"subjectAltName=DNS:{name}.test\nbasicConstraints=CA:FALSE\n"
            "extendedKeyUsage=serverAuth\n"
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            "2",
            "-extfile",
            f"{name}.ext",
            cwd=where,
        )
    yield Certs(
        where / "ca.pem",
        where / "hooks.pem",
        where / "hooks.key",
        where / "other.pem",
        where / "other.key",
    )


async def test_l1_pinned_delivery_keeps_host_name_for_tls_and_host(certs: Certs) -> None:
    """Dialling 127.0.0.1 (the vetted address of hooks.test, allowed here) still verifies the
    certificate against hooks.test and sends Host: hooks.test; a certificate for another name
    is refused."""
    trust = ssl.create_default_context(cafile=str(certs.ca))

    async def resolver(host: str, port: int) -> list[str]:
        assert host == "hooks.test"
        return ["127.0.0.1"]

    allowed = frozenset({"hooks.test"})
    with WebhookReceiver(
        SECRET, certfile=str(certs.hooks_cert), keyfile=str(certs.hooks_key)
    ) as receiver:
        url = f"https://hooks.test:{receiver.port}/hook"
        channel = WebhookChannel(
            Endpoint(1, url, SECRET), allowed, resolver=resolver, ssl_context=trust
        )
        results = await channel.send([an_event(seq=1), an_event(seq=2)])
        assert [r.error for r in results] == [None, None]
        assert [r.seq for r in receiver.received] == [1, 2]
        assert receiver.host_headers == [f"hooks.test:{receiver.port}"] * 2
        assert receiver.bad_signatures == []

    with WebhookReceiver(
        SECRET, certfile=str(certs.other_cert), keyfile=str(certs.other_key)
    ) as impostor:
        url = f"https://hooks.test:{impostor.port}/hook"
        channel = WebhookChannel(
            Endpoint(1, url, SECRET), allowed, resolver=resolver, ssl_context=trust
        )
        [result] = await channel.send([an_event()])
        assert result.error is not None and "CERTIFICATE_VERIFY_FAILED" in result.error
        assert impostor.received == []
