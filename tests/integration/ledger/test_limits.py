"""Per-user limits in the money functions (vnode/db/functions/35_limits.sql; docs/LIMITS.md),
on a fresh database: each limit kind, overrides against defaults, the refusal's detail (which
limit, headroom), that a refusal changes nothing, and real concurrent calls that only some of
which fit a limit."""

from __future__ import annotations

import asyncio
import hashlib

import asyncpg
import pytest

from tests.integration.ledger.support import NO_KEY, RGB, SIGNER, credit
from vnode.ledger.audit import run_audit
from vnode.ledger.calls import Idempotency, LedgerAnswer
from vnode.ledger.transfers import TransferCommand, transfer
from vnode.limits.refusal import LimitRefusal, Limits
from vnode.limits.store import receive_refusal, set_overrides, user_limits, write_defaults

ALICE, BOB, CAROL = 2_001, 2_002, 2_003
MONEY_TABLES = (
    "virtual_nodes",
    "virtual_transactions",
    "user_utxos",
    "ln_user_balances",
    "ln_user_transactions",
    "system_balances",
    "outbox",
    "ln_payments",
    "ln_receipts",
    "ln_invoices",
)


async def send(
    pool: asyncpg.Pool,
    src: int,
    dst: int,
    amount: int,
    asset: str = "BTC",
    idem: Idempotency = NO_KEY,
) -> LedgerAnswer:
    return await transfer(pool, SIGNER, TransferCommand(src, dst, asset, amount, None), idem)


async def snapshot(pool: asyncpg.Pool) -> dict[str, list[tuple[object, ...]]]:
    tables = {}
    for table in MONEY_TABLES:
        rows = await pool.fetch(f"SELECT * FROM {table}")  # fixed table names
        tables[table] = sorted((tuple(r.values()) for r in rows), key=repr)
    return tables


