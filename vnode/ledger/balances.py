"""Reading balances: settled, pending in outgoing payments, and spendable, per asset."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from vnode.db.pool import DbConnection
from vnode.domain.amounts import msat_to_sats_floor
from vnode.domain.ids import BTC, node_id


@dataclass(frozen=True)
class AssetBalance:
    asset_id: str
    spendable: int  # unspent coins, in msat for BTC
    pending: int  # reserved for outgoing payments in flight

    @property
    def settled(self) -> int:
        return self.spendable + self.pending

    def as_json(self) -> dict[str, object]:
        if self.asset_id == BTC:
            return {
                "asset_id": BTC,
                "balance_msat": self.settled,
                "pending_msat": self.pending,
                "spendable_msat": self.spendable,
                # whole sats round down: a shown amount is always spendable
                "balance_sats": msat_to_sats_floor(self.settled),
                "pending_sats": msat_to_sats_floor(self.pending),
                "spendable_sats": msat_to_sats_floor(self.spendable),
            }
        return {
            "asset_id": self.asset_id,
            "balance": self.settled,
            "pending": self.pending,
            "spendable": self.spendable,
        }


async def node_exists(pool: asyncpg.Pool, user_id: int) -> bool:
    found = await pool.fetchval("SELECT true FROM virtual_nodes WHERE user_id = $1", user_id)
    return bool(found)


async def asset_balance(pool: asyncpg.Pool, user_id: int, asset_id: str) -> AssetBalance | None:
    """The user's balance of one asset (zero if never held); None if the user has no node."""
    row = await pool.fetchrow(
        "SELECT b.spendable, b.pending FROM virtual_nodes n "
        "LEFT JOIN ln_user_balances b ON b.user_id = n.user_id AND b.asset_id = $2 "
        "WHERE n.user_id = $1",
        user_id,
        asset_id,
    )
    if row is None:
        return None
    return AssetBalance(asset_id, row["spendable"] or 0, row["pending"] or 0)


async def all_balances(
    pool: asyncpg.Pool | DbConnection, user_id: int
) -> list[AssetBalance] | None:
    """Every asset the user holds or has held, BTC first; None if the user has no node."""
    rows = await pool.fetch(
        "SELECT b.asset_id, b.spendable, b.pending FROM virtual_nodes n "
        "LEFT JOIN ln_user_balances b ON b.user_id = n.user_id "
        "WHERE n.user_id = $1 ORDER BY b.asset_id <> 'BTC', b.asset_id",
        user_id,
    )
    if not rows:
        return None
    found = [
        AssetBalance(r["asset_id"], r["spendable"], r["pending"]) for r in rows if r["asset_id"]
    ]
    if not any(b.asset_id == BTC for b in found):
        found.insert(0, AssetBalance(BTC, 0, 0))
    return found


def balances_json(user_id: int, balances: list[AssetBalance]) -> dict[str, object]:
    return {
        "user_id": user_id,
        "node_id": node_id(user_id),
        "balances": [b.as_json() for b in balances],
    }
