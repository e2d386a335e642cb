"""Ports for servers started side by side are picked below the kernel's ephemeral range, which
outgoing connections take their source ports from, and are free when handed out."""

from __future__ import annotations

import socket
from pathlib import Path

from vnode.loopback import free_port, free_port_pair


def _ephemeral_low() -> int:
    path = Path("/proc/sys/net/ipv4/ip_local_port_range")
    return int(path.read_text().split()[0]) if path.exists() else 32768


def test_ports_are_below_the_ephemeral_range_and_bindable() -> None:
    low = _ephemeral_low()
    for port in [free_port() for _ in range(20)]:
        assert 1024 <= port < low
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_pair_is_two_free_ports_below_the_ephemeral_range() -> None:
    port = free_port_pair()
    assert port + 1 < _ephemeral_low()
    with socket.socket() as first, socket.socket() as second:
        first.bind(("127.0.0.1", port))
        second.bind(("127.0.0.1", port + 1))
