"""Lightning backends by name: a plain table of factories, read once at start-up.

``rln`` is a real RGB Lightning Node. ``sim`` is the simulated RGB Lightning Node
(``vnode_sim``, a sibling package), which speaks the same REST API: it is reached through the
very same adapter, so every test against the sim also exercises the code that talks to a real
node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from vnode.lightning.base import LightningBackend
from vnode.lightning.rln import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_REFRESH_TIMEOUT_S,
    DEFAULT_TRANSPORT_ENDPOINTS,
    RlnBackend,
)

__all__ = ["BACKENDS", "BackendOptions", "create_backend"]


@dataclass(frozen=True)
class BackendOptions:
    url: str | None
    token: str | None
    timeout_s: float
    connect_timeout_s: float
    refresh_timeout_s: float
    rgb_transport_endpoints: Sequence[str]


def _rln(options: BackendOptions, *, simulated: bool) -> LightningBackend:
    if not options.url:
        raise ValueError("the rln and sim backends need the node's URL (rln_url)")
    return RlnBackend(
        options.url,
        token=options.token,
        connect_timeout_s=options.connect_timeout_s,
        read_timeout_s=options.timeout_s,
        refresh_timeout_s=options.refresh_timeout_s,
        transport_endpoints=options.rgb_transport_endpoints,
        simulated=simulated,
    )


def _real_rln(options: BackendOptions) -> LightningBackend:
    return _rln(options, simulated=False)


def _sim(options: BackendOptions) -> LightningBackend:
    # rln_url is where the simulated node listens (embedded or a `vnode sim` process).
    return _rln(options, simulated=True)


BACKENDS: Final[dict[str, Callable[[BackendOptions], LightningBackend]]] = {
    "rln": _real_rln,
    "sim": _sim,
}


def create_backend(
    name: str,
    *,
    rln_url: str | None,
    rln_token: str | None,
    timeout_s: float,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    refresh_timeout_s: float = DEFAULT_REFRESH_TIMEOUT_S,
    rgb_transport_endpoints: Sequence[str] = DEFAULT_TRANSPORT_ENDPOINTS,
) -> LightningBackend:
    """The backend called ``name``; ValueError (listing the known names) for any other."""
    factory = BACKENDS.get(name)
    if factory is None:
        known = ", ".join(sorted(BACKENDS))
        raise ValueError(f"unknown Lightning backend {name!r}; known backends: {known}")
    return factory(
        BackendOptions(
            url=rln_url,
            token=rln_token,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            refresh_timeout_s=refresh_timeout_s,
            rgb_transport_endpoints=tuple(rgb_transport_endpoints),
        )
    )
