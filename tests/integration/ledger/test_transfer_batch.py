"""Micro-batched transfers (vnode/ledger/transfer_batch.py, `vnode_transfer_batch`,
docs/adr/0026): every item answers as it would alone, refusals stay with their item, replays
inside a batch, no deadlock between batches in opposite directions, and a batch cut off by a
crash leaves nothing behind."""

from __future__ import annotations

import asyncio
import random

import asyncpg
import pytest

from tests.integration.ledger.support import SIGNER, credit
from tests.support import wait_until
from vnode.ledger.audit import run_audit
from vnode.ledger.calls import Idempotency
from vnode.ledger.transfer_batch import TransferArgs, TransferBatcher, transfer_batch
from vnode.ledger.transfers import TransferCommand, transfer

ALICE, BOB, CAROL, DAVE = 2_001, 2_002, 2_003, 2_004


def args(src: int, dst: int, amount: int, key: str | None = None) -> TransferArgs:
    """What transfers.transfer would pass for this transfer (owner "test")."""
    idem = Idempotency("test", key)
    fields = {"from": src, "to": dst, "asset": "BTC", "amount": amount, "memo": None}
    return TransferArgs(
        src,
        dst,
        SIGNER.node_pubkey(dst),
        "BTC",
        amount,
        None,
        idem.owner,
        idem.key,
        idem.request_hash("transfer", fields),
    )


async def spendable(pool: asyncpg.Pool, user: int) -> int:
    value = await pool.fetchval(
        "SELECT coalesce(max(spendable), 0) FROM ln_user_balances "
        "WHERE user_id = $1 AND asset_id = 'BTC'",
        user,
    )
    return int(value)


