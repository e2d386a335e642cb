"""Solvency: what users are owed per asset, against what the master node can spend."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from vnode.db.pool import DbConnection


@dataclass(frozen=True)
class AssetSolvency:
    asset_id: str
    owed: int  # users' balances plus their pending payments
    node_spendable: int

    @property
    def shortfall(self) -> int:
        return max(0, self.owed - self.node_spendable)

    def as_json(self) -> dict[str, object]:
        return {
            "asset_id": self.asset_id,
            "owed": self.owed,
            "node_spendable": self.node_spendable,
            "shortfall": self.shortfall,
        }


async def liabilities(conn: DbConnection | asyncpg.Pool) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT asset_id, sum(spendable + pending)::bigint AS owed FROM ln_user_balances "
        "GROUP BY asset_id"
    )
    return {row["asset_id"]: row["owed"] for row in rows}


def compare(owed: dict[str, int], spendable: dict[str, int]) -> list[AssetSolvency]:
    assets = sorted(set(owed) | set(spendable), key=lambda a: (a != "BTC", a))
    return [AssetSolvency(a, owed.get(a, 0), spendable.get(a, 0)) for a in assets]
