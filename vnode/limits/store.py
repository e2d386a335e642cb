"""Where limits are kept and read: user_limits (migration 0016), row 0 the server's defaults
(VNODE_LIMIT_* settings), the other rows users' overrides. The checks that refuse a movement are
in the money functions (vnode/db/functions/35_limits.sql); this module only reads and writes
the values, and asks the database's own check for invoice creation."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from vnode.api import models
from vnode.db.pool import DbConnection
from vnode.domain.ids import node_id
from vnode.limits.refusal import LIMIT_NAMES, LimitRefusal, Limits
from vnode.settings import Settings

DEFAULTS_ROW = 0  # user_limits.user_id of the server's defaults

_COLUMNS = ", ".join(LIMIT_NAMES)
_PLACEHOLDERS = ", ".join(f"${i}" for i in range(2, len(LIMIT_NAMES) + 2))
_UPSERT = (
    f"INSERT INTO user_limits (user_id, {_COLUMNS}) VALUES ($1, {_PLACEHOLDERS}) "  # noqa: S608
    "ON CONFLICT (user_id) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in LIMIT_NAMES)
    + ", updated_at = now()"
)
_READ = f"""
SELECT d.*, o.*, v.*, s.day_msat AS sent_24h, s.month_msat AS sent_30d,
       r.day_msat AS received_24h, r.month_msat AS received_30d,
       (SELECT coalesce(sum(b.spendable + b.pending), 0) FROM ln_user_balances b
        WHERE b.user_id = $1 AND b.asset_id = 'BTC') AS balance
FROM (SELECT {", ".join(f"{n} AS d_{n}" for n in LIMIT_NAMES)}
      FROM (SELECT 1) one LEFT JOIN user_limits ON user_id = 0) d,
     (SELECT {", ".join(f"{n} AS o_{n}" for n in LIMIT_NAMES)}
      FROM (SELECT 1) one LEFT JOIN user_limits ON user_id = $1) o,
     (SELECT {_COLUMNS} FROM vnode_limits_of($1)) v,
     vnode_limit_volumes($1, 'send') s,
     vnode_limit_volumes($1, 'receive') r
"""  # noqa: S608 (names from LIMIT_NAMES only)


@dataclass(frozen=True)
class Usage:
    """What a user used of the rolling windows and holds, in msat of BTC."""

    sent_24h_msat: int
    sent_30d_msat: int
    received_24h_msat: int
    received_30d_msat: int
    balance_msat: int


@dataclass(frozen=True)
class UserLimits:
    """A user's limits: the `effective` ones (override, else default, else None: off), the
    user's `overrides` and the server's `defaults`, with the user's `usage` now."""

    user_id: int
    effective: Limits
    overrides: Limits
    defaults: Limits
    usage: Usage

    def send_headroom_msat(self) -> int | None:
        """The most the user may send in one payment now (fees aside), or None: no limit.
        The balance is not counted: that is insufficient_balance's business."""
        e, u = self.effective, self.usage
        room = [
            e.send_max_msat,
            _left(e.send_24h_msat, u.sent_24h_msat),
            _left(e.send_30d_msat, u.sent_30d_msat),
        ]
        return _smallest(room)

    def receive_headroom_msat(self) -> int | None:
        """The most the user may receive in one payment now, or None: no limit (the bound an
        LNURL maxSendable takes)."""
        e, u = self.effective, self.usage
        room = [
            e.receive_max_msat,
            _left(e.balance_max_msat, u.balance_msat),
            _left(e.receive_24h_msat, u.received_24h_msat),
            _left(e.receive_30d_msat, u.received_30d_msat),
        ]
        return _smallest(room)


def _left(limit: int | None, used: int) -> int | None:
    return None if limit is None else max(limit - used, 0)


