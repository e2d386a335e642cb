"""`vnode audit`: clean on an honest ledger, loud on every kind of tampering, one snapshot."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import asyncpg
import pytest

from tests.integration.ledger.support import NO_KEY, RGB, SIGNER
from vnode.ledger.admin import AdminCommand, AdminMove, admin_move
from vnode.ledger.audit import AuditReport, run_audit
from vnode.ledger.transfers import TransferCommand, transfer

ALICE, BOB, CAROL = 2_001, 2_002, 2_003
CHECKS = {"spendable = unspent coins", "balance = journal", "spendable = history", "conservation"}


async def admin(
    pool: asyncpg.Pool, move: AdminMove, user: int, amount: int, asset: str = "BTC"
) -> None:
    outcome = await admin_move(pool, SIGNER, AdminCommand(move, user, asset, amount, "t"), NO_KEY)
    assert outcome.status == 200, outcome.body


async def send(pool: asyncpg.Pool, src: int, dst: int, amount: int, asset: str = "BTC") -> None:
    outcome = await transfer(pool, SIGNER, TransferCommand(src, dst, asset, amount, None), NO_KEY)
    assert outcome.status == 200, outcome.body


async def audit(pool: asyncpg.Pool) -> AuditReport:
    async with pool.acquire() as conn:
        return await run_audit(conn)


@pytest.fixture
async def busy(pool: asyncpg.Pool) -> asyncpg.Pool:
    return await fill(pool)


async def fill(pool: asyncpg.Pool) -> asyncpg.Pool:
    """A ledger with credits, transfers and debits in BTC and an RGB asset."""
    await admin(pool, AdminMove.CREDIT, ALICE, 10_000)
    await admin(pool, AdminMove.CREDIT, BOB, 5_000)
    await admin(pool, AdminMove.CREDIT, ALICE, 300, RGB)
    await send(pool, ALICE, BOB, 2_500)
    await send(pool, BOB, CAROL, 7_000)
    await send(pool, ALICE, CAROL, 100, RGB)
    await admin(pool, AdminMove.DEBIT, CAROL, 1_000)
    await admin(pool, AdminMove.DEBIT, ALICE, 50, RGB)
    return pool


async def test_audit_clean_after_mixed_activity(busy: asyncpg.Pool) -> None:
    report = await audit(busy)
    assert report.clean
    assert report.differences == []
    assert set(report.checked) >= CHECKS
    assert report.checked["spendable = unspent coins"] == 5  # (user, asset) pairs held
    totals = {t.asset_id: t for t in report.totals}
    assert set(totals) == {"BTC", RGB}
    assert (totals["BTC"].users_spendable, totals["BTC"].system) == (
        14_000,
        {"operator_funding": -14_000},
    )
    assert (totals[RGB].users_spendable, totals[RGB].system) == (250, {"operator_funding": -250})
    assert all(t.sum == 0 for t in report.totals)


async def test_audit_clean_on_empty_ledger(pool: asyncpg.Pool) -> None:
    report = await audit(pool)
    assert report.clean
    assert report.totals == []


@dataclass(frozen=True)
class Tamper:
    name: str
    sql: tuple[str, ...]
    checks: frozenset[str]  # exactly the checks that must report a difference
    first: tuple[str, int, str, int, int] | None = None  # one expected Difference, in full


_BTC_TRANSFER = "(SELECT min(id) FROM virtual_transactions WHERE kind = 'transfer')"
_ALICE_CREDIT = (
    "(SELECT min(id) FROM virtual_transactions WHERE kind = 'admin_credit' "
    f"AND to_account = {ALICE})"
)
TAMPERS = [
    Tamper(
        "cached balance raised",
        (
            f"UPDATE ln_user_balances SET spendable = spendable + 1 WHERE user_id = {ALICE} "
            "AND asset_id = 'BTC'",
        ),
        frozenset(CHECKS),
        ("spendable = unspent coins", ALICE, "BTC", 7_500, 7_501),
    ),
    Tamper(
        "pending invented",  # a reserve no pending payment accounts for
        (f"UPDATE ln_user_balances SET pending = 9 WHERE user_id = {BOB} AND asset_id = 'BTC'",),
        frozenset({"pending = pending payments"}),
        ("pending = pending payments", BOB, "BTC", 0, 9),
    ),
    Tamper(
        "coin inserted without journal",
        (
            "INSERT INTO user_utxos (user_id, asset_id, amount, created_tx) "
            f"VALUES ({BOB}, 'BTC', 42, {_BTC_TRANSFER})",
        ),
        frozenset({"spendable = unspent coins"}),
        ("spendable = unspent coins", BOB, "BTC", 542, 500),
    ),
    Tamper(
        "spent coin un-spent",
        (
            "ALTER TABLE user_utxos DISABLE TRIGGER USER",
            f"UPDATE user_utxos SET spent_tx = NULL WHERE user_id = {CAROL} "
            "AND spent_tx IS NOT NULL",
            "ALTER TABLE user_utxos ENABLE TRIGGER USER",
        ),
        frozenset({"spendable = unspent coins"}),
        ("spendable = unspent coins", CAROL, "BTC", 13_000, 6_000),
    ),
    Tamper(
        "unspent coin grown",
        (
            "ALTER TABLE user_utxos DISABLE TRIGGER USER",
            f"UPDATE user_utxos SET amount = amount + 5 WHERE user_id = {CAROL} "
            f"AND asset_id = '{RGB}'",
            "ALTER TABLE user_utxos ENABLE TRIGGER USER",
        ),
        frozenset({"spendable = unspent coins"}),
        ("spendable = unspent coins", CAROL, RGB, 105, 100),
    ),
    Tamper(
        "journal amount changed",
        (f"UPDATE virtual_transactions SET amount = amount + 7 WHERE id = {_BTC_TRANSFER}",),
        frozenset({"balance = journal"}),
        ("balance = journal", ALICE, "BTC", 7_493, 7_500),
    ),
    Tamper(
        "journal row removed",
        (
            "SET session_replication_role = replica",  # skips the foreign keys to it
            f"DELETE FROM virtual_transactions WHERE id = {_ALICE_CREDIT}",
            "SET session_replication_role = DEFAULT",
        ),
        frozenset({"balance = journal"}),
        ("balance = journal", ALICE, "BTC", -2_500, 7_500),
    ),
    Tamper(
        "journal row invented",
        (
            "INSERT INTO virtual_transactions (kind, asset_id, from_account, to_account, amount) "
            f"VALUES ('transfer', 'BTC', {CAROL}, {ALICE}, 11)",
        ),
        frozenset({"balance = journal"}),
        ("balance = journal", ALICE, "BTC", 7_511, 7_500),
    ),
    Tamper(
        "system balance changed",
        ("UPDATE system_balances SET balance = balance + 3 WHERE asset_id = 'BTC'",),
        frozenset({"balance = journal", "conservation"}),
        ("conservation", 0, "BTC", 0, 3),
    ),
    Tamper(
        "history amount changed",
        (
            f"UPDATE ln_user_transactions SET amount = amount + 2 WHERE user_id = {BOB} "
            "AND direction = 'in' AND kind = 'transfer'",
        ),
        frozenset({"spendable = history"}),
        ("spendable = history", BOB, "BTC", 502, 500),
    ),
]


@pytest.mark.parametrize("case", TAMPERS, ids=[t.name for t in TAMPERS])
async def test_audit_detects_tampering(busy: asyncpg.Pool, case: Tamper) -> None:
    assert (await audit(busy)).clean
    async with busy.acquire() as conn:
        for sql in case.sql:
            await conn.execute(sql)

    report = await audit(busy)

    assert not report.clean
    assert {d.check for d in report.differences} == case.checks
    if case.first is not None:
        found = [(d.check, d.account, d.asset_id, d.expected, d.found) for d in report.differences]
        assert case.first in found, found


async def test_audit_is_clean_during_concurrent_transfers(
    pool: asyncpg.Pool, fresh_db: str
) -> None:
    users = [3_001, 3_002, 3_003, 3_004, 3_005]
    for user in users:
        await admin(pool, AdminMove.CREDIT, user, 1_000_000)
    rng = random.Random(7)
    pairs = [rng.sample(users, 2) for _ in range(200)]
    count_sql = "SELECT count(*) FROM virtual_transactions WHERE kind = 'transfer'"
    # Its own connection, so the auditor does not queue behind the transfers for the pool.
    auditor = await asyncpg.connect(fresh_db)
    work = asyncio.gather(*(send(pool, a, b, rng.randint(1, 1_000)) for a, b in pairs))
    seen_mid_flight: set[int] = set()  # transfer counts committed when an audit started
    try:
        while not work.done():
            committed = await auditor.fetchval(count_sql)
            report = await run_audit(auditor)
            assert report.differences == [], f"after {committed} transfers"
            assert all(t.sum == 0 for t in report.totals)
            if 0 < committed < 200:
                seen_mid_flight.add(committed)
    finally:
        await work
        await auditor.close()

    assert await pool.fetchval(count_sql) == 200
    assert len(seen_mid_flight) >= 2, seen_mid_flight  # it did audit a ledger in motion
    assert (await audit(pool)).clean


async def test_progress_is_reported_check_by_check(busy: asyncpg.Pool) -> None:
    """`vnode audit`'s progress bar: the callback hears of every check, in order, before it runs,
    then of the totals; the report counts the rows each check examined."""
    heard: list[tuple[str, int, int]] = []
    async with busy.acquire() as conn:
        report = await run_audit(conn, lambda name, n, of: heard.append((name, n, of)))
    names = list(report.checked)
    assert heard == [(name, n, len(names)) for n, name in enumerate(names)] + [
        ("totals", len(names), len(names))
    ]
    assert set(names) >= CHECKS
    assert report.clean
    # ALICE, BOB and CAROL hold BTC, ALICE and CAROL the RGB asset.
    assert report.checked["spendable = unspent coins"] == 5
