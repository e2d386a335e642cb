"""The money rules PostgreSQL enforces by itself (docs/design/DESIGN.md section 2), table by table.

Every row is run against a real, freshly migrated database: a rule that is dropped or weakened
in a migration makes its row fail.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import asyncpg
import pytest

from tests.integration.ledger.support import NO_KEY, RGB, SIGNER, credit
from tests.support import examples
from vnode.ledger.admin import AdminCommand, AdminMove, admin_move
from vnode.ledger.audit import run_audit
from vnode.ledger.calls import Idempotency, LedgerAnswer
from vnode.ledger.transfers import TransferCommand, transfer

ALICE, BOB, CAROL = 1_001, 1_002, 1_003
LEDGER_TABLES = (
    "virtual_nodes",
    "virtual_transactions",
    "user_utxos",
    "ln_user_balances",
    "ln_user_transactions",
    "system_balances",
    "outbox",
    "idempotency_keys",
)


async def send(
    pool: asyncpg.Pool,
    src: int,
    dst: int,
    amount: int,
    asset: str = "BTC",
    idem: Idempotency = NO_KEY,
) -> LedgerAnswer:
    return await transfer(pool, SIGNER, TransferCommand(src, dst, asset, amount, "memo"), idem)


async def snapshot(pool: asyncpg.Pool) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every ledger table, in a stable order, timestamps included."""
    tables = {}
    for table in LEDGER_TABLES:
        rows = await pool.fetch(f"SELECT * FROM {table}")  # fixed table names
        tables[table] = sorted((tuple(r.values()) for r in rows), key=repr)
    return tables


async def balance(pool: asyncpg.Pool, user: int, asset: str = "BTC") -> int | None:
    value = await pool.fetchval(
        "SELECT spendable FROM ln_user_balances WHERE user_id = $1 AND asset_id = $2", user, asset
    )
    return None if value is None else int(value)


async def unspent(pool: asyncpg.Pool, user: int, asset: str = "BTC") -> int:
    return int(
        await pool.fetchval(
            "SELECT coalesce(sum(amount), 0) FROM user_utxos "
            "WHERE user_id = $1 AND asset_id = $2 AND spent_tx IS NULL",
            user,
            asset,
        )
    )


@pytest.fixture
async def seeded(pool: asyncpg.Pool) -> asyncpg.Pool:
    """ALICE credited 1000 msat, then sent 400 to BOB: one spent coin, two unspent coins."""
    await credit(pool, ALICE, 1_000)
    sent = await send(pool, ALICE, BOB, 400)
    assert sent.status == 200, sent.body
    return pool


# --- constraints and triggers -------------------------------------------------------------

PUBKEY = "02" + "ab" * 32
FIRST_TX = "(SELECT min(id) FROM virtual_transactions)"
LAST_TX = "(SELECT max(id) FROM virtual_transactions)"
SPENT_COIN = "(SELECT id FROM user_utxos WHERE spent_tx IS NOT NULL)"
UNSPENT_COIN = f"(SELECT min(id) FROM user_utxos WHERE spent_tx IS NULL AND user_id = {ALICE})"


@dataclass(frozen=True)
class Rule:
    name: str
    sql: str
    error: type[asyncpg.PostgresError] | None  # None: the statement is allowed (control row)
    detail: str = ""  # constraint name, or a fragment of the trigger's message


