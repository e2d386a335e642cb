"""What the console's pages read. Every query is bounded (LIMIT) and served by an index, so a
page stays fast with millions of users and rows (docs/PERFORMANCE.md, "Console")."""

from __future__ import annotations

import re
from dataclasses import dataclass

import asyncpg

from vnode.domain.ids import MAX_USER_ID

PAGE_ROWS = 100
USER_ROWS = 50

_HASH = re.compile(r"[0-9a-f]{64}")
_USER = re.compile(r"(?:vn_)?([1-9][0-9]{0,18})")
# Where an event went: each channel's delivery state ("webhook:3 dead, redis delivered").
_DELIVERIES = (
    "(SELECT string_agg(d.channel || ' ' || d.status, ', ' ORDER BY d.channel) "
    "FROM event_deliveries d WHERE d.outbox_id = o.id) AS deliveries"
)
_ADDRESS = re.compile(r"([a-z0-9._-]{1,64})(?:@[A-Za-z0-9.-]+)?")


@dataclass(frozen=True)
class Counts:
    pending_payments: int
    dead_deliveries: int
    open_alerts: int


async def counts(pool: asyncpg.Pool) -> Counts:
    # Each count reads a partial index of a small set (pending, dead, unresolved).
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM ln_payments WHERE status = 'pending') AS pending, "
        "(SELECT count(*) FROM event_deliveries WHERE status = 'dead') AS dead, "
        "(SELECT count(*) FROM alerts WHERE resolved_at IS NULL) AS alerts"
    )
    assert row is not None
    return Counts(row["pending"], row["dead"], row["alerts"])


async def last_audit(pool: asyncpg.Pool) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT clean, differences, checked, started_at, finished_at FROM audit_runs "
        "ORDER BY id DESC LIMIT 1"
    )


async def pending_payments(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """External payments not final yet, oldest first (the ln_payments_pending index)."""
    return await pool.fetch(
        "SELECT id, payment_hash, user_id, amount_msat, asset_id, asset_amount, "
        "fee_reserve_msat, created_at, sent_at, now() - created_at AS age "
        "FROM ln_payments WHERE status = 'pending' ORDER BY id LIMIT $1",
        PAGE_ROWS,
    )


async def payment(pool: asyncpg.Pool, payment_id: int) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT *, now() - created_at AS age FROM ln_payments WHERE id = $1", payment_id
    )


async def payment_life(pool: asyncpg.Pool, user_id: int, payment_hash: str) -> dict[str, object]:
    """A payment's reserve, refunds and fees as the user's history shows them, the events sent
    about it, and the alerts raised for it."""
    history = await pool.fetch(
        "SELECT id, kind, direction, asset_id, amount, status, created_at "
        "FROM ln_user_transactions WHERE user_id = $1 AND payment_hash = $2 ORDER BY id",
        user_id,
        payment_hash,
    )
    events = await pool.fetch(
        f"SELECT event_id, event_type, created_at, {_DELIVERIES} FROM outbox o "  # noqa: S608 (a constant)
        "WHERE user_id = $1 AND payload->>'payment_hash' = $2 ORDER BY user_seq LIMIT $3",
        user_id,
        payment_hash,
        PAGE_ROWS,
    )
    alerts = await pool.fetch(
        "SELECT id, kind, details, created_at, resolved_at FROM alerts "
        "WHERE payment_hash = $1 ORDER BY id",
        payment_hash,
    )
    return {"history": history, "events": events, "alerts": alerts}


async def find_user(pool: asyncpg.Pool, query: str) -> int | None:
    """The user a search names: a Telegram id or vn_ id, a payment hash (an invoice made for
    the user or a payment the user made), or a Lightning Address (name or name@domain)."""
    text = query.strip()
    if match := _USER.fullmatch(text):
        user_id = int(match[1])
        if user_id > MAX_USER_ID:
            return None
        found = await pool.fetchval("SELECT user_id FROM virtual_nodes WHERE user_id = $1", user_id)
        return int(found) if found is not None else None
    if _HASH.fullmatch(text.lower()):
        found = await pool.fetchval(
            "SELECT coalesce((SELECT user_id FROM ln_invoices WHERE payment_hash = $1), "
            "(SELECT user_id FROM ln_payments WHERE payment_hash = $1 ORDER BY id DESC LIMIT 1))",
            text.lower(),
        )
        return int(found) if found is not None else None
    if match := _ADDRESS.fullmatch(text.lower()):
        found = await pool.fetchval(
            "SELECT user_id FROM ln_addresses WHERE name = $1 ORDER BY id DESC LIMIT 1",
            match[1],
        )
        return int(found) if found is not None else None
    return None


async def user_page(pool: asyncpg.Pool, user_id: int) -> dict[str, object] | None:
    node = await pool.fetchrow(
        "SELECT user_id, node_id, pubkey, created_at FROM virtual_nodes WHERE user_id = $1",
        user_id,
    )
    if node is None:
        return None
    balances = await pool.fetch(
        "SELECT asset_id, spendable, pending, updated_at FROM ln_user_balances "
        "WHERE user_id = $1 ORDER BY asset_id <> 'BTC', asset_id",
        user_id,
    )
    history = await pool.fetch(
        "SELECT id, kind, direction, asset_id, amount, counterparty, memo, status, "
        "payment_hash, created_at FROM ln_user_transactions WHERE user_id = $1 "
        "ORDER BY id DESC LIMIT $2",
        user_id,
        USER_ROWS,
    )
    payments = await pool.fetch(
        "SELECT id, payment_hash, amount_msat, asset_id, asset_amount, status, created_at "
        "FROM ln_payments WHERE user_id = $1 ORDER BY id DESC LIMIT $2",
        user_id,
        USER_ROWS,
    )
    lndhub = await pool.fetch(
        "SELECT id, scope, login, generation, created_at, rotated_at FROM lndhub_accounts "
        "WHERE user_id = $1 ORDER BY id",
        user_id,
    )
    addresses = await pool.fetch(
        "SELECT name, claimed_at, released_at FROM ln_addresses WHERE user_id = $1 "
        "ORDER BY id DESC LIMIT 10",
        user_id,
    )
    events = await pool.fetch(
        f"SELECT event_id, event_type, user_seq, created_at, {_DELIVERIES} "  # noqa: S608 (a constant)
        "FROM outbox o "
        "WHERE user_id = $1 ORDER BY user_seq DESC LIMIT $2",
        user_id,
        USER_ROWS,
    )
    return {
        "node": node,
        "balances": balances,
        "history": history,
        "payments": payments,
        "lndhub": lndhub,
        "addresses": addresses,
        "events": events,
    }


async def alerts(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT id, kind, payment_hash, details, created_at, resolved_at FROM alerts "
        "ORDER BY id DESC LIMIT $1",
        PAGE_ROWS,
    )


async def keys(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT id, name, scope, key_prefix, created_at, revoked_at, last_used_at "
        "FROM api_keys ORDER BY revoked_at IS NOT NULL, id DESC LIMIT $1",
        PAGE_ROWS,
    )


async def actions(pool: asyncpg.Pool, limit: int = PAGE_ROWS) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT id, action, target, details, reason, key_name, outcome, outcome_detail, "
        "created_at, finished_at FROM console_actions ORDER BY id DESC LIMIT $1",
        limit,
    )
