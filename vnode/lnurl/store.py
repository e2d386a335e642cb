"""All SQL of Lightning Addresses, as typed functions (the claim is a database function,
vnode/db/functions/70_addresses.sql)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import orjson

from vnode.ledger.calls import LedgerAnswer, call_money_function


@dataclass(frozen=True)
class Resolved:
    """Whom a name pays now, and the address row the invoices name."""

    address_id: int
    user_id: int


@dataclass(frozen=True)
class AddressInvoice:
    """An invoice made through an address, as LUD-21 verify reports it."""

    invoice: str
    paid: bool
    paid_through_node: bool


async def claim(pool: asyncpg.Pool, user_id: int, name: str, hold_s: int) -> LedgerAnswer:
    return await call_money_function(
        pool,
        "SELECT code, detail, result FROM vnode_address_claim($1, $2, $3)",
        user_id,
        name,
        hold_s,
    )


async def current_address(pool: asyncpg.Pool, user_id: int) -> dict[str, object] | None:
    """The user's current address as vnode_address_json shows it, or None."""
    text = await pool.fetchval(
        "SELECT vnode_address_json(a)::text FROM ln_addresses a "
        "WHERE a.user_id = $1 AND a.released_at IS NULL",
        user_id,
    )
    if text is None:
        return None
    decoded = orjson.loads(text)
    assert isinstance(decoded, dict)
    return decoded


async def resolve(pool: asyncpg.Pool, name: str) -> Resolved | None:
    row = await pool.fetchrow("SELECT address_id, user_id FROM vnode_address_resolve($1)", name)
    if row is None or row["address_id"] is None:
        return None
    return Resolved(row["address_id"], row["user_id"])


async def address_invoice(pool: asyncpg.Pool, payment_hash: str) -> AddressInvoice | None:
    """An invoice made through an address (others are not LUD-21's to report)."""
    row = await pool.fetchrow(
        "SELECT i.invoice, i.status = 'paid' AS paid, EXISTS (SELECT 1 FROM ln_receipts r "
        "WHERE r.payment_hash = i.payment_hash AND r.source = 'node') AS through_node "
        "FROM ln_invoices i WHERE i.payment_hash = $1 AND i.address_id IS NOT NULL",
        payment_hash,
    )
    if row is None:
        return None
    return AddressInvoice(row["invoice"], row["paid"], row["through_node"])