RULES = [
    # no user balance below zero
    Rule(
        "spendable below zero",
        f"UPDATE ln_user_balances SET spendable = -1 WHERE user_id = {ALICE}",
        asyncpg.CheckViolationError,
        "ln_user_balances_spendable_check",
    ),
    Rule(
        "pending below zero",
        f"UPDATE ln_user_balances SET pending = -1 WHERE user_id = {ALICE}",
        asyncpg.CheckViolationError,
        "ln_user_balances_pending_check",
    ),
    Rule(
        "spendable zero is fine",
        f"UPDATE ln_user_balances SET spendable = 0 WHERE user_id = {ALICE}",
        None,
    ),
    # coins are positive
    Rule(
        "zero coin",
        "INSERT INTO user_utxos (user_id, asset_id, amount, created_tx) "
        f"VALUES ({ALICE}, 'BTC', 0, {FIRST_TX})",
        asyncpg.CheckViolationError,
        "user_utxos_amount_check",
    ),
    Rule(
        "negative coin",
        "INSERT INTO user_utxos (user_id, asset_id, amount, created_tx) "
        f"VALUES ({ALICE}, 'BTC', -5, {FIRST_TX})",
        asyncpg.CheckViolationError,
        "user_utxos_amount_check",
    ),
    Rule(
        "coin for a user without node",
        "INSERT INTO user_utxos "
        f"(user_id, asset_id, amount, created_tx) VALUES ({CAROL}, 'BTC', 5, {FIRST_TX})",
        asyncpg.ForeignKeyViolationError,
        "user_utxos_user_id_fkey",
    ),
    Rule(
        "bad outpoint",
        "INSERT INTO user_utxos (user_id, asset_id, amount, created_tx, outpoint) "
        f"VALUES ({ALICE}, 'BTC', 5, {FIRST_TX}, 'abc:0')",
        asyncpg.CheckViolationError,
        "user_utxos_outpoint_check",
    ),
    # a coin is spent at most once, and never deleted
    Rule(
        "re-spend a spent coin",
        f"UPDATE user_utxos SET spent_tx = {LAST_TX} WHERE id = {SPENT_COIN}",
        asyncpg.CheckViolationError,
        "already spent",
    ),
    Rule(
        "un-spend a spent coin",
        f"UPDATE user_utxos SET spent_tx = NULL WHERE id = {SPENT_COIN}",
        asyncpg.CheckViolationError,
        "already spent",
    ),
    Rule(
        "grow a spent coin",
        f"UPDATE user_utxos SET amount = amount + 1 WHERE id = {SPENT_COIN}",
        asyncpg.CheckViolationError,
        "already spent",
    ),
    Rule(
        "delete a spent coin",
        f"DELETE FROM user_utxos WHERE id = {SPENT_COIN}",
        asyncpg.CheckViolationError,
        "cannot be deleted",
    ),
    Rule(
        "delete an unspent coin",
        f"DELETE FROM user_utxos WHERE id = {UNSPENT_COIN}",
        asyncpg.CheckViolationError,
        "cannot be deleted",
    ),
    Rule(
        "grow an unspent coin",
        f"UPDATE user_utxos SET amount = amount + 1 WHERE id = {UNSPENT_COIN}",
        asyncpg.CheckViolationError,
        "only be spent",
    ),
    Rule(
        "give an unspent coin away",
        f"UPDATE user_utxos SET user_id = {BOB} WHERE id = {UNSPENT_COIN}",
        asyncpg.CheckViolationError,
        "only be spent",
    ),
    Rule(
        "spend a coin and change it",
        f"UPDATE user_utxos SET spent_tx = {LAST_TX}, amount = 1 WHERE id = {UNSPENT_COIN}",
        asyncpg.CheckViolationError,
        "only be spent",
    ),
    Rule(
        "spend an unspent coin once",
        f"UPDATE user_utxos SET spent_tx = {LAST_TX} WHERE id = {UNSPENT_COIN}",
        None,
    ),
    # journal rows move a positive amount between two different accounts
    Rule(
        "zero journal amount",
        "INSERT INTO virtual_transactions "
        f"(kind, asset_id, from_account, to_account, amount) VALUES ('transfer', 'BTC', {ALICE}, "
        f"{BOB}, 0)",
        asyncpg.CheckViolationError,
        "virtual_transactions_amount_check",
    ),
    Rule(
        "negative journal amount",
        "INSERT INTO virtual_transactions "
        f"(kind, asset_id, from_account, to_account, amount) VALUES ('transfer', 'BTC', {ALICE}, "
        f"{BOB}, -1)",
        asyncpg.CheckViolationError,
        "virtual_transactions_amount_check",
    ),
    Rule(
        "journal to itself",
        "INSERT INTO virtual_transactions "
        f"(kind, asset_id, from_account, to_account, amount) VALUES ('transfer', 'BTC', {ALICE}, "
        f"{ALICE}, 1)",
        asyncpg.CheckViolationError,
        "virtual_transactions_check",
    ),
    Rule(
        "journal from account 0",
        "INSERT INTO virtual_transactions "
        "(kind, asset_id, from_account, to_account, amount) VALUES ('transfer', 'BTC', 0, "
        f"{BOB}, 1)",
        asyncpg.CheckViolationError,
        "virtual_transactions_from_account_check",
    ),
    Rule(
        "unknown journal kind",
        "INSERT INTO virtual_transactions "
        f"(kind, asset_id, from_account, to_account, amount) VALUES ('gift', 'BTC', {ALICE}, "
        f"{BOB}, 1)",
        asyncpg.CheckViolationError,
        "virtual_transactions_kind_check",
    ),
    Rule(
        "memo too long",
        "INSERT INTO virtual_transactions "
        "(kind, asset_id, from_account, to_account, amount, memo) VALUES ('transfer', 'BTC', "
        f"{ALICE}, {BOB}, 1, repeat('m', 501))",
        asyncpg.CheckViolationError,
        "virtual_transactions_memo_check",
    ),
    Rule(
        "valid journal row",
        "INSERT INTO virtual_transactions "
        f"(kind, asset_id, from_account, to_account, amount) VALUES ('transfer', 'BTC', {ALICE}, "
        f"{BOB}, 1)",
        None,
    ),
    # virtual nodes: vn_<user id>, compressed secp256k1 pubkey in lower-case hex
    Rule(
        "node id of another user",
        "INSERT INTO virtual_nodes (user_id, node_id, pubkey) "
        f"VALUES ({CAROL}, 'vn_{CAROL + 1}', '{PUBKEY}')",
        asyncpg.CheckViolationError,
        "virtual_nodes_check",
    ),
    Rule(
        "node id without prefix",
        "INSERT INTO virtual_nodes (user_id, node_id, pubkey) "
        f"VALUES ({CAROL}, '{CAROL}', '{PUBKEY}')",
        asyncpg.CheckViolationError,
        "virtual_nodes_check",
    ),
    Rule(
        "user id zero",
        f"INSERT INTO virtual_nodes (user_id, node_id, pubkey) VALUES (0, 'vn_0', '{PUBKEY}')",
        asyncpg.CheckViolationError,
        "virtual_nodes_user_id",
    ),
    Rule(
        "pubkey of another node",
        "INSERT INTO virtual_nodes (user_id, node_id, pubkey) "
        f"SELECT {CAROL}, 'vn_{CAROL}', pubkey FROM virtual_nodes WHERE user_id = {ALICE}",
        asyncpg.UniqueViolationError,
        "virtual_nodes_pubkey_key",
    ),
    Rule(
        "negative event seq",
        f"UPDATE virtual_nodes SET event_seq = -1 WHERE user_id = {ALICE}",
        asyncpg.CheckViolationError,
        "virtual_nodes_event_seq_check",
    ),
    # outbox: one event per (user, seq), seq from 1
    Rule(
        "duplicate outbox seq",
        "INSERT INTO outbox (event_type, user_id, user_seq, payload) "
        f"VALUES ('x', {ALICE}, 1, '{{}}')",
        asyncpg.UniqueViolationError,
        "outbox_user_id_user_seq_key",
    ),
    Rule(
        "outbox seq zero",
        "INSERT INTO outbox (event_type, user_id, user_seq, payload) "
        f"VALUES ('x', {ALICE}, 0, '{{}}')",
        asyncpg.CheckViolationError,
        "outbox_user_seq_check",
    ),
    Rule(
        "next outbox seq",
        "INSERT INTO outbox (event_type, user_id, user_seq, payload) "
        f"VALUES ('x', {ALICE}, 1000, '{{}}')",
        None,
    ),
    # system accounts are negative ids
    Rule(
        "positive system account",
        "INSERT INTO system_accounts (account_id, name, description) VALUES (7, 'seven', 'x')",
        asyncpg.CheckViolationError,
        "system_accounts_account_id",
    ),
]


@pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])
async def test_database_rule(seeded: asyncpg.Pool, rule: Rule) -> None:
    async with seeded.acquire() as conn:
        before = await snapshot(seeded)
        if rule.error is None:
            status = await conn.execute(rule.sql)
            assert status.endswith(" 1"), status  # exactly one row touched
            return
        with pytest.raises(rule.error) as caught:
            await conn.execute(rule.sql)
        error = caught.value
        assert rule.detail in f"{error.constraint_name} {error}"
        assert await snapshot(seeded) == before


PUBKEYS = [
    ("02" + "0f" * 32, True),
    ("03" + "a1" * 32, True),
    ("04" + "a1" * 32, False),  # not a compressed key
    ("02" + "A1" * 32, False),  # upper case: one key, one spelling
    ("02" + "a1" * 31, False),  # too short
    ("02" + "a1" * 33, False),  # too long
    ("02" + "g1" * 32, False),  # not hex
    (" 02" + "a1" * 32, False),
]


@pytest.mark.parametrize(("pubkey", "accepted"), PUBKEYS, ids=[p for p, _ in PUBKEYS])
async def test_pubkey_format(pool: asyncpg.Pool, pubkey: str, accepted: bool) -> None:
    sql = "INSERT INTO virtual_nodes (user_id, node_id, pubkey) VALUES ($1, $2, $3)"
    if accepted:
        await pool.execute(sql, CAROL, f"vn_{CAROL}", pubkey)
        assert await pool.fetchval("SELECT pubkey FROM virtual_nodes") == pubkey
    else:
        with pytest.raises(asyncpg.CheckViolationError, match="virtual_nodes_pubkey_check"):
            await pool.execute(sql, CAROL, f"vn_{CAROL}", pubkey)
        assert await pool.fetchval("SELECT count(*) FROM virtual_nodes") == 0


