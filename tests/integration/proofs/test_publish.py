"""Publishing epochs on a real database (vnode/proofs/publish.py, store.py): every user's proof
of a real epoch verifies with a verifier written from issue 16's text alone; an epoch taken
while transfers run sums exactly to the audit's total; pruning keeps the statements."""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from dataclasses import dataclass

import asyncpg
import pytest

from tests import proofs_verifier
from tests.integration.ledger.support import NO_KEY, RGB, SIGNER, credit
from tests.integration.proofs.support import publish_now
from vnode.errors import ApiError, ErrorCode
from vnode.ledger.audit import run_audit
from vnode.ledger.balances import all_balances
from vnode.ledger.transfers import TransferCommand, transfer
from vnode.proofs import publish, store

PUBKEY = SIGNER.proof_pubkey()


async def test_every_users_proof_of_a_real_epoch_verifies(pool: asyncpg.Pool) -> None:
    users = list(range(1001, 1041))
    for user in users:
        await credit(pool, user, 1000 * user)
    for user in users[:7]:
        await credit(pool, user, user, RGB)
    # A user with nothing left: counted, with a zero balance.
    await transfer(pool, SIGNER, TransferCommand(1040, 1001, "BTC", 1000 * 1040, None), NO_KEY)

    published = await publish_now(pool, SIGNER)
    assert [p.asset_id for p in published] == ["BTC", RGB]
    async with pool.acquire() as conn:
        totals = {t.asset_id: t for t in (await run_audit(conn)).totals}
    for epoch in published:
        audit = totals[epoch.asset_id]
        assert epoch.statement["total"] == audit.users_spendable + audit.users_pending
        assert epoch.statement["epoch"] == 1

    for user in users:
        balances = await all_balances(pool, user)
        assert balances is not None
        for balance in balances:
            proof = await store.inclusion_proof(pool, user, balance.asset_id, None)
            assert proofs_verifier.check(proof, PUBKEY), (user, balance.asset_id)
            assert proof["balance"] == balance.settled
    zero = await store.inclusion_proof(pool, 1040, "BTC", None)
    assert zero["balance"] == 0 and proofs_verifier.check(zero, PUBKEY)

    # Not a holder of the asset, not a user, no such epoch: no_proof.
    for user, asset, number in [(1030, RGB, None), (99, "BTC", None), (1001, "BTC", 2)]:
        with pytest.raises(ApiError) as refused:
            await store.inclusion_proof(pool, user, asset, number)
        assert refused.value.code is ErrorCode.NO_PROOF


async def test_an_epoch_taken_while_transfers_run_sums_to_the_audits_total(
    pool: asyncpg.Pool,
) -> None:
    users = list(range(2001, 2031))
    for user in users:
        await credit(pool, user, 1_000_000)
    rng = random.Random(16)
    stop = asyncio.Event()

    async def transfers() -> int:
        done = 0
        while not stop.is_set():
            payer, payee = rng.sample(users, 2)
            command = TransferCommand(payer, payee, "BTC", rng.randint(1, 50_000), None)
            await transfer(pool, SIGNER, command, NO_KEY)  # a refusal (too poor) is fine
            done += 1
        return done

    movers = [asyncio.create_task(transfers()) for _ in range(4)]
    epochs = []
    try:
        for _ in range(3):
            epochs.extend(await publish_now(pool, SIGNER))
    finally:
        stop.set()
        moved = sum(await asyncio.gather(*movers))
    assert moved > 0
    async with pool.acquire() as conn:
        report = await run_audit(conn)
    assert report.clean, report.differences
    (btc,) = [t for t in report.totals if t.asset_id == "BTC"]
    # Transfers between users keep their total: every snapshot must count exactly that.
    assert [e.statement["total"] for e in epochs] == [btc.users_spendable + btc.users_pending] * 3
    positions = [e.statement["ledger_position"] for e in epochs]
    assert positions == sorted(positions)
    last = epochs[-1].statement["epoch"]
    for user in users:
        proof = await store.inclusion_proof(pool, user, "BTC", last)
        assert proofs_verifier.check(proof, PUBKEY)


async def test_one_publisher_at_a_time_and_epochs_count_up(pool: asyncpg.Pool) -> None:
    await credit(pool, 3001, 5000)
    results = await asyncio.gather(*(publish.publish_all(pool, SIGNER) for _ in range(3)))
    numbers = [p.epoch for result in results for p in result if p.asset_id == "BTC"]
    assert len(numbers) == len(set(numbers)) >= 1
    (after,) = await publish_now(pool, SIGNER)
    assert after.epoch == max(numbers) + 1


