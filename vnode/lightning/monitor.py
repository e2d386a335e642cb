"""Watches the master node: reachable, locked or ready. Money only moves while it is ready."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from vnode.errors import ApiError, ErrorCode
from vnode.lightning.base import LightningBackend, NodeError, NodeInfo, NodeLocked

log = logging.getLogger(__name__)


class NodeState(StrEnum):
    STARTING = "starting"  # not asked yet
    READY = "ready"
    LOCKED = "locked"  # locked or changing state: the node refuses to move money
    UNREACHABLE = "unreachable"


@dataclass
class NodeStatus:
    state: NodeState = NodeState.STARTING
    info: NodeInfo | None = None
    detail: str = ""
    checked_at: float = 0.0


# What the node can spend is asked at most this often, by the monitor only: no request makes a
# node call by itself (security review L3), so /readyz shows the last figure and its age.
SPENDABLE_REFRESH_S = 30.0


@dataclass(frozen=True)
class Spendable:
    balances: dict[str, int] | None  # None: not known (see error)
    error: str | None
    checked_at: float


class NodeMonitor:
    def __init__(
        self,
        backend: LightningBackend,
        *,
        simulated: bool,
        on_state: Callable[[NodeState], Awaitable[object]] | None = None,
    ) -> None:
        self.backend = backend
        self.simulated = simulated
        self.status = NodeStatus()
        self.spendable = Spendable(None, "not asked yet", 0.0)
        # Told every observed state; it announces real changes once across processes.
        self._on_state = on_state

    async def check(self) -> NodeStatus:
        """Ask the node once and record the answer (logged on every change of state)."""
        previous = self.status.state
        try:
            info = await self.backend.node_info()
            self.status = NodeStatus(NodeState.READY, info, "", time.time())
        except NodeLocked as exc:
            self.status = NodeStatus(NodeState.LOCKED, self.status.info, str(exc), time.time())
        except NodeError as exc:
            self.status = NodeStatus(NodeState.UNREACHABLE, self.status.info, str(exc), time.time())
        if (
            self.status.state is NodeState.READY
            and time.time() - self.spendable.checked_at >= SPENDABLE_REFRESH_S
        ):
            await self._refresh_spendable()
        if self.status.state != previous:
            log.warning(
                "master node state changed",
                extra={
                    "from_state": previous.value,
                    "to_state": self.status.state.value,
                    "detail": self.status.detail,
                    "simulated": self.simulated,
                },
            )
        if self._on_state is not None:
            await self._on_state(self.status.state)
        return self.status

    async def _refresh_spendable(self) -> None:
        try:
            balances = await self.backend.spendable_balances()
            self.spendable = Spendable(balances, None, time.time())
        except NodeError as exc:
            self.spendable = Spendable(None, str(exc), time.time())

    def require_ready(self) -> NodeInfo:
        """The node's info, or a 503 refusal when it cannot move money now."""
        if self.status.state != NodeState.READY or self.status.info is None:
            raise ApiError(
                ErrorCode.NODE_UNAVAILABLE,
                f"the master node is {self.status.state.value}; nothing was sent",
            )
        return self.status.info

    def as_json(self) -> dict[str, object]:
        info = self.status.info
        return {
            "state": self.status.state.value,
            "simulated": self.simulated,
            "backend": self.backend.name,
            "network": info.network.value if info else None,
            "pubkey": info.pubkey if info else None,
            "detail": self.status.detail or None,
        }