async def journal_rows(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM virtual_transactions"))


async def assert_audit_clean(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        report = await run_audit(conn)
    assert report.clean, report.differences


async def test_a_refused_item_leaves_its_neighbours_alone(pool: asyncpg.Pool) -> None:
    await credit(pool, ALICE, 1_000)
    await credit(pool, BOB, 50)
    answers = await transfer_batch(
        pool,
        [args(ALICE, CAROL, 300), args(BOB, CAROL, 51), args(ALICE, DAVE, 200)],
    )
    assert [a.code for a in answers] == ["ok", "insufficient_balance", "ok"]
    assert answers[1].detail == "balance 50 is less than the amount 51"
    assert answers[0].json()["sender_balance"] == {"balance_msat": 700, "balance_sats": 0}
    assert answers[2].json()["sender_balance"] == {"balance_msat": 500, "balance_sats": 0}
    assert [await spendable(pool, u) for u in (ALICE, BOB, CAROL, DAVE)] == [500, 50, 300, 200]
    # CAROL's node was made by the first item and used by no lock taken before it.
    assert await pool.fetchval("SELECT count(*) FROM virtual_nodes WHERE user_id = $1", CAROL)
    await assert_audit_clean(pool)


async def test_items_see_the_items_before_them(pool: asyncpg.Pool) -> None:
    """Item 2 spends what item 1 brought: one transaction, in item order."""
    await credit(pool, ALICE, 100)
    answers = await transfer_batch(pool, [args(ALICE, BOB, 100), args(BOB, CAROL, 100)])
    assert [a.code for a in answers] == ["ok", "ok"]
    assert [await spendable(pool, u) for u in (ALICE, BOB, CAROL)] == [0, 0, 100]
    # Each user's events are numbered in item order, without gaps.
    seqs = await pool.fetch("SELECT user_seq FROM outbox WHERE user_id = $1 ORDER BY id", BOB)
    assert [r["user_seq"] for r in seqs] == [1, 2]
    await assert_audit_clean(pool)


async def test_idempotent_replays_inside_one_batch(pool: asyncpg.Pool) -> None:
    await credit(pool, ALICE, 1_000)
    first = args(ALICE, BOB, 100, key="k-1")
    reused = args(ALICE, BOB, 101, key="k-1")  # the same key for another request
    before = await journal_rows(pool)
    answers = await transfer_batch(pool, [first, first, reused, first])
    assert [a.code for a in answers] == ["ok", "ok", "idempotency_key_reused", "ok"]
    assert answers[0].result == answers[1].result == answers[3].result  # replayed, same body
    assert await journal_rows(pool) == before + 1  # booked once
    assert await spendable(pool, BOB) == 100
    # A later batch (or a single call) with the key replays the same answer.
    again = await transfer_batch(pool, [first, args(ALICE, CAROL, 5)])
    assert again[0].result == answers[0].result
    assert await journal_rows(pool) == before + 2
    await assert_audit_clean(pool)


async def test_opposite_transfers_in_concurrent_batches_do_not_deadlock(
    pool: asyncpg.Pool,
) -> None:
    """Batches of A->B and B->A (and single transfers) at once: each batch locks its nodes in
    user-id order before any item runs, so none waits for another in a cycle; a deadlock would
    show as a failed batch (logged, items re-run alone) or a 40P01 error here."""
    users = (ALICE, BOB, CAROL, DAVE)
    for user in users:
        await credit(pool, user, 1_000_000)
    rng = random.Random(13)
    batches = []
    for n in range(24):
        items = []
        for _ in range(8):
            a, b = rng.sample(users, 2)
            items.append(args(a, b, rng.randint(1, 1000)) if n % 2 else args(b, a, 7))
        batches.append(items)
    results = await asyncio.gather(*(transfer_batch(pool, items) for items in batches))
    assert all(answer.code == "ok" for answers in results for answer in answers)
    assert await journal_rows(pool) == len(users) + 24 * 8
    assert sum([await spendable(pool, u) for u in users]) == 4_000_000
    await assert_audit_clean(pool)


async def test_the_batcher_answers_each_transfer_as_alone(pool: asyncpg.Pool) -> None:
    """Through TransferBatcher: many concurrent transfers in few calls, each with its own
    answer, refusals included; the money adds up."""
    await credit(pool, ALICE, 10_000)
    await credit(pool, BOB, 10)
    batcher = TransferBatcher(pool, max_items=16, max_in_flight=2)

    async def send(src: int, dst: int, amount: int) -> str:
        command = TransferCommand(src, dst, "BTC", amount, None)
        answer = await transfer(pool, SIGNER, command, Idempotency("test", None), batcher)
        return answer.code

    codes = await asyncio.gather(
        *(send(ALICE, CAROL, 100) for _ in range(60)),
        *(send(BOB, DAVE, 11) for _ in range(5)),
    )
    assert codes.count("ok") == 60
    assert codes.count("insufficient_balance") == 5
    assert await spendable(pool, ALICE) == 4_000
    assert await spendable(pool, CAROL) == 6_000
    await assert_audit_clean(pool)


async def test_a_batch_cut_off_by_a_crash_leaves_nothing(pool: asyncpg.Pool) -> None:
    """The batch's backend is killed while it runs (here: while it waits for a node lock the
    test holds): the batch fails as a whole, nothing of it was committed, and running it again
    with the same Idempotency-Keys books every transfer exactly once."""
    await credit(pool, ALICE, 1_000)
    await credit(pool, BOB, 1_000)
    before = await journal_rows(pool)
    items = [args(ALICE, CAROL, 100, key="c-1"), args(BOB, DAVE, 200, key="c-2")]
    holder = await pool.acquire()
    try:
        lock = holder.transaction()
        await lock.start()
        await holder.execute("SELECT 1 FROM virtual_nodes WHERE user_id = $1 FOR UPDATE", BOB)
        call = asyncio.ensure_future(transfer_batch(pool, items))

        async def batch_backend() -> int | None:
            # Not on `holder`: inside its transaction pg_stat_activity is a snapshot.
            value = await pool.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE '%vnode_transfer_batch(%' "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid() "
                "AND datname = current_database()"  # other workers' tests run beside it
            )
            return None if value is None else int(value)

        async def batch_waits() -> bool:
            return await batch_backend() is not None

        await wait_until(batch_waits, timeout_s=10.0, what="the batch waits for BOB's lock")
        pid = await batch_backend()
        assert await holder.fetchval("SELECT pg_terminate_backend($1)", pid)
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
            await call
        await lock.rollback()
    finally:
        await pool.release(holder)
    assert await journal_rows(pool) == before
    assert [await spendable(pool, u) for u in (ALICE, BOB, CAROL, DAVE)] == [1_000, 1_000, 0, 0]
    await assert_audit_clean(pool)
    # The client retries with its keys: booked once each; a second retry replays.
    again = await transfer_batch(pool, items)
    assert [a.code for a in again] == ["ok", "ok"]
    replay = await transfer_batch(pool, items)
    assert [a.result for a in replay] == [a.result for a in again]
    assert await journal_rows(pool) == before + 2
    assert [await spendable(pool, u) for u in (ALICE, BOB, CAROL, DAVE)] == [900, 800, 100, 200]
    await assert_audit_clean(pool)


async def test_a_lost_batch_is_not_run_again(pool: asyncpg.Pool) -> None:
    """A batch whose backend is terminated may have committed (a FATAL can follow the commit),
    so the batcher gives the error to each of its requests and runs nothing again: a re-run
    would book keyless transfers twice. (Here it had not committed: nothing is booked.)"""
    for user in (ALICE, BOB):
        await credit(pool, user, 1_000)
    await credit(pool, CAROL, 1)  # CAROL's node exists, so the test can hold its lock
    before = await journal_rows(pool)
    batcher = TransferBatcher(pool, max_items=8, max_in_flight=1)

    def send(src: int, dst: int) -> asyncio.Future[object]:
        command = TransferCommand(src, dst, "BTC", 10, None)
        return asyncio.ensure_future(
            transfer(pool, SIGNER, command, Idempotency("test", None), batcher)
        )

    holder_bob, holder_carol = await pool.acquire(), await pool.acquire()
    try:
        bob_lock, carol_lock = holder_bob.transaction(), holder_carol.transaction()
        await bob_lock.start()
        await holder_bob.execute("SELECT 1 FROM virtual_nodes WHERE user_id = $1 FOR UPDATE", BOB)
        await carol_lock.start()
        await holder_carol.execute(
            "SELECT 1 FROM virtual_nodes WHERE user_id = $1 FOR UPDATE", CAROL
        )
        alone = send(BOB, DAVE)  # leaves at once, alone, and waits for BOB's lock

        async def waiting_for_lock(sql_fragment: str) -> int | None:
            value = await pool.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE $1 AND wait_event_type = 'Lock' "
                "AND pid <> pg_backend_pid() AND datname = current_database()",
                f"%{sql_fragment}%",
            )
            return None if value is None else int(value)

        async def single_waits() -> bool:
            return await waiting_for_lock("FROM vnode_transfer(") is not None

        await wait_until(single_waits, timeout_s=10.0, what="the single transfer waits")
        batched = [send(ALICE, CAROL), send(BOB, CAROL)]  # wait for the call in flight
        await bob_lock.rollback()
        assert (await alone).code == "ok"  # type: ignore[attr-defined]

        async def batch_waits() -> bool:
            return await waiting_for_lock("vnode_transfer_batch(") is not None

        await wait_until(batch_waits, timeout_s=10.0, what="the batch waits for CAROL's lock")
        pid = await waiting_for_lock("vnode_transfer_batch(")
        assert await holder_carol.fetchval("SELECT pg_terminate_backend($1)", pid)
        # Each request gets the error. Had the batcher run them again, they would now wait for
        # CAROL's lock, still held, and time out here.
        for request in batched:
            # Not TimeoutError (an OSError): that is the re-run waiting for the lock.
            with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError)):
                await asyncio.wait_for(request, timeout=10.0)
        await carol_lock.rollback()
    finally:
        await pool.release(holder_bob)
        await pool.release(holder_carol)
    assert await journal_rows(pool) == before + 1  # the single transfer only
    assert [await spendable(pool, u) for u in (ALICE, BOB, CAROL, DAVE)] == [1_000, 990, 1, 10]
    await assert_audit_clean(pool)
