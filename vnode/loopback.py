"""Free loopback ports for processes started side by side: `vnode serve` puts the simulated
node on its port + 1, and the tests, benchmarks and proving harnesses start services of
their own.

The ports are picked below the kernel's ephemeral range, which it hands to outgoing
connections as their source ports: a port found free there could be taken by any client's
connection before the server bound it (a fresh clone's run saw `vnode serve`'s simulated node
refuse to start, exit 3, its port + 1 taken between the check and the bind)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LINUX_EPHEMERAL_LOW = 32768  # the kernel's default, and where /proc is not readable
_SPAN = 12_000  # the ports tried: this many below the ephemeral range
_TRIES = 200


def _candidates() -> range:
    try:
        low = int(_EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = _LINUX_EPHEMERAL_LOW
    return range(max(1024, low - _SPAN), low - 1)  # P + 1 stays below `low` too


def _free(*ports: int) -> bool:
    held: list[socket.socket] = []
    try:
        for port in ports:
            sock = socket.socket()
            held.append(sock)
            sock.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        for sock in held:
            sock.close()


def _pick(width: int) -> int:
    candidates = _candidates()
    for _ in range(_TRIES):
        port = random.choice(candidates)
        if _free(*range(port, port + width)):
            return port
    raise RuntimeError(f"no {width} adjacent free loopback ports in {candidates}")


def free_port() -> int:
    return _pick(1)


def free_port_pair() -> int:
    """A free port P with P + 1 free too (vnode serve puts the simulated node on P + 1)."""
    return _pick(2)
