"""The external payment's money functions called directly (docs/adr/0031): the reserve claims
the payment for sending and answers the payment as the resolver reads it; the system accounts,
moved last, end as the journal says, also with payments finishing side by side."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

import asyncpg

from tests.integration.ledger.support import NO_KEY, credit
from vnode.ledger.audit import AuditReport, run_audit
from vnode.payments import store

PAYER = 7_100_000_001
AMOUNT = 1_000
RESERVE = 50_010


async def audit(pool: asyncpg.Pool) -> AuditReport:
    async with pool.acquire() as conn:
        return await run_audit(conn)


def _invoice() -> tuple[str, str]:
    """(preimage, payment hash) of a new outside invoice."""
    preimage = os.urandom(32).hex()
    return preimage, hashlib.sha256(bytes.fromhex(preimage)).hexdigest()


async def _reserve(pool: asyncpg.Pool, payment_hash: str) -> store.Reserved:
    return await store.reserve_payment(
        pool,
        PAYER,
        payment_hash,
        "lnbcrt1outside",
        AMOUNT,
        None,
        None,
        RESERVE,
        time.time() + 3600,
        NO_KEY,
        b"request",
    )


async def _accounts(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT account_id, balance FROM system_balances WHERE asset_id = 'BTC' "
        "AND account_id IN (vnode_account('payments_in_flight'), "
        "vnode_account('lightning_outbound'), vnode_account('routing_fees'))"
    )
    names = {-6: "in_flight", -3: "outbound", -4: "fees"}
    return {names[row["account_id"]]: row["balance"] for row in rows}


async def test_the_reserve_claims_the_payment_and_answers_what_the_resolver_reads(
    pool: asyncpg.Pool,
) -> None:
    await credit(pool, PAYER, 1_000_000)
    _, payment_hash = _invoice()
    reserved = await _reserve(pool, payment_hash)
    assert reserved.answer.code == "pending"
    assert reserved.pending is not None
    # The first check after the send uses this instead of reading the row: it must be what
    # pending_payment reads, to the microsecond (the stale-failure rule compares against it).
    assert reserved.pending == await store.pending_payment(pool, reserved.pending.id)
    sent_at = await pool.fetchval(
        "SELECT sent_at = attempt_started_at FROM ln_payments WHERE id = $1", reserved.pending.id
    )
    assert sent_at is True  # claimed for sending by the reserve itself
    balance = await pool.fetchrow(
        "SELECT spendable, pending FROM ln_user_balances WHERE user_id = $1 AND asset_id = 'BTC'",
        PAYER,
    )
    assert balance is not None
    assert (balance["spendable"], balance["pending"]) == (
        1_000_000 - AMOUNT - RESERVE,
        AMOUNT + RESERVE,
    )
    assert await _accounts(pool) == {"in_flight": AMOUNT + RESERVE}
    assert (await audit(pool)).clean


async def test_a_refused_reserve_claims_nothing(pool: asyncpg.Pool) -> None:
    await credit(pool, PAYER, AMOUNT)  # less than amount + reserve
    _, payment_hash = _invoice()
    reserved = await _reserve(pool, payment_hash)
    assert reserved.answer.code == "insufficient_balance"
    assert reserved.pending is None
    assert await pool.fetchval("SELECT count(*) FROM ln_payments") == 0
    assert await _accounts(pool) == {}


async def test_concurrent_payments_move_the_system_accounts_as_the_journal_says(
    pool: asyncpg.Pool,
) -> None:
    await credit(pool, PAYER, 10_000_000)
    invoices = [_invoice() for _ in range(24)]

    async def pay(index: int, preimage: str, payment_hash: str) -> None:
        reserved = await _reserve(pool, payment_hash)
        assert reserved.pending is not None, reserved.answer
        if index % 3 == 0:  # a final failure: refunded
            answer = await store.finish_payment(
                pool, reserved.pending.id, "failed", None, None, "test"
            )
        else:
            answer = await store.finish_payment(
                pool, reserved.pending.id, "succeeded", None, preimage, None
            )
        assert answer.code == "ok"

    await asyncio.gather(*(pay(i, pre, h) for i, (pre, h) in enumerate(invoices)))
    succeeded = sum(1 for i in range(len(invoices)) if i % 3 != 0)
    # The node reports no fee: a success is charged the whole reserve.
    assert await _accounts(pool) == {
        "in_flight": 0,
        "outbound": succeeded * AMOUNT,
        "fees": succeeded * RESERVE,
    }
    balance = await pool.fetchrow(
        "SELECT spendable, pending FROM ln_user_balances WHERE user_id = $1 AND asset_id = 'BTC'",
        PAYER,
    )
    assert balance is not None
    assert (balance["spendable"], balance["pending"]) == (
        10_000_000 - succeeded * (AMOUNT + RESERVE),
        0,
    )
    report = await audit(pool)
    assert report.clean, report.differences
