"""`vnode audit`: recompute every cached balance and check conservation, on one snapshot.

Runs in a REPEATABLE READ, READ ONLY transaction, so it sees one consistent state while the
service keeps working, and can never change anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from vnode.db.pool import DbConnection


@dataclass(frozen=True)
class Difference:
    check: str
    account: int  # user id, or system account id (< 0); 0 for a per-asset total
    asset_id: str
    expected: int
    found: int


@dataclass(frozen=True)
class AssetTotals:
    asset_id: str
    users_spendable: int
    users_pending: int
    system: dict[str, int]

    @property
    def sum(self) -> int:
        # Pending reserves sit in the payments_in_flight system account, not with the users.
        return self.users_spendable + sum(self.system.values())


@dataclass
class AuditReport:
    checked: dict[str, int] = field(default_factory=dict)  # check name -> rows examined
    differences: list[Difference] = field(default_factory=list)
    totals: list[AssetTotals] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.differences


# Each query yields (account, asset_id, expected, found) for every row it checks; a difference
# is a row where expected <> found.
_CHECKS: dict[str, str] = {
    # The cached spendable amount is the sum of the user's unspent coins.
    "spendable = unspent coins": """
        SELECT coalesce(b.user_id, c.user_id) AS account,
               coalesce(b.asset_id, c.asset_id) AS asset_id,
               coalesce(c.total, 0) AS expected, coalesce(b.spendable, 0) AS found
        FROM ln_user_balances b
        FULL JOIN (SELECT user_id, asset_id, sum(amount)::bigint AS total FROM user_utxos
                   WHERE spent_tx IS NULL GROUP BY 1, 2) c
          ON c.user_id = b.user_id AND c.asset_id = b.asset_id""",
    # What every account holds is what the journal moved to it minus what it moved away.
    "balance = journal": """
        WITH moves AS (
            SELECT to_account AS account, asset_id, amount FROM virtual_transactions
            UNION ALL
            SELECT from_account, asset_id, -amount FROM virtual_transactions),
        net AS (SELECT account, asset_id, sum(amount)::bigint AS total FROM moves GROUP BY 1, 2),
        held AS (
            SELECT user_id AS account, asset_id, spendable AS amount FROM ln_user_balances
            UNION ALL
            SELECT account_id, asset_id, balance FROM system_balances)
        SELECT coalesce(h.account, n.account) AS account,
               coalesce(h.asset_id, n.asset_id) AS asset_id,
               coalesce(n.total, 0) AS expected, coalesce(h.amount, 0) AS found
        FROM held h FULL JOIN net n ON n.account = h.account AND n.asset_id = h.asset_id""",
    # A user's history adds up to what the user can spend (a pending payment's reserve is an
    # 'out' row already; its refund, if any, an 'in' row).
    "spendable = history": """
        WITH net AS (
            SELECT user_id, asset_id,
                   sum(CASE direction WHEN 'in' THEN amount ELSE -amount END)::bigint AS total
            FROM ln_user_transactions GROUP BY 1, 2)
        SELECT coalesce(b.user_id, n.user_id) AS account,
               coalesce(b.asset_id, n.asset_id) AS asset_id,
               coalesce(n.total, 0) AS expected, coalesce(b.spendable, 0) AS found
        FROM ln_user_balances b
        FULL JOIN net n ON n.user_id = b.user_id AND n.asset_id = b.asset_id""",
    # What a user has in flight is what that user's pending payments reserved.
    "pending = pending payments": """
        WITH reserved AS (
            SELECT user_id, 'BTC' AS asset_id, amount_msat + fee_reserve_msat AS amount
            FROM ln_payments WHERE status = 'pending'
            UNION ALL
            SELECT user_id, asset_id, asset_amount FROM ln_payments
            WHERE status = 'pending' AND asset_id IS NOT NULL),
        total AS (SELECT user_id, asset_id, sum(amount)::bigint AS amount FROM reserved
                  GROUP BY 1, 2)
        SELECT coalesce(b.user_id, t.user_id) AS account,
               coalesce(b.asset_id, t.asset_id) AS asset_id,
               coalesce(t.amount, 0) AS expected, coalesce(b.pending, 0) AS found
        FROM ln_user_balances b
        FULL JOIN total t ON t.user_id = b.user_id AND t.asset_id = b.asset_id
        WHERE coalesce(b.pending, 0) <> 0 OR t.amount IS NOT NULL""",
    # The in-flight system account holds exactly the reserves of pending payments.
    "in flight = pending payments": """
        WITH reserved AS (
            SELECT 'BTC' AS asset_id, amount_msat + fee_reserve_msat AS amount
            FROM ln_payments WHERE status = 'pending'
            UNION ALL
            SELECT asset_id, asset_amount FROM ln_payments
            WHERE status = 'pending' AND asset_id IS NOT NULL),
        total AS (SELECT asset_id, sum(amount)::bigint AS amount FROM reserved GROUP BY 1)
        SELECT vnode_account('payments_in_flight') AS account,
               coalesce(s.asset_id, t.asset_id) AS asset_id,
               coalesce(t.amount, 0) AS expected, coalesce(s.balance, 0) AS found
        FROM (SELECT asset_id, balance FROM system_balances
              WHERE account_id = vnode_account('payments_in_flight')) s
        FULL JOIN total t ON t.asset_id = s.asset_id""",
    # Conservation: users plus system accounts sum to zero for every asset.
    "conservation": """
        WITH held AS (
            SELECT asset_id, spendable AS amount FROM ln_user_balances
            UNION ALL
            SELECT asset_id, balance FROM system_balances)
        SELECT 0::bigint AS account, asset_id, 0::bigint AS expected, sum(amount)::bigint AS found
        FROM held GROUP BY asset_id""",
}


# Each check runs as one aggregate: how many rows it examined, and only the rows that differ.
# On a large ledger (a million users) shipping every row to Python to compare them there took
# longer than the checks themselves.
_COUNT_AND_DIFFER = """
    SELECT count(*) AS checked,
           coalesce(jsonb_agg(jsonb_build_array(account, asset_id, expected, found))
                    FILTER (WHERE expected IS DISTINCT FROM found), '[]') AS differences
    FROM ({sql}) AS checked"""

# Called before each check with its name, its number (from 0) and how many checks there are.
OnCheck = Callable[[str, int, int], None]


async def run_audit(conn: DbConnection, on_check: OnCheck | None = None) -> AuditReport:
    report = AuditReport()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for number, (name, sql) in enumerate(_CHECKS.items()):
            if on_check is not None:
                on_check(name, number, len(_CHECKS))
            row = await conn.fetchrow(_COUNT_AND_DIFFER.format(sql=sql))
            assert row is not None  # an aggregate: always one row
            report.checked[name] = row["checked"]
            report.differences.extend(
                Difference(name, account, asset_id, expected, found)
                for account, asset_id, expected, found in json.loads(row["differences"])
            )
        if on_check is not None:
            on_check("totals", len(_CHECKS), len(_CHECKS))
        report.totals = await _totals(conn)
    return report


async def _totals(conn: DbConnection) -> list[AssetTotals]:
    users = await conn.fetch(
        "SELECT asset_id, sum(spendable)::bigint AS spendable, sum(pending)::bigint AS pending "
        "FROM ln_user_balances GROUP BY asset_id"
    )
    system = await conn.fetch(
        "SELECT s.asset_id, a.name, s.balance FROM system_balances s "
        "JOIN system_accounts a USING (account_id)"
    )
    assets = sorted({r["asset_id"] for r in users} | {r["asset_id"] for r in system})
    by_asset = {r["asset_id"]: r for r in users}
    return [
        AssetTotals(
            asset,
            by_asset[asset]["spendable"] if asset in by_asset else 0,
            by_asset[asset]["pending"] if asset in by_asset else 0,
            {r["name"]: r["balance"] for r in system if r["asset_id"] == asset},
        )
        for asset in assets
    ]