# --- vnode_transfer: refusals leave no trace ------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    name: str
    funding: tuple[tuple[int, int, str], ...]  # (user, amount, asset) credited first
    sender: int
    amount: int
    asset: str
    status: int
    code: str


REFUSALS = [
    Refusal("unknown sender", (), ALICE, 1, "BTC", 404, "unknown_user"),
    Refusal(
        "unknown sender, funded recipient",
        ((BOB, 500, "BTC"),),
        ALICE,
        1,
        "BTC",
        404,
        "unknown_user",
    ),
    Refusal(
        "one over the balance",
        ((ALICE, 1_000, "BTC"),),
        ALICE,
        1_001,
        "BTC",
        409,
        "insufficient_balance",
    ),
    Refusal(
        "empty after spending", ((ALICE, 1, "BTC"),), ALICE, 2, "BTC", 409, "insufficient_balance"
    ),
    Refusal(
        "holds BTC, sends an asset",
        ((ALICE, 10**9, "BTC"),),
        ALICE,
        1,
        RGB,
        409,
        "insufficient_balance",
    ),
    Refusal(
        "holds an asset, sends BTC",
        ((ALICE, 10**9, RGB),),
        ALICE,
        1,
        "BTC",
        409,
        "insufficient_balance",
    ),
]


@pytest.mark.parametrize("case", REFUSALS, ids=[r.name for r in REFUSALS])
async def test_refused_transfer_leaves_no_trace(pool: asyncpg.Pool, case: Refusal) -> None:
    for user, amount, asset in case.funding:
        await credit(pool, user, amount, asset)
    before = await snapshot(pool)

    outcome = await send(pool, case.sender, CAROL, case.amount, case.asset)

    assert outcome.status == case.status
    assert outcome.code == case.code
    assert await snapshot(pool) == before  # no journal, coin, node, history, event or balance
    assert not await pool.fetchval("SELECT true FROM virtual_nodes WHERE user_id = $1", CAROL)


@pytest.mark.parametrize(
    ("amount", "recipient"),
    [(0, BOB), (-5, BOB), (100, ALICE)],
    ids=["zero", "negative", "to self"],
)
async def test_impossible_transfer_raises_and_changes_nothing(
    pool: asyncpg.Pool, amount: int, recipient: int
) -> None:
    """The API refuses these before the database; the database refuses them as well."""
    await credit(pool, ALICE, 1_000)
    before = await snapshot(pool)
    with pytest.raises(asyncpg.CheckViolationError, match="virtual_transactions"):
        await send(pool, ALICE, recipient, amount)
    assert await snapshot(pool) == before


# --- vnode_transfer: what a success writes --------------------------------------------------


