"""Webhook URLs must not reach inside the operator's network (SSRF; LESSONS 22).

A URL whose host resolves to a loopback, private, link-local (cloud metadata lives there),
multicast, reserved or unspecified address is refused unless the operator names that host in
VNODE_WEBHOOK_ALLOW_HOSTS. The check runs when an endpoint is added and again before each
delivery (DNS can change between the two).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit


class UnsafeUrl(ValueError):
    pass


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _forbidden(address.ipv4_mapped)
    return (address.is_private or address.is_loopback or address.is_link_local
            or address.is_multicast or address.is_reserved or address.is_unspecified
            or not address.is_global)


async def check_url(url: str, allow_hosts: frozenset[str]) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("a webhook URL is http(s)://host/...")
    if parts.username or parts.password:
        raise UnsafeUrl("credentials in a webhook URL are not accepted")
    host = parts.hostname.lower()
    if host in allow_hosts:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, parts.port or (443 if parts.scheme == "https" else 80),
            type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        # (A malformed name such as "a..b" fails in the IDNA codec, not in the resolver.)
        raise UnsafeUrl(f"cannot resolve {host}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if _forbidden(address):
            raise UnsafeUrl(
                f"{host} resolves to {address}, a non-public address; allow the host "
                "explicitly with VNODE_WEBHOOK_ALLOW_HOSTS if this is intended")
