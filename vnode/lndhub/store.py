"""All SQL of the LndHub API: accounts and tokens (migration 0014), and the read-only pages of
a user's payments and invoices that /gettxs and /getuserinvoices show. Nothing here moves
money; payments and invoices are made by vnode/payments/ as for every other caller."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from vnode.domain.ids import BTC


@dataclass(frozen=True)
class Account:
    id: int
    user_id: int
    scope: str  # "spend" or "invoice"
    generation: int

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Account:
        return cls(row["id"], row["user_id"], row["scope"], row["generation"])


async def upsert_account(
    pool: asyncpg.Pool, user_id: int, scope: str, login: str, password_hash: str
) -> Account:
    """Create the (user, scope) account, or rotate it: a new login and password, and a new
    generation that revokes every token issued before, all in one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "INSERT INTO lndhub_accounts AS a (user_id, scope, login, password_hash) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, scope) DO UPDATE SET "
            "login = excluded.login, password_hash = excluded.password_hash, "
            "generation = a.generation + 1, rotated_at = now() "
            "RETURNING a.id, a.user_id, a.scope, a.generation",
            user_id,
            scope,
            login,
            password_hash,
        )
        assert row is not None
        account = Account.from_row(row)
        await conn.execute("DELETE FROM lndhub_tokens WHERE account_id = $1", account.id)
    return account


async def account_by_login(pool: asyncpg.Pool, login: str) -> tuple[Account, str] | None:
    row = await pool.fetchrow(
        "SELECT a.id, a.user_id, a.scope, a.generation, a.password_hash "
        "FROM lndhub_accounts a WHERE a.login = $1",
        login,
    )
    return None if row is None else (Account.from_row(row), row["password_hash"])


async def store_tokens(
    pool: asyncpg.Pool,
    account: Account,
    access_hash: bytes,
    access_s: int,
    refresh_hash: bytes,
    refresh_s: int,
) -> bool:
    """Record a token pair for the account's generation; False when the account was rotated
    since it was read (the pair would be revoked at once, so none is handed out)."""
    async with pool.acquire() as conn, conn.transaction():
        current = await conn.fetchval(
            "SELECT generation FROM lndhub_accounts WHERE id = $1 FOR SHARE", account.id
        )
        if current != account.generation:
            return False
        # Expired tokens of the account are dropped here, so the table stays small.
        await conn.execute(
            "DELETE FROM lndhub_tokens WHERE account_id = $1 AND expires_at < now()", account.id
        )
        await conn.executemany(
            "INSERT INTO lndhub_tokens (token_hash, account_id, kind, generation, expires_at) "
            "VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
            [
                (access_hash, account.id, "access", account.generation, float(access_s)),
                (refresh_hash, account.id, "refresh", account.generation, float(refresh_s)),
            ],
        )
    return True


async def account_by_token(pool: asyncpg.Pool, token_hash: bytes, kind: str) -> Account | None:
    """The account of a live token of this kind: not expired, of the current generation."""
    row = await pool.fetchrow(
        "SELECT a.id, a.user_id, a.scope, a.generation "
        "FROM lndhub_tokens t JOIN lndhub_accounts a ON a.id = t.account_id "
        "WHERE t.token_hash = $1 AND t.kind = $2 AND t.expires_at > now() "
        "AND t.generation = a.generation",
        token_hash,
        kind,
    )
    return None if row is None else Account.from_row(row)


async def use_refresh_token(pool: asyncpg.Pool, token_hash: bytes) -> Account | None:
    """Consume a live refresh token (each works once) and return its account."""
    row = await pool.fetchrow(
        "WITH used AS (DELETE FROM lndhub_tokens WHERE token_hash = $1 AND kind = 'refresh' "
        "AND expires_at > now() RETURNING account_id, generation) "
        "SELECT a.id, a.user_id, a.scope, a.generation "
        "FROM used JOIN lndhub_accounts a ON a.id = used.account_id "
        "WHERE used.generation = a.generation",
        token_hash,
    )
    return None if row is None else Account.from_row(row)


async def spendable_msat(pool: asyncpg.Pool, user_id: int) -> int:
    """What the user can spend now in BTC: settled minus what in-flight payments hold."""
    value = await pool.fetchval(
        "SELECT spendable FROM ln_user_balances WHERE user_id = $1 AND asset_id = $2",
        user_id,
        BTC,
    )
    return int(value or 0)


async def payments_page(
    pool: asyncpg.Pool, user_id: int, limit: int, offset: int
) -> list[asyncpg.Record]:
    """The user's BTC payments that succeeded or are in flight, newest first."""
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT payment_hash, invoice, status, amount_msat, fee_msat, fee_reserve_msat, "
        "preimage, extract(epoch FROM created_at)::bigint AS created_s FROM ln_payments "
        "WHERE user_id = $1 AND asset_id IS NULL AND status IN ('succeeded', 'pending') "
        "ORDER BY id DESC LIMIT $2 OFFSET $3",
        user_id,
        limit,
        offset,
    )
    return rows


async def invoices_page(
    pool: asyncpg.Pool, user_id: int, limit: int, offset: int
) -> list[asyncpg.Record]:
    """The user's BTC invoices, newest first, with what was received for each."""
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT i.payment_hash, i.invoice, i.amount_msat, i.description, i.status, "
        "extract(epoch FROM i.created_at)::bigint AS created_s, "
        "extract(epoch FROM i.expires_at)::bigint AS expires_s, "
        "(SELECT sum(r.amount_msat) FROM ln_receipts r WHERE r.payment_hash = i.payment_hash) "
        "AS received_msat FROM ln_invoices i WHERE i.user_id = $1 AND i.asset_id = $2 "
        "ORDER BY i.created_at DESC, i.payment_hash LIMIT $3 OFFSET $4",
        user_id,
        BTC,
        limit,
        offset,
    )
    return rows


async def invoice_paid(pool: asyncpg.Pool, user_id: int, payment_hash: str) -> bool | None:
    """Whether the user's invoice of this hash is paid, or a payment of theirs of this hash
    succeeded; None when the user has neither."""
    row = await pool.fetchrow(
        "SELECT (SELECT status = 'paid' FROM ln_invoices WHERE payment_hash = $2 "
        "AND user_id = $1) AS invoice_paid, (SELECT bool_or(status = 'succeeded') "
        "FROM ln_payments WHERE payment_hash = $2 AND user_id = $1) AS payment_paid",
        user_id,
        payment_hash,
    )
    assert row is not None
    if row["invoice_paid"] is None and row["payment_paid"] is None:
        return None
    return bool(row["invoice_paid"]) or bool(row["payment_paid"])
