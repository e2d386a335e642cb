"""How a simulated RGB Lightning Node starts: network, keys, liquidity, timings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from vnode.lightning.base import Network
from vnode.lightning.rln_api import U64_MAX
from vnode_sim.assets import is_asset_id


@dataclass(frozen=True)
class SimConfig:
    """Start-up settings; everything else about the node changes only through its APIs.

    Unlike a real node, the simulated one starts initialised and unlocked.
    """

    network: Network = Network.REGTEST
    # Hex seed the node's and the outside world's keys derive from; None draws random keys.
    # A fixed seed gives the same node pubkey on every start (handy for a restart test).
    node_seed_hex: str | None = None
    # The BTC channel: what the node can send, and what its peer can send to it.
    btc_outbound_msat: int = 10**12
    btc_inbound_msat: int = 10**12
    # One channel per RGB asset: asset_id -> units the node holds in it (the peer holds as
    # many, so the node can receive the asset too).
    rgb_assets: Mapping[str, int] = field(default_factory=dict)
    # BTC in each RGB channel, per side: every RGB payment carries at least 3,000,000 msat.
    rgb_channel_btc_msat: int = 10**10
    # Routing fee charged on every outbound payment (changeable at run time via /_sim/faults).
    routing_fee_msat: int = 0
    # An outbound payment answers Pending and settles this long after, in the background.
    settle_delay_s: float = 0.02
    # How long /sendpayment withholds its answer under the timeout_then_succeed fault.
    request_timeout_hang_s: float = 30.0
    # Password /unlock accepts; None accepts any.
    password: str | None = None
    block_height: int = 150

    def __post_init__(self) -> None:
        try:  # a name given as text is held as the Network it names
            object.__setattr__(self, "network", Network(self.network))
        except ValueError:
            raise ValueError(f"network must be one of {', '.join(Network)}") from None
        if self.node_seed_hex is not None:
            try:
                seed = bytes.fromhex(self.node_seed_hex)
            except ValueError:
                raise ValueError("node_seed_hex must be hex") from None
            if not seed:
                raise ValueError("node_seed_hex must not be empty")
        for name in (
            "btc_outbound_msat",
            "btc_inbound_msat",
            "rgb_channel_btc_msat",
            "routing_fee_msat",
            "block_height",
        ):
            _check_amount(name, getattr(self, name))
        for asset_id, units in self.rgb_assets.items():
            if not is_asset_id(asset_id):
                raise ValueError(f"rgb_assets: {asset_id!r} is not an RGB asset id")
            _check_amount(f"rgb_assets[{asset_id}]", units)
        if self.settle_delay_s < 0 or self.request_timeout_hang_s < 0:
            raise ValueError("delays must not be negative")


def _check_amount(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U64_MAX:
        raise ValueError(f"{name} must be an integer in 0..2^64-1")
