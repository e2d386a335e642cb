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


async def liabilities_from_accounts(conn: DbConnection | asyncpg.Pool) -> dict[str, int]:
    """What users are owed per asset, read off the system accounts (a few rows, not one per
    user): every movement is balanced, so users' spendable amounts and the system accounts sum
    to zero per asset, and pending payments' reserves sit in payments_in_flight. Equal to
    `liabilities` on a sound ledger, which is what `vnode audit` checks (its "users + system
    accounts must sum to 0")."""
    rows = await conn.fetch(
        "SELECT s.asset_id, (-sum(s.balance))::bigint AS owed FROM system_balances s "
        "JOIN system_accounts a USING (account_id) WHERE a.name <> 'payments_in_flight' "
        "GROUP BY s.asset_id"
    )
    return {row["asset_id"]: row["owed"] for row in rows if row["owed"] != 0}


def compare(owed: dict[str, int], spendable: dict[str, int]) -> list[AssetSolvency]:
    assets = sorted(set(owed) | set(spendable), key=lambda a: (a != "BTC", a))
    return [AssetSolvency(a, owed.get(a, 0), spendable.get(a, 0)) for a in assets]