async def audit_clean(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        report = await run_audit(conn)
    assert report.clean, report.differences


def refusal(answer: LedgerAnswer) -> LimitRefusal:
    assert answer.code == "limit_exceeded", answer.body
    assert answer.status == 409
    found = answer.limit_refusal
    assert found is not None
    return found


async def refused_without_trace(pool: asyncpg.Pool, call: object) -> LimitRefusal:
    """Run the awaitable `call`, which must be refused limit_exceeded, and check that nothing
    in the money tables changed."""
    before = await snapshot(pool)
    assert asyncio.iscoroutine(call)
    answer = await call
    assert isinstance(answer, LedgerAnswer)
    found = refusal(answer)
    assert await snapshot(pool) == before
    return found


async def age_history(pool: asyncpg.Pool, user: int, hours: float) -> None:
    """Move the user's history and payments `hours` into the past (as if made then)."""
    for table in ("ln_user_transactions", "ln_payments"):
        await pool.execute(
            f"UPDATE {table} SET created_at = created_at - make_interval(secs => $2) "
            "WHERE user_id = $1",
            user,
            hours * 3600,
        )


# --- no limits ------------------------------------------------------------------------------


async def test_no_limits_no_rows_and_nothing_refused(pool: asyncpg.Pool) -> None:
    await credit(pool, ALICE, 10**12)
    assert (await send(pool, ALICE, BOB, 10**11)).code == "ok"
    assert await pool.fetchval("SELECT count(*) FROM user_limits") == 0
    assert not await pool.fetchval("SELECT vnode_limits_apply($1, $2)", ALICE, BOB)
    limits = await user_limits(pool, ALICE)
    assert limits.effective == Limits()
    assert limits.send_headroom_msat() is None
    assert limits.usage.sent_24h_msat == 10**11


async def test_defaults_with_nothing_set_leave_no_row(pool: asyncpg.Pool) -> None:
    await write_defaults(pool, Limits(send_max_msat=5))
    await write_defaults(pool, Limits())
    assert await pool.fetchval("SELECT count(*) FROM user_limits") == 0


# --- each limit kind ------------------------------------------------------------------------


async def test_send_max_default_refuses_larger_transfer_with_detail(pool: asyncpg.Pool) -> None:
    await credit(pool, ALICE, 10_000)
    await write_defaults(pool, Limits(send_max_msat=1_000))
    found = await refused_without_trace(pool, send(pool, ALICE, BOB, 1_001))
    assert found == LimitRefusal("send_max_msat", 1_000, 0, 1_001, 1_000)
    assert "send_max_msat" in refusal(await send(pool, ALICE, BOB, 1_001)).message
    assert (await send(pool, ALICE, BOB, 1_000)).code == "ok"


async def test_override_wins_over_default_both_ways(pool: asyncpg.Pool) -> None:
    await credit(pool, ALICE, 10_000)
    await credit(pool, CAROL, 10_000)
    await write_defaults(pool, Limits(send_max_msat=1_000))
    await set_overrides(pool, ALICE, {"send_max_msat": 5_000})
    await set_overrides(pool, CAROL, {"send_max_msat": 100})
    assert (await send(pool, ALICE, BOB, 4_000)).code == "ok"  # above the default
    found = refusal(await send(pool, CAROL, BOB, 101))  # below the default
    assert (found.limit, found.limit_msat) == ("send_max_msat", 100)
    # Cleared: back to the default.
    limits = await set_overrides(pool, ALICE, {"send_max_msat": None})
    assert limits.overrides == Limits() and limits.effective.send_max_msat == 1_000
    assert refusal(await send(pool, ALICE, BOB, 1_001)).limit_msat == 1_000
    assert await pool.fetchval("SELECT count(*) FROM user_limits WHERE user_id = $1", ALICE) == 0


async def test_receive_max_refuses_the_transfer_to_the_recipient(pool: asyncpg.Pool) -> None:
    await credit(pool, ALICE, 10_000)
    await credit(pool, BOB, 1)
    await set_overrides(pool, BOB, {"receive_max_msat": 500})
    found = await refused_without_trace(pool, send(pool, ALICE, BOB, 501))
    assert found == LimitRefusal("receive_max_msat", None, None, 501, None, "recipient")
    # The figures are the recipient's own: the sender is not told them; the user is.
    assert await receive_refusal(pool, BOB, 501) == LimitRefusal(
        "receive_max_msat", 500, 0, 501, 500
    )
    assert (await send(pool, ALICE, BOB, 500)).code == "ok"


async def test_balance_ceiling_counts_the_balance_held(pool: asyncpg.Pool) -> None:
    await credit(pool, ALICE, 10_000)
    await credit(pool, BOB, 700)
    await set_overrides(pool, BOB, {"balance_max_msat": 1_000})
    found = await refused_without_trace(pool, send(pool, ALICE, BOB, 301))
    assert found == LimitRefusal("balance_max_msat", None, None, 301, None, "recipient")
    assert await receive_refusal(pool, BOB, 301) == LimitRefusal(
        "balance_max_msat", 1_000, 700, 301, 300
    )
    assert (await send(pool, ALICE, BOB, 300)).code == "ok"
    assert refusal(await send(pool, ALICE, BOB, 1)).limit == "balance_max_msat"
    assert (await user_limits(pool, BOB)).receive_headroom_msat() == 0


async def test_send_24h_counts_past_volume_plus_this_amount(pool: asyncpg.Pool) -> None:
    await credit(pool, ALICE, 10_000)
    await set_overrides(pool, ALICE, {"send_24h_msat": 1_000})
    # One transfer alone above the limit is refused: the current amount counts.
    assert refusal(await send(pool, ALICE, BOB, 1_001)).used_msat == 0
    assert (await send(pool, ALICE, BOB, 600)).code == "ok"
    found = await refused_without_trace(pool, send(pool, ALICE, CAROL, 401))
    assert found == LimitRefusal("send_24h_msat", 1_000, 600, 401, 400)
    assert (await send(pool, ALICE, CAROL, 400)).code == "ok"
    # A day later the window has moved on.
    await age_history(pool, ALICE, 25)
    assert (await send(pool, ALICE, BOB, 1_000)).code == "ok"


async def test_send_30d_counts_the_month_not_only_the_day(pool: asyncpg.Pool) -> None:
    await credit(pool, ALICE, 10_000)
    await set_overrides(pool, ALICE, {"send_24h_msat": 1_000, "send_30d_msat": 1_500})
    assert (await send(pool, ALICE, BOB, 1_000)).code == "ok"
    await age_history(pool, ALICE, 48)
    found = await refused_without_trace(pool, send(pool, ALICE, BOB, 600))
    assert found == LimitRefusal("send_30d_msat", 1_500, 1_000, 600, 500)
    await age_history(pool, ALICE, 29 * 24)  # 31 days ago now
    assert (await send(pool, ALICE, BOB, 1_000)).code == "ok"


async def test_a_refused_transfer_does_not_tell_the_recipients_balance(
    pool: asyncpg.Pool,
) -> None:
    """With a balance ceiling, the recipient's used figure is their balance: a sender probing
    with a transfer that is bound to be refused learns only which limit refused it."""
    await credit(pool, ALICE, 10**9)
    await credit(pool, BOB, 123_456)
    await write_defaults(pool, Limits(balance_max_msat=1_000_000))
    answer = await send(pool, ALICE, BOB, 10**8)
    error = answer.json()["error"]
    assert error == {
        "code": "limit_exceeded",
        "message": "100000000 msat is over the recipient's balance_max_msat limit",
        "limit": "balance_max_msat",
        "party": "recipient",
        "amount_msat": 10**8,
    }
    assert "123456" not in answer.body and "876544" not in answer.body


async def test_receive_volumes_count_transfers_in(pool: asyncpg.Pool) -> None:
    await credit(pool, ALICE, 10_000)
    await credit(pool, BOB, 1)
    await set_overrides(pool, BOB, {"receive_24h_msat": 1_000, "receive_30d_msat": 1_200})
    assert (await send(pool, ALICE, BOB, 900)).code == "ok"
    found = await refused_without_trace(pool, send(pool, ALICE, BOB, 101))
    assert (found.limit, found.party) == ("receive_24h_msat", "recipient")
    assert await receive_refusal(pool, BOB, 101) == LimitRefusal(
        "receive_24h_msat", 1_000, 900, 101, 100
    )
    await age_history(pool, BOB, 30)
    assert refusal(await send(pool, ALICE, BOB, 301)).limit == "receive_30d_msat"
    assert await receive_refusal(pool, BOB, 301) == LimitRefusal(
        "receive_30d_msat", 1_200, 900, 301, 300
    )
    assert (await send(pool, ALICE, BOB, 300)).code == "ok"


async def test_operator_credit_is_not_receive_volume_nor_refused(pool: asyncpg.Pool) -> None:
    await write_defaults(pool, Limits(receive_24h_msat=10, balance_max_msat=10))
    await credit(pool, ALICE, 1_000)  # the operator's money: never refused (credit asserts)
    limits = await user_limits(pool, ALICE)
    assert limits.usage.received_24h_msat == 0 and limits.usage.balance_msat == 1_000
    assert limits.receive_headroom_msat() == 0


async def test_rgb_transfers_are_not_limited(pool: asyncpg.Pool) -> None:
    await credit(pool, ALICE, 10_000, RGB)
    await write_defaults(pool, Limits(send_max_msat=1, receive_max_msat=1))
    assert (await send(pool, ALICE, BOB, 5_000, RGB)).code == "ok"


async def test_a_refusal_is_replayed_under_its_idempotency_key(pool: asyncpg.Pool) -> None:
    await credit(pool, ALICE, 10_000)
    await set_overrides(pool, ALICE, {"send_max_msat": 10})
    key = Idempotency("test", "limit-1")
    first = await send(pool, ALICE, BOB, 11, idem=key)
    await set_overrides(pool, ALICE, {"send_max_msat": None})
    again = await send(pool, ALICE, BOB, 11, idem=key)
    assert again == first and refusal(again).limit == "send_max_msat"
    error = again.json()["error"]
    assert isinstance(error, dict) and error["headroom_msat"] == 10


# --- external and internal payments ---------------------------------------------------------

EXPIRES = "now() + interval '1 hour'"


async def reserve(pool: asyncpg.Pool, user: int, amount: int, fee: int, tag: str) -> LedgerAnswer:
    payment_hash = hashlib.sha256(tag.encode()).hexdigest()
    row = await pool.fetchrow(
        "SELECT code, detail, result::text FROM vnode_payment_reserve($1, $2, $3, $4, NULL, NULL,"
        f" $5, {EXPIRES}, 'test', NULL, NULL)",
        user,
        payment_hash,
        f"lnbcrt-test-{tag}",
        amount,
        fee,
    )
    assert row is not None
    return LedgerAnswer.from_row(row)


async def test_fee_max_refuses_a_larger_fee_reserve(pool: asyncpg.Pool) -> None:
    await credit(pool, ALICE, 100_000)
    await set_overrides(pool, ALICE, {"fee_max_msat": 500})
    found = await refused_without_trace(pool, reserve(pool, ALICE, 1_000, 501, "fee"))
    assert found == LimitRefusal("fee_max_msat", 500, 0, 501, 500)
    assert (await reserve(pool, ALICE, 1_000, 500, "fee")).code == "pending"


async def test_external_payments_count_as_send_volume(pool: asyncpg.Pool) -> None:
    await credit(pool, ALICE, 100_000)
    await set_overrides(pool, ALICE, {"send_24h_msat": 10_000, "send_max_msat": 8_000})
    assert refusal(await reserve(pool, ALICE, 8_001, 0, "big")).limit == "send_max_msat"
    assert (await reserve(pool, ALICE, 6_000, 100, "one")).code == "pending"
    # The pending payment counts (its amount, not its fee reserve), and so does a transfer.
    found = await refused_without_trace(pool, send(pool, ALICE, BOB, 4_001))
    assert found == LimitRefusal("send_24h_msat", 10_000, 6_000, 4_001, 4_000)
    assert (await send(pool, ALICE, BOB, 3_000)).code == "ok"
    assert refusal(await reserve(pool, ALICE, 1_001, 0, "two")).used_msat == 9_000
    # A failed payment was refunded: it no longer counts.
    await pool.execute("UPDATE ln_payments SET status = 'failed' WHERE user_id = $1", ALICE)
    assert (await reserve(pool, ALICE, 1_001, 0, "two")).code == "pending"


async def invoice(pool: asyncpg.Pool, payee: int, amount: int) -> tuple[str, str]:
    """A vnode invoice of `payee` for `amount` msat: (payment hash, invoice text)."""
    payment_hash = hashlib.sha256(f"inv-{payee}-{amount}".encode()).hexdigest()
    text = f"lnbcrt-internal-{payment_hash[:16]}"
    await pool.execute(
        "INSERT INTO ln_invoices (payment_hash, user_id, invoice, amount_msat, expires_at) "
        f"VALUES ($1, $2, $3, $4, {EXPIRES})",
        payment_hash,
        payee,
        text,
        amount,
    )
    return payment_hash, text


async def internal_pay(pool: asyncpg.Pool, payer: int, bill: tuple[str, str]) -> LedgerAnswer:
    row = await pool.fetchrow(
        "SELECT code, detail, result::text FROM vnode_internal_pay($1, $2, $3, NULL, 'test',"
        " NULL, NULL)",
        payer,
        *bill,
    )
    assert row is not None
    return LedgerAnswer.from_row(row)


async def test_internal_payment_checks_payer_send_and_payee_receive(pool: asyncpg.Pool) -> None:
    await credit(pool, ALICE, 100_000)
    await credit(pool, BOB, 1)
    await set_overrides(pool, BOB, {"receive_24h_msat": 5_000})
    await set_overrides(pool, ALICE, {"send_max_msat": 7_000})
    bills = [await invoice(pool, BOB, amount) for amount in (7_001, 5_001, 3_000)]
    assert refusal(await internal_pay(pool, ALICE, bills[0])).limit == "send_max_msat"
    found = await refused_without_trace(pool, internal_pay(pool, ALICE, bills[1]))
    assert found == LimitRefusal("receive_24h_msat", None, None, 5_001, None, "recipient")
    assert (await internal_pay(pool, ALICE, bills[2])).code == "ok"
    # Both sides' volumes moved: the payee's receipt and the payer's payment.
    bob, alice = await user_limits(pool, BOB), await user_limits(pool, ALICE)
    assert bob.usage.received_24h_msat == 3_000 and bob.receive_headroom_msat() == 2_000
    assert alice.usage.sent_24h_msat == 3_000


async def test_receive_refusal_for_invoice_creation(pool: asyncpg.Pool) -> None:
    assert await receive_refusal(pool, ALICE, 10**12) is None  # no limits at all
    await credit(pool, ALICE, 400)
    await write_defaults(pool, Limits(balance_max_msat=1_000))
    found = await receive_refusal(pool, ALICE, 601)
    assert found == LimitRefusal("balance_max_msat", 1_000, 400, 601, 600)
    assert await receive_refusal(pool, ALICE, 600) is None


# --- concurrency: only what fits passes -----------------------------------------------------


async def test_concurrent_sends_pass_only_what_fits_the_send_limit(pool: asyncpg.Pool) -> None:
    await credit(pool, ALICE, 100_000)
    await set_overrides(pool, ALICE, {"send_24h_msat": 1_000})
    recipients = range(3_100, 3_110)
    answers = await asyncio.gather(*(send(pool, ALICE, to, 300) for to in recipients))
    codes = sorted(a.code for a in answers)
    assert codes == ["limit_exceeded"] * 7 + ["ok"] * 3, codes
    assert (await user_limits(pool, ALICE)).usage.sent_24h_msat == 900
    await audit_clean(pool)


async def test_concurrent_receipts_of_a_new_user_pass_only_what_fits(
    pool: asyncpg.Pool,
) -> None:
    """The recipient has no node yet, so no lock to take at first: the money function creates
    it and checks again."""
    senders = range(3_200, 3_210)
    for sender in senders:
        await credit(pool, sender, 10_000)
    await set_overrides(pool, CAROL, {"receive_24h_msat": 1_000})
    answers = await asyncio.gather(*(send(pool, s, CAROL, 300) for s in senders))
    codes = sorted(a.code for a in answers)
    assert codes == ["limit_exceeded"] * 7 + ["ok"] * 3, codes
    assert (await user_limits(pool, CAROL)).usage.received_24h_msat == 900
    await audit_clean(pool)


async def test_concurrent_payments_and_transfers_share_the_limit(pool: asyncpg.Pool) -> None:
    await credit(pool, ALICE, 1_000_000)
    await set_overrides(pool, ALICE, {"send_24h_msat": 2_000})
    calls = [reserve(pool, ALICE, 500, 0, f"c{i}") for i in range(5)]
    calls += [send(pool, ALICE, 3_300 + i, 500) for i in range(5)]
    answers = await asyncio.gather(*calls)
    passed = [a for a in answers if a.code in ("ok", "pending")]
    assert len(passed) == 4, [a.code for a in answers]
    assert {a.code for a in answers} - {"ok", "pending"} == {"limit_exceeded"}
    assert (await user_limits(pool, ALICE)).usage.sent_24h_msat == 2_000


async def test_volumes_skip_history_older_than_the_window(pool: asyncpg.Pool) -> None:
    """The sums start above the newest row older than the window by an hour (the floor); rows
    just inside the window, and rows within the hour's margin, are still summed right."""
    await credit(pool, ALICE, 10**9)
    for _ in range(30):
        assert (await send(pool, ALICE, BOB, 1_000)).code == "ok"
    await age_history(pool, ALICE, 24 * 40)  # far outside: below the floor
    assert (await send(pool, ALICE, BOB, 7)).code == "ok"
    await age_history(pool, ALICE, 24 * 30 - 2)  # the 7: 30 d - 2 h ago, still inside
    assert (await send(pool, ALICE, BOB, 500)).code == "ok"
    usage = (await user_limits(pool, ALICE)).usage
    assert (usage.sent_24h_msat, usage.sent_30d_msat) == (500, 507)
    await age_history(pool, ALICE, 2.5)  # the 7: 30 d + 30 min ago, out, inside the margin
    assert (await send(pool, ALICE, BOB, 20)).code == "ok"
    usage = (await user_limits(pool, ALICE)).usage
    assert (usage.sent_24h_msat, usage.sent_30d_msat) == (520, 520)


@pytest.mark.parametrize(
    ("sql", "constraint"),
    [
        ("INSERT INTO user_limits (user_id, send_max_msat) VALUES (5, -1)", "send_max_msat"),
        ("INSERT INTO user_limits (user_id, fee_max_msat) VALUES (5, -1)", "fee_max_msat"),
        ("INSERT INTO user_limits (user_id) VALUES (-1)", "user_id"),
    ],
)
async def test_the_table_refuses_negative_limits_and_users(
    pool: asyncpg.Pool, sql: str, constraint: str
) -> None:
    with pytest.raises(asyncpg.CheckViolationError) as refused:
        await pool.execute(sql)
    assert constraint in str(refused.value.constraint_name)
