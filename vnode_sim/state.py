"""SimNode: one simulated RGB Lightning Node (keys, channels, lock, faults) and its parts.

The Lightning side (invoices, payments) is a PaymentEngine, the on-chain RGB side an RgbWallet;
both share the node's channels and fault state. Everything runs on the server's event loop:
handlers and settle tasks change state between awaits only, so no lock is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final

from coincurve import PrivateKey

from vnode.lightning.rln_api import NODE_NETWORK
from vnode_sim import errors
from vnode_sim.channels import Channel, open_channel
from vnode_sim.config import SimConfig
from vnode_sim.faults import FaultState
from vnode_sim.models import SimFaultsRequest
from vnode_sim.payment_engine import RGB_HTLC_MIN_MSAT, PaymentEngine
from vnode_sim.rgb_wallet import RgbWallet

_ONCHAIN_VANILLA_SAT: Final = 100_000_000
_ONCHAIN_COLORED_SAT: Final = 5_000_000


def _derive_key(seed: bytes, label: bytes) -> PrivateKey:
    material = hashlib.sha256(b"vnode-sim/" + label + b"/" + seed).digest()
    while True:
        try:
            return PrivateKey(material)
        except ValueError:  # out of the curve's range: astronomically rare, rehash
            material = hashlib.sha256(material).digest()


class SimNode:
    def __init__(self, config: SimConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        seed = (
            bytes.fromhex(config.node_seed_hex)
            if config.node_seed_hex is not None
            else secrets.token_bytes(32)
        )
        self.faults = FaultState(routing_fee_msat=config.routing_fee_msat)
        self.started_at = int(clock())
        self.channels = self._open_channels(config, seed)
        # The outside world is the node's only channel peer, and the payee of /_sim/invoice.
        self.ln = PaymentEngine(
            network=config.network,
            node_key=_derive_key(seed, b"node"),
            outside_key=_derive_key(seed, b"outside"),
            channels=self.channels,
            faults=self.faults,
            settle_delay_s=config.settle_delay_s,
            clock=clock,
            spawn=self._spawn,
        )
        self.pubkey = self.ln.pubkey
        self.wallet = RgbWallet(
            config.network,
            seed,
            frozenset(c.asset_id for c in self.channels if c.asset_id is not None),
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    @staticmethod
    def _open_channels(config: SimConfig, seed: bytes) -> list[Channel]:
        btc = open_channel(
            seed=seed,
            index=0,
            asset_id=None,
            local_msat=config.btc_outbound_msat,
            remote_msat=config.btc_inbound_msat,
        )
        rgb = [
            open_channel(
                seed=seed,
                index=i,
                asset_id=asset_id,
                local_msat=config.rgb_channel_btc_msat,
                remote_msat=config.rgb_channel_btc_msat,
                asset_units=units,
            )
            for i, (asset_id, units) in enumerate(sorted(config.rgb_assets.items()), start=1)
        ]
        return [btc, *rgb]

    # ------------------------------------------------------------------ lifecycle

    def now(self) -> int:
        return int(self._clock())

    def attach_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the serving loop, so another thread can ask the node to stop."""
        self._loop = loop

    def stop_threadsafe(self) -> None:
        """From any thread: end held-open requests now (called before a server stops)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)

    async def hang(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the server is stopping (so shutdown is not held up)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def aclose(self) -> None:
        self._stopping.set()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ lock

    def require_unlocked(self) -> None:
        if self.faults.locked:
            raise errors.locked_node()

    def lock(self) -> None:
        self.require_unlocked()
        self.faults.locked = True

    def unlock(self, password: str) -> None:
        if not self.faults.locked:
            raise errors.already_unlocked()
        if self.config.password is not None and password != self.config.password:
            raise errors.wrong_password()
        self.faults.locked = False

    def set_faults(self, req: SimFaultsRequest) -> dict[str, object]:
        """Apply POST /_sim/faults: only the fields the request names change anything."""
        given = req.model_fields_set
        count = 1 if req.count is None else req.count
        if req.routing_fee_msat is not None:
            self.faults.routing_fee_msat = req.routing_fee_msat
        if req.locked is not None:
            self.faults.locked = req.locked
        if "next_payment" in given:
            self.faults.set_next_payment(req.next_payment, count)
        if "hostile" in given:
            if req.hostile is None:
                self.faults.clear_hostile()
            else:
                self.faults.add_hostile(req.hostile, count, target=req.target, route=req.route)
        return self.faults.as_json()

    # ------------------------------------------------------------------ node-wide views

    def node_info(self) -> dict[str, object]:
        return {
            "pubkey": self.pubkey,
            "num_channels": len(self.channels),
            "num_usable_channels": len(self.channels),
            "local_balance_sat": sum(c.local_msat for c in self.channels) // 1000,
            "eventual_close_fees_sat": 0,
            "pending_outbound_payments_sat": self.ln.pending_outbound_msat() // 1000,
            "num_peers": 1,
            "account_xpub_vanilla": "tpubSimVanilla" + self.pubkey[:40],
            "account_xpub_colored": "tpubSimColored" + self.pubkey[:40],
            "max_media_upload_size_mb": 5,
            "rgb_htlc_min_msat": RGB_HTLC_MIN_MSAT,
            "rgb_channel_capacity_min_sat": 30010,
            "channel_capacity_min_sat": 5506,
            "channel_capacity_max_sat": 16777215,
            "channel_asset_min_amount": 1,
            "channel_asset_max_amount": 2**64 - 1,
            "network_nodes": 2,
            "network_channels": len(self.channels),
        }

    def network_info(self) -> dict[str, object]:
        network = NODE_NETWORK[self.config.network]
        return {"network": network, "height": self.config.block_height}

    def list_channels(self) -> list[dict[str, object]]:
        return [c.as_json(self.ln.outside_pubkey) for c in self.channels]

    def btc_balance(self) -> dict[str, object]:
        def balance(sat: int) -> dict[str, int]:
            return {"settled": sat, "future": sat, "spendable": sat}

        return {
            "vanilla": balance(_ONCHAIN_VANILLA_SAT),
            "colored": balance(_ONCHAIN_COLORED_SAT),
        }

    def asset_balance(self, asset_id: str) -> dict[str, int]:
        self.wallet.check_asset(asset_id)
        channel = next((c for c in self.channels if c.asset_id == asset_id), None)
        settled = self.wallet.settled(asset_id)
        return {
            "settled": settled,
            "future": settled + self.wallet.incoming(asset_id),
            "spendable": settled,
            "offchain_outbound": 0 if channel is None else channel.asset_local,
            "offchain_inbound": 0 if channel is None else channel.asset_remote,
        }

    def list_assets(self, schemas: list[str]) -> dict[str, object]:
        # The sim's assets are all NIA (fungible); an empty filter means every schema.
        wanted = set(schemas) or {"Nia", "Uda", "Cfa", "Ifa"}
        nia = [
            {
                "asset_id": asset_id,
                "ticker": f"SIM{n}",
                "name": f"Simulated asset {n}",
                "details": None,
                "precision": 0,
                "issued_supply": 21_000_000_000,
                "timestamp": self.started_at,
                "added_at": self.started_at,
                "balance": self.asset_balance(asset_id),
                "media": None,
            }
            for n, asset_id in enumerate(sorted(self.wallet.known_assets), start=1)
        ]
        return {
            "nia": nia if "Nia" in wanted else None,
            "uda": [] if "Uda" in wanted else None,
            "cfa": [] if "Cfa" in wanted else None,
            "ifa": [] if "Ifa" in wanted else None,
        }

    def state_json(self) -> dict[str, object]:
        """Everything a test may want to look at (GET /_sim/state)."""

        def liquidity(channel: Channel) -> dict[str, object]:
            return {
                "outbound_msat": channel.local_msat,
                "inbound_msat": channel.remote_msat,
                "asset_local": channel.asset_local if channel.asset_id else None,
                "asset_remote": channel.asset_remote if channel.asset_id else None,
            }

        return {
            "node_pubkey": self.pubkey,
            "outside_pubkey": self.ln.outside_pubkey,
            "network": self.config.network,
            "locked": self.faults.locked,
            "faults": self.faults.as_json(),
            **self.ln.as_json(),
            "liquidity": {(c.asset_id or "BTC"): liquidity(c) for c in self.channels},
            "rgb": self.wallet.as_json(),
        }