@pytest.mark.parametrize(
    ("credits", "amount", "change"),
    [
        ((1_000,), 1, 999),
        ((600, 400), 700, 300),
        ((600, 400), 1_000, 0),  # the whole balance: no change coin
        ((1, 1, 1, 1), 3, 1),
    ],
    ids=["one coin", "two coins", "all of it", "many small coins"],
)
async def test_transfer_writes_exactly(
    pool: asyncpg.Pool, credits: tuple[int, ...], amount: int, change: int
) -> None:
    for value in credits:
        await credit(pool, ALICE, value)
    before = await snapshot(pool)
    last_before = await pool.fetchval("SELECT max(id) FROM virtual_transactions")
    seq_before = len(credits)

    outcome = await send(pool, ALICE, BOB, amount)
    assert outcome.status == 200, outcome.body
    body = outcome.json()
    tx = body["transfer_id"]
    assert body["sender_balance"] == {"balance_msat": change, "balance_sats": change // 1000}
    assert (body["to_node_id"], body["amount_msat"], body["fee_msat"]) == ("vn_1002", amount, 0)

    journal = await pool.fetch("SELECT * FROM virtual_transactions WHERE id > $1", last_before)
    assert [
        (r["id"], r["kind"], r["from_account"], r["to_account"], r["amount"]) for r in journal
    ] == [(tx, "transfer", ALICE, BOB, amount)]

    history = await pool.fetch(
        "SELECT user_id, direction, amount, counterparty FROM ln_user_transactions "
        "WHERE tx_id = $1 ORDER BY user_id",
        tx,
    )
    assert [tuple(r.values()) for r in history] == [
        (ALICE, "out", amount, "vn_1002"),
        (BOB, "in", amount, "vn_1001"),
    ]
    assert await pool.fetchval("SELECT count(*) FROM ln_user_transactions") == len(credits) + 2

    spent = await pool.fetch("SELECT amount FROM user_utxos WHERE spent_tx = $1", tx)
    assert sorted(r["amount"] for r in spent) == sorted(credits)  # every coin ALICE had
    created = await pool.fetch(
        "SELECT user_id, amount FROM user_utxos WHERE created_tx = $1 ORDER BY user_id", tx
    )
    expected_created = ([(ALICE, change)] if change else []) + [(BOB, amount)]
    assert [tuple(r.values()) for r in created] == expected_created
    total_coins = await pool.fetchval("SELECT count(*) FROM user_utxos")
    assert total_coins == len(credits) + len(expected_created)

    events = await pool.fetch(
        "SELECT user_id, user_seq, event_type, payload FROM outbox "
        "WHERE (payload->>'transfer_id')::bigint = $1 ORDER BY user_id",
        tx,
    )
    assert [(r["user_id"], r["user_seq"], r["event_type"]) for r in events] == [
        (ALICE, seq_before + 1, "transfer.completed"),
        (BOB, 1, "transfer.completed"),
    ]
    assert await pool.fetchval("SELECT count(*) FROM outbox") == len(credits) + 2
    # Time-ordered ids (uuidv7) for the transfer's events: the event_id index grows at its end.
    ids = await pool.fetch(
        "SELECT event_id FROM outbox WHERE (payload->>'transfer_id')::bigint = $1 ORDER BY id", tx
    )
    assert [r["event_id"].version for r in ids] == [7, 7]
    assert ids[0]["event_id"] < ids[1]["event_id"]
    # And every other writer's (the credits' events, vnode_emit): the column's default (0020).
    every_id = await pool.fetch("SELECT event_id FROM outbox")
    assert {r["event_id"].version for r in every_id} == {7}
    seqs = await pool.fetch("SELECT user_id, event_seq FROM virtual_nodes ORDER BY user_id")
    assert [tuple(r.values()) for r in seqs] == [(ALICE, seq_before + 1), (BOB, 1)]

    assert (await balance(pool, ALICE), await balance(pool, BOB)) == (change, amount)
    assert (await unspent(pool, ALICE), await unspent(pool, BOB)) == (change, amount)
    assert await snapshot(pool) != before


async def test_outbox_seq_consecutive_per_user(pool: asyncpg.Pool) -> None:
    await credit(pool, ALICE, 10_000)
    await credit(pool, BOB, 10_000)
    for src, dst in [(ALICE, BOB), (BOB, ALICE), (ALICE, CAROL), (CAROL, BOB), (BOB, ALICE)]:
        assert (await send(pool, src, dst, 100)).status == 200
    rows = await pool.fetch(
        "SELECT user_id, array_agg(user_seq ORDER BY id) AS seqs "
        "FROM outbox GROUP BY user_id ORDER BY user_id"
    )
    by_user = {r["user_id"]: r["seqs"] for r in rows}
    assert by_user == {ALICE: [1, 2, 3, 4, 5], BOB: [1, 2, 3, 4, 5], CAROL: [1, 2]}


# --- idempotency through the function -------------------------------------------------------


async def test_idempotent_replay_runs_once(pool: asyncpg.Pool) -> None:
    await credit(pool, ALICE, 1_000)
    key = Idempotency("bot", "pay-1")
    first = await send(pool, ALICE, BOB, 300, idem=key)
    again = await send(pool, ALICE, BOB, 300, idem=key)
    assert first.status == again.status == 200
    assert first.json() == again.json()
    assert (
        await pool.fetchval("SELECT count(*) FROM virtual_transactions WHERE kind = 'transfer'")
        == 1
    )
    assert await balance(pool, ALICE) == 700

    reused = await send(pool, ALICE, BOB, 301, idem=key)
    assert reused.status == 409
    assert reused.code == "idempotency_key_reused"
    other_endpoint = await admin_move(
        pool, SIGNER, AdminCommand(AdminMove.CREDIT, ALICE, "BTC", 300, "memo"), key
    )
    assert other_endpoint.status == 409
    assert (
        await pool.fetchval("SELECT count(*) FROM virtual_transactions WHERE kind = 'transfer'")
        == 1
    )
    assert await balance(pool, ALICE) == 700

    other_owner = await send(pool, ALICE, BOB, 300, idem=Idempotency("other", "pay-1"))
    assert other_owner.status == 200
    assert other_owner.json()["transfer_id"] != first.json()["transfer_id"]
    assert await balance(pool, ALICE) == 400


async def test_idempotent_refusal_is_replayed(pool: asyncpg.Pool) -> None:
    """A refusal is an answer too: the same key still answers it after the balance arrives."""
    key = Idempotency("bot", "pay-2")
    refused = await send(pool, ALICE, BOB, 500, idem=key)
    assert refused.status == 404
    await credit(pool, ALICE, 1_000)
    replay = await send(pool, ALICE, BOB, 500, idem=key)
    assert (replay.status, replay.json()) == (404, refused.json())
    assert await balance(pool, ALICE) == 1_000
    assert await pool.fetchval("SELECT count(*) FROM virtual_transactions") == 1


async def test_idempotent_concurrent_racers_move_once(pool: asyncpg.Pool) -> None:
    await credit(pool, ALICE, 1_000)
    key = Idempotency("bot", "race")
    outcomes = await asyncio.gather(*(send(pool, ALICE, BOB, 100, idem=key) for _ in range(10)))
    assert {o.status for o in outcomes} == {200}
    assert len({o.body for o in outcomes}) == 1
    assert (
        await pool.fetchval("SELECT count(*) FROM virtual_transactions WHERE kind = 'transfer'")
        == 1
    )
    assert (await balance(pool, ALICE), await balance(pool, BOB)) == (900, 100)


async def test_concurrent_spenders_never_overdraw(pool: asyncpg.Pool) -> None:
    await credit(pool, ALICE, 1_000)
    outcomes = await asyncio.gather(*(send(pool, ALICE, BOB + i, 100) for i in range(25)))
    assert sorted(o.status for o in outcomes) == [200] * 10 + [409] * 15
    assert await balance(pool, ALICE) == 0
    assert await unspent(pool, ALICE) == 0
    received = await pool.fetchval(
        "SELECT sum(spendable) FROM ln_user_balances WHERE user_id <> $1", ALICE
    )
    assert received == 1_000


async def test_concurrent_first_receipts_create_the_recipients_node_once(
    pool: asyncpg.Pool,
) -> None:
    """Senders race to a recipient that has no node yet: each transfer creates it, and the
    losers must find the winner's node, not fail on its node_id (a 500 before: the insert only
    named user_id as its conflict target, so a race on the node_id key raised)."""
    # 40 rounds in `make test`, 8 in `make test-fast` (the hypothesis profile's share).
    for round_ in range(examples(40)):
        recipient = 5_000 + round_
        senders = range(5_100 + 10 * round_, 5_110 + 10 * round_)
        for sender in senders:
            await credit(pool, sender, 1_000)
        outcomes = await asyncio.gather(*(send(pool, s, recipient, 100) for s in senders))
        assert {o.status for o in outcomes} == {200}
        assert await balance(pool, recipient) == 1_000


# --- assets ---------------------------------------------------------------------------------


async def test_rgb_asset_balances_are_separate(pool: asyncpg.Pool) -> None:
    await credit(pool, ALICE, 5_000, "BTC")
    await credit(pool, ALICE, 50, RGB)

    outcome = await send(pool, ALICE, BOB, 20, RGB)
    assert outcome.status == 200, outcome.body
    body = outcome.json()
    assert body["asset_amount"] == 20
    assert "amount_msat" not in body
    assert body["sender_balance"] == {"asset_amount": 30}

    assert (await balance(pool, ALICE, "BTC"), await balance(pool, ALICE, RGB)) == (5_000, 30)
    assert (await balance(pool, BOB, "BTC"), await balance(pool, BOB, RGB)) == (None, 20)
    assert await unspent(pool, ALICE, "BTC") == 5_000  # BTC coins untouched by the asset spend

    too_much = await send(pool, ALICE, BOB, 31, RGB)  # plenty of BTC does not help
    assert too_much.status == 409
    btc = await send(pool, BOB, ALICE, 1, "BTC")  # an asset balance does not pay BTC
    assert btc.status == 409
    assert (await balance(pool, ALICE, RGB), await balance(pool, BOB, RGB)) == (30, 20)


# --- the corruption guard -------------------------------------------------------------------

TAMPERING = [
    (
        "cached balance raised",
        f"UPDATE ln_user_balances SET spendable = 1500 WHERE user_id = {ALICE}",
        "transfer",
    ),
    (
        "cached balance lowered",
        f"UPDATE ln_user_balances SET spendable = 500 WHERE user_id = {ALICE}",
        "transfer",
    ),
    (
        "coin added",
        "INSERT INTO user_utxos (user_id, asset_id, amount, created_tx) "
        f"VALUES ({ALICE}, 'BTC', 7, {FIRST_TX})",
        "transfer",
    ),
    (
        "cached balance raised, admin debit",
        f"UPDATE ln_user_balances SET spendable = 1500 WHERE user_id = {ALICE}",
        "debit",
    ),
]


@pytest.mark.parametrize(
    ("tamper", "operation"), [(t[1], t[2]) for t in TAMPERING], ids=[t[0] for t in TAMPERING]
)
async def test_spend_refuses_corrupted_balance(
    pool: asyncpg.Pool, tamper: str, operation: str
) -> None:
    await credit(pool, ALICE, 1_000)
    await pool.execute(tamper)
    before = await snapshot(pool)

    with pytest.raises(asyncpg.PostgresError) as caught:
        if operation == "transfer":
            await send(pool, ALICE, BOB, 100)
        else:
            await admin_move(
                pool, SIGNER, AdminCommand(AdminMove.DEBIT, ALICE, "BTC", 100, "fix"), NO_KEY
            )
    assert caught.value.sqlstate == "XX001"  # data_corrupted
    assert "ledger corruption" in str(caught.value)
    assert await snapshot(pool) == before


async def test_concurrent_mix_with_new_recipients_keeps_invariants(pool: asyncpg.Pool) -> None:
    """Transfers to users who do not exist yet, racing with those users spending.

    A recipient created by another transaction after this one took its locks is not locked up
    front; its coin and balance must still never be lost or double counted.
    """
    funded = [ALICE, BOB]
    for user in funded:
        await credit(pool, user, 100_000)
    newcomers = [5_000 + i for i in range(6)]
    rng = random.Random(3)
    moves = []
    for _ in range(300):
        src = rng.choice(funded + newcomers)
        dst = rng.choice([u for u in funded + newcomers if u != src])
        moves.append(send(pool, src, dst, rng.randint(1, 400)))
    outcomes = await asyncio.gather(*moves)
    assert {o.status for o in outcomes} <= {200, 404, 409}
    assert sum(o.status == 200 for o in outcomes) >= 100

    mismatched = await pool.fetch(
        "SELECT b.user_id, b.spendable, coalesce(sum(c.amount), 0) AS coins "
        "FROM ln_user_balances b LEFT JOIN user_utxos c ON c.user_id = b.user_id "
        "AND c.asset_id = b.asset_id AND c.spent_tx IS NULL GROUP BY 1, 2 "
        "HAVING b.spendable <> coalesce(sum(c.amount), 0)"
    )
    assert mismatched == []
    assert await pool.fetchval("SELECT sum(spendable) FROM ln_user_balances") == 200_000
    async with pool.acquire() as conn:
        report = await run_audit(conn)
    assert report.differences == []
