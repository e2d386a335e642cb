"""Free loopback ports for processes started side by side: `vnode serve` puts the simulated
node on its port + 1, and the tests, benchmarks and proving harnesses start services of
their own."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_pair() -> int:
    """A free port P with P + 1 free too (vnode serve puts the simulated node on P + 1)."""
    for _ in range(100):
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two adjacent free ports")
