"""The service's public URL (VNODE_PUBLIC_URL): the base of every URL vnode hands out to the
outside (LNURL-pay callbacks, LUD-21 verify URLs), and through its host the domain of the
Lightning Addresses. One rule: https, or plain http for a loopback host only (tests)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

_LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback_host(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_public_url(value: str) -> str:
    """`value` in its one form (no trailing slash), or ValueError saying what is wrong."""
    parts = urlsplit(value)
    host = parts.hostname
    if parts.scheme not in ("https", "http") or not host:
        raise ValueError("VNODE_PUBLIC_URL must be an https:// URL with a host")
    if parts.scheme == "http" and not is_loopback_host(host):
        # A payer's wallet trusts what this URL answers (whom to pay): never over plain http.
        raise ValueError("VNODE_PUBLIC_URL must use https (plain http only for a loopback host)")
    if parts.username is not None or parts.password is not None:
        raise ValueError("VNODE_PUBLIC_URL must not carry credentials")
    if parts.query or parts.fragment or any(c.isspace() for c in value):
        raise ValueError("VNODE_PUBLIC_URL must have no query, fragment or spaces")
    try:
        parts.port  # noqa: B018 (urlsplit checks the port only when it is read)
    except ValueError as exc:
        raise ValueError(f"VNODE_PUBLIC_URL has an invalid port: {exc}") from None
    return value.rstrip("/")
