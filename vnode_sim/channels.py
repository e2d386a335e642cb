"""Channel liquidity: one BTC channel, and one channel per RGB asset, all with one peer.

An outbound payment moves ``amount + fee`` msat out of the local side when it is sent (an HTLC
in flight is not spendable), to the remote side when it succeeds, back when it fails. An
inbound payment moves the other way at once. RGB payments move their asset units and their
BTC (at least 3,000,000 msat) in the asset's channel.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass
class Channel:
    channel_id: str
    short_channel_id: int
    asset_id: str | None
    local_msat: int
    remote_msat: int
    capacity_sat: int
    asset_local: int = 0
    asset_remote: int = 0

    def as_json(self, peer_pubkey: str) -> dict[str, object]:
        return {
            "channel_id": self.channel_id,
            "funding_txid": hashlib.sha256(bytes.fromhex(self.channel_id)).hexdigest(),
            "peer_pubkey": peer_pubkey,
            "peer_alias": "sim-peer",
            "short_channel_id": self.short_channel_id,
            "status": "Opened",
            "ready": True,
            "capacity_sat": self.capacity_sat,
            "local_balance_sat": self.local_msat // 1000,
            "outbound_balance_msat": self.local_msat,
            "inbound_balance_msat": self.remote_msat,
            "next_outbound_htlc_limit_msat": self.local_msat,
            "next_outbound_htlc_minimum_msat": 1,
            "is_usable": True,
            "public": False,
            "asset_id": self.asset_id,
            "asset_local_amount": None if self.asset_id is None else self.asset_local,
            "asset_remote_amount": None if self.asset_id is None else self.asset_remote,
        }


def open_channel(
    *,
    seed: bytes,
    index: int,
    asset_id: str | None,
    local_msat: int,
    remote_msat: int,
    asset_units: int = 0,
) -> Channel:
    channel_id = hashlib.sha256(seed + b"/channel/" + index.to_bytes(4, "big")).hexdigest()
    return Channel(
        channel_id=channel_id,
        # block 100 + index, tx 1, output 0, as a BOLT 7 short channel id
        short_channel_id=(100 + index) << 40 | 1 << 16,
        asset_id=asset_id,
        local_msat=local_msat,
        remote_msat=remote_msat,
        capacity_sat=(local_msat + remote_msat) // 1000,
        asset_local=asset_units,
        asset_remote=asset_units,
    )
