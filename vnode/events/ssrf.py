"""Webhook URLs must not reach inside the operator's network (SSRF; docs/design/LESSONS.md 22).

A URL whose host resolves to a loopback, private, link-local (cloud metadata lives there),
multicast, reserved or unspecified address is refused unless the operator names that host in
VNODE_WEBHOOK_ALLOW_HOSTS. The check runs when an endpoint is added and again before each
delivery batch.

Checking a name and then letting the HTTP client resolve it again is not enough: a hostile DNS
server can answer a public address to the check and 127.0.0.1 to the connection (DNS
rebinding). So `resolve_url` resolves once, vets every address, and returns them; deliveries
connect only to those addresses (vnode/events/webhooks.py pins them), while the URL's host
name still goes in the Host header and in TLS (SNI and certificate verification).

IPv6 addresses that carry an IPv4 address inside (IPv4-mapped, 6to4 2002::/16, NAT64
64:ff9b::/96) are judged by that IPv4 address: a 6to4 or NAT64 gateway forwards to it.
Teredo (2001::/32) and local-use NAT64 (64:ff9b:1::/48, RFC 8215) are refused outright: the
first tunnels through relays to an address that cannot be judged here, the second is by
definition inside someone's network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# (host, port) -> the addresses to connect to, as text. A parameter so that tests can stand in
# for a hostile DNS server; production uses the system resolver.
Resolver = Callable[[str, int], Awaitable[list[str]]]

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
_TEREDO = ipaddress.IPv6Network("2001::/32")


class UnsafeUrl(ValueError):
    pass


@dataclass(frozen=True)
class Target:
    """A webhook URL whose addresses were resolved once and vetted: connect only to these."""

    url: str
    host: str
    port: int
    addresses: tuple[str, ...]


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, where a gateway would forward to it."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def forbidden(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address in _TEREDO or address in _LOCAL_NAT64:
            return True
        inner = embedded_ipv4(address)
        if inner is not None:
            return forbidden(inner)
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def _split(url: str) -> tuple[SplitResult, str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("a webhook URL is http(s)://host/...")
    if parts.username or parts.password:
        raise UnsafeUrl("credentials in a webhook URL are not accepted")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeUrl(f"bad port: {exc}") from None
    return parts, parts.hostname.lower(), port


async def resolve_url(
    url: str, allow_hosts: frozenset[str], resolver: Resolver | None = None
) -> Target:
    """Resolve the URL's host once and vet every address it has (UnsafeUrl if any is private,
    unless the host is allowed). The caller must connect to `Target.addresses` only."""
    _, host, port = _split(url)
    try:
        answers = await (resolver or system_resolver)(host, port)
    except (OSError, UnicodeError, ValueError) as exc:
        # (A malformed name such as "a..b" fails in the IDNA codec, not in the resolver;
        # socket.gaierror is an OSError.)
        raise UnsafeUrl(f"cannot resolve {host}: {exc}") from None
    addresses: list[str] = []
    for answer in answers:
        try:
            address = ipaddress.ip_address(answer)
        except ValueError:
            raise UnsafeUrl(f"{host} resolves to {answer!r}, not an IP address") from None
        if host not in allow_hosts and forbidden(address):
            raise UnsafeUrl(
                f"{host} resolves to {address}, a non-public address; allow the host "
                "explicitly with VNODE_WEBHOOK_ALLOW_HOSTS if this is intended"
            )
        if answer not in addresses:
            addresses.append(answer)
    if not addresses:
        raise UnsafeUrl(f"cannot resolve {host}: no address")
    return Target(url, host, port, tuple(addresses))


async def check_url(
    url: str, allow_hosts: frozenset[str], resolver: Resolver | None = None
) -> None:
    """The guard at subscription time: UnsafeUrl unless every address of the host is public
    or the host is allowed (an allowed host need not resolve yet)."""
    _, host, _ = _split(url)
    if host in allow_hosts:
        return
    await resolve_url(url, allow_hosts, resolver)