def _smallest(values: list[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


async def user_limits(pool: asyncpg.Pool, user_id: int) -> UserLimits:
    """A user's effective limits, overrides, the defaults and the usage now (one query).

    This is the one Python reader of a user's limits: LNURL's min/maxSendable, the admin API
    and `vnode limits show` use it."""
    row = await pool.fetchrow(_READ, user_id)
    assert row is not None
    return UserLimits(
        user_id=user_id,
        effective=Limits.from_mapping(row),
        overrides=Limits(**{n: row[f"o_{n}"] for n in LIMIT_NAMES}),
        defaults=Limits(**{n: row[f"d_{n}"] for n in LIMIT_NAMES}),
        usage=Usage(
            sent_24h_msat=int(row["sent_24h"]),
            sent_30d_msat=int(row["sent_30d"]),
            received_24h_msat=int(row["received_24h"]),
            received_30d_msat=int(row["received_30d"]),
            balance_msat=int(row["balance"]),
        ),
    )


async def set_overrides(
    pool: asyncpg.Pool, user_id: int, changes: dict[str, int | None]
) -> UserLimits:
    """Change some of a user's overrides (None: back to the default); the others stay. A user
    left with no override has no row, so the money functions' gate stays one probe."""
    unknown = set(changes) - set(LIMIT_NAMES)
    if unknown or user_id <= DEFAULTS_ROW:
        raise ValueError(f"not a user or not limits: {user_id}, {sorted(unknown)}")
    async with pool.acquire() as conn, conn.transaction():
        # The row first (so that two concurrent changes serialise on its lock), then merge.
        await conn.execute(
            "INSERT INTO user_limits (user_id) VALUES ($1) ON CONFLICT DO NOTHING", user_id
        )
        row = await conn.fetchrow(
            "SELECT * FROM user_limits WHERE user_id = $1 FOR UPDATE", user_id
        )
        await _write(conn, user_id, Limits.from_mapping(row).updated(changes))
    return await user_limits(pool, user_id)


async def write_defaults(pool: asyncpg.Pool, defaults: Limits) -> None:
    """Make row 0 the server's defaults (every `vnode serve` does at start, from settings)."""
    async with pool.acquire() as conn, conn.transaction():
        await _write(conn, DEFAULTS_ROW, defaults)


async def _write(conn: DbConnection, user_id: int, limits: Limits) -> None:
    if limits.empty:
        await conn.execute("DELETE FROM user_limits WHERE user_id = $1", user_id)
    else:
        await conn.execute(_UPSERT, user_id, *(getattr(limits, n) for n in LIMIT_NAMES))


def defaults_from_settings(settings: Settings) -> Limits:
    """The VNODE_LIMIT_* settings (unset: off)."""
    return Limits(**{name: getattr(settings, f"limit_{name}") for name in LIMIT_NAMES})


async def receive_refusal(
    pool: asyncpg.Pool, user_id: int, amount_msat: int
) -> LimitRefusal | None:
    """Would the user's receive limits refuse `amount_msat` now? For invoice creation, where a
    receipt can still be refused: once paid, a receipt is always credited (docs/LIMITS.md).
    The database's own check, so the rule has one home."""
    row = await pool.fetchrow(
        "SELECT c.code, c.detail FROM vnode_limit_check($1, 'receive', $2, 0) c "
        "WHERE vnode_limits_apply($1)",
        user_id,
        amount_msat,
    )
    if row is None or row["code"] is None:
        return None
    return LimitRefusal.from_detail(row["detail"])


def limits_answer(found: UserLimits) -> models.UserLimits:
    """The API's view of a user's limits (GET /admin/limits/{user_id}, `vnode limits show`)."""
    usage = found.usage
    return models.UserLimits(
        user_id=found.user_id,
        node_id=node_id(found.user_id),
        effective=models.LimitValues(**found.effective.as_dict()),
        overrides=models.LimitValues(**found.overrides.as_dict()),
        defaults=models.LimitValues(**found.defaults.as_dict()),
        usage=models.LimitUsage(
            sent_24h_msat=usage.sent_24h_msat,
            sent_30d_msat=usage.sent_30d_msat,
            received_24h_msat=usage.received_24h_msat,
            received_30d_msat=usage.received_30d_msat,
            balance_msat=usage.balance_msat,
        ),
        send_headroom_msat=found.send_headroom_msat(),
        receive_headroom_msat=found.receive_headroom_msat(),
    )