async def test_pruning_drops_trees_and_keeps_statements(pool: asyncpg.Pool) -> None:
    await credit(pool, 4001, 7000)
    (old,) = await publish_now(pool, SIGNER)
    (new,) = await publish_now(pool, SIGNER)
    await pool.execute(
        "UPDATE proof_epochs SET created_at = created_at - interval '3 days' WHERE epoch = $1",
        old.epoch,
    )
    assert await publish.prune(pool, 86400) == 1
    with pytest.raises(ApiError) as refused:
        await store.inclusion_proof(pool, 4001, "BTC", old.epoch)
    assert refused.value.code is ErrorCode.PROOF_PRUNED
    kept = await store.epoch(pool, "BTC", old.epoch)
    assert kept.pruned and kept.statement == old.statement and kept.signature == old.signature
    assert proofs_verifier.check(await store.inclusion_proof(pool, 4001, "BTC", None), PUBKEY)
    assert new.epoch == old.epoch + 1
    assert await pool.fetchval("SELECT count(*) FROM proof_leaves WHERE epoch = $1", old.epoch) == 0


async def test_publish_when_due_publishes_once_per_interval(pool: asyncpg.Pool) -> None:
    await credit(pool, 5001, 1)
    assert len(await publish.publish_when_due(pool, SIGNER, 3600, 86400)) == 1
    assert await publish.publish_when_due(pool, SIGNER, 3600, 86400) == []
    assert await pool.fetchval("SELECT count(*) FROM proof_epochs") == 1


@dataclass
class _Credit:
    user_id: int
    amount: int
    started: float
    finished: float = math.inf
    transaction_id: int = 0


async def test_an_epoch_counts_exactly_the_credits_its_snapshot_saw(pool: asyncpg.Pool) -> None:
    """Credits (which change the total) run while epochs are taken, each to a user of its own,
    so each epoch shows which credits its snapshot saw: every credit done before the
    publication began is in it, none begun after it ended is, every one in it is at or below
    its ledger position, and the total is exactly the users' funding plus those credits."""
    users = list(range(6001, 6011))
    for user in users:
        await credit(pool, user, 1_000_000)
    base_total = 1_000_000 * len(users)
    rng = random.Random(17)
    stop = asyncio.Event()
    credits: list[_Credit] = []

    async def crediting() -> None:
        while not stop.is_set():
            entry = _Credit(7000 + len(credits), rng.randint(1, 10**6), time.monotonic())
            credits.append(entry)
            answer = await credit(pool, entry.user_id, entry.amount)
            entry.transaction_id = json.loads(answer.result or "{}")["transaction_id"]
            entry.finished = time.monotonic()

    async def transfers() -> None:
        while not stop.is_set():
            payer, payee = rng.sample(users, 2)
            command = TransferCommand(payer, payee, "BTC", rng.randint(1, 50_000), None)
            await transfer(pool, SIGNER, command, NO_KEY)

    movers = [asyncio.create_task(f()) for f in (crediting, crediting, transfers, transfers)]
    taken: list[tuple[float, float, publish.Published]] = []
    try:
        for _ in range(4):
            began = time.monotonic()
            (epoch,) = await publish_now(pool, SIGNER)
            taken.append((began, time.monotonic(), epoch))
    finally:
        stop.set()
        await asyncio.gather(*movers)

    for began, ended, epoch in taken:
        rows = await pool.fetch(
            "SELECT user_id, balance FROM proof_leaves WHERE asset_id = 'BTC' AND epoch = $1 "
            "AND user_id >= 7000",
            epoch.epoch,
        )
        seen = {row["user_id"]: row["balance"] for row in rows}
        by_user = {c.user_id: c for c in credits}
        assert all(by_user[user].amount == balance for user, balance in seen.items())
        for entry in credits:
            if entry.finished < began:
                assert entry.user_id in seen, "a credit done before the snapshot is missing"
            if entry.started > ended:
                assert entry.user_id not in seen, "a credit begun after the epoch is in it"
        position = epoch.statement["ledger_position"]
        assert all(by_user[user].transaction_id <= position for user in seen)
        assert epoch.statement["total"] == base_total + sum(seen.values())
    assert len(credits) > len(taken)


async def test_the_newest_epoch_of_every_asset_is_listed(pool: asyncpg.Pool) -> None:
    await credit(pool, 8001, 10)
    await credit(pool, 8001, 3, RGB)
    for _ in range(3):
        await publish_now(pool, SIGNER)
    listed = [
        (e.statement["asset_id"], e.statement["epoch"]) for e in await store.latest_epochs(pool)
    ]
    assert listed == [("BTC", 3), (RGB, 3)]
