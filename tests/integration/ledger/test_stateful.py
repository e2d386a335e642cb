"""Random sequences of credits, transfers and debits against a Python model of the ledger.

Hypothesis state machines are synchronous, so each run drives its own event loop and pool on a
database of its own, copied from the migrated template.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Coroutine
from typing import Any, TypeVar

import asyncpg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from tests.support import create_database, with_database
from vnode.db.dsn import database_of
from vnode.keys import SoftwareSigner
from vnode.ledger.admin import AdminCommand, AdminMove, admin_move
from vnode.ledger.audit import run_audit
from vnode.ledger.calls import Idempotency, LedgerAnswer
from vnode.ledger.transfer_batch import TransferArgs, transfer_batch
from vnode.ledger.transfers import TransferCommand, transfer

T = TypeVar("T")
SIGNER = SoftwareSigner(bytes.fromhex("11" * 32))
NO_KEY = Idempotency("test", None)
RGB = "rgb:CJkb4YZw-jRiz2sk-~PARPio-wtVYI1c-XAEYCqO-wTfvRZ8"
USERS = st.sampled_from([1, 2, 3, 2**40 + 7])
ASSETS = st.sampled_from(["BTC", RGB])
AMOUNTS = st.integers(min_value=1, max_value=5_000)
OPERATOR = -1  # operator_funding system account


class LedgerMachine(RuleBasedStateMachine):
    server_dsn: str = ""
    template: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dsn = self.run(create_database(self.server_dsn, self.template))
        self.pool = self.run(self._create_pool())
        self.balances: dict[tuple[int, str], int] = defaultdict(int)  # the model
        self.system: dict[str, int] = defaultdict(int)
        self.nodes: set[int] = set()

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(work)

    def teardown(self) -> None:
        # terminate(), not close(): close() waits for every connection to be released, and a
        # fresh-clone run hung there once after batched transfers (an unreleased connection,
        # not yet explained: see the issue 13 note). The checks above have all run by now.
        self.pool.terminate()
        self.run(self._drop())
        self.loop.close()

    async def _create_pool(self) -> asyncpg.Pool:
        # Built inside the coroutine, so the pool binds to this machine's loop.
        pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=2)
        assert pool is not None
        return pool

    async def _drop(self) -> None:
        conn = await asyncpg.connect(with_database(self.server_dsn, "postgres"))
        try:
            await conn.execute(f"DROP DATABASE {database_of(self.dsn)}")
        finally:
            await conn.close()

    def admin(self, move: AdminMove, user: int, asset: str, amount: int) -> LedgerAnswer:
        command = AdminCommand(move, user, asset, amount, "model")
        return self.run(admin_move(self.pool, SIGNER, command, NO_KEY))

    def expect_refusal(self, outcome: LedgerAnswer, user: int, asset: str, amount: int) -> None:
        if user not in self.nodes:
            assert (outcome.status, outcome.code) == (404, "unknown_user")
        else:
            assert amount > self.balances[user, asset]
            assert (outcome.status, outcome.code) == (409, "insufficient_balance")

    @rule(user=USERS, asset=ASSETS, amount=AMOUNTS)
    def credit(self, user: int, asset: str, amount: int) -> None:
        outcome = self.admin(AdminMove.CREDIT, user, asset, amount)
        assert outcome.status == 200, outcome.body
        self.balances[user, asset] += amount
        self.system[asset] -= amount
        self.nodes.add(user)
        assert _balance_in(outcome, asset) == self.balances[user, asset]

    @rule(user=USERS, asset=ASSETS, amount=AMOUNTS)
    def debit(self, user: int, asset: str, amount: int) -> None:
        outcome = self.admin(AdminMove.DEBIT, user, asset, amount)
        if user in self.nodes and amount <= self.balances[user, asset]:
            assert outcome.status == 200, outcome.body
            self.balances[user, asset] -= amount
            self.system[asset] += amount
            assert _balance_in(outcome, asset) == self.balances[user, asset]
        else:
            self.expect_refusal(outcome, user, asset, amount)

    @rule(src=USERS, dst=USERS, asset=ASSETS, amount=AMOUNTS)
    def send(self, src: int, dst: int, asset: str, amount: int) -> None:
        if src == dst:
            return  # refused by the API before the ledger; covered in test_ledger_rules
        command = TransferCommand(src, dst, asset, amount, None)
        outcome = self.run(transfer(self.pool, SIGNER, command, NO_KEY))
        if src in self.nodes and amount <= self.balances[src, asset]:
            assert outcome.status == 200, outcome.body
            self.balances[src, asset] -= amount
            self.balances[dst, asset] += amount
            self.nodes.add(dst)
            body = outcome.json()
            assert body["sender_balance"] == _balance_json(asset, self.balances[src, asset])
        else:
            self.expect_refusal(outcome, src, asset, amount)

    @rule(moves=st.lists(st.tuples(USERS, USERS, ASSETS, AMOUNTS), min_size=1, max_size=6))
    def send_batch(self, moves: list[tuple[int, int, str, int]]) -> None:
        """Several transfers in one call and one commit (docs/adr/0026): item by item, each
        answers as it would alone, seeing the items before it."""
        moves = [move for move in moves if move[0] != move[1]]
        if not moves:
            return
        batch = [
            TransferArgs(src, dst, SIGNER.node_pubkey(dst), asset, amount, None, "test", None, b"-")
            for src, dst, asset, amount in moves
        ]
        answers = self.run(transfer_batch(self.pool, batch))
        for (src, dst, asset, amount), outcome in zip(moves, answers, strict=True):
            if src in self.nodes and amount <= self.balances[src, asset]:
                assert outcome.status == 200, outcome.body
                self.balances[src, asset] -= amount
                self.balances[dst, asset] += amount
                self.nodes.add(dst)
                body = outcome.json()
                assert body["sender_balance"] == _balance_json(asset, self.balances[src, asset])
            else:
                self.expect_refusal(outcome, src, asset, amount)

    @rule(user=USERS, asset=ASSETS)
    def send_everything(self, user: int, asset: str) -> None:
        """Spend a balance to exactly zero: no change coin, the cached balance stays at 0."""
        amount = self.balances[user, asset]
        if amount == 0:
            return
        other = 1 if user != 1 else 2
        command = TransferCommand(user, other, asset, amount, "all")
        outcome = self.run(transfer(self.pool, SIGNER, command, NO_KEY))
        assert outcome.status == 200, outcome.body
        self.balances[user, asset] = 0
        self.balances[other, asset] += amount
        self.nodes.add(other)

    @invariant()
    def balances_match_model(self) -> None:
        rows = self.run(
            self.pool.fetch("SELECT user_id, asset_id, spendable, pending FROM ln_user_balances")
        )
        found = {(r["user_id"], r["asset_id"]): r["spendable"] for r in rows}
        assert all(r["pending"] == 0 for r in rows)
        model = {k: v for k, v in self.balances.items() if v}
        assert {k: v for k, v in found.items() if v} == model
        nodes = self.run(self.pool.fetch("SELECT user_id FROM virtual_nodes"))
        assert {r["user_id"] for r in nodes} == self.nodes

    @invariant()
    def coins_match_cached_balances(self) -> None:
        rows = self.run(
            self.pool.fetch(
                "SELECT b.user_id, b.asset_id, b.spendable, coalesce(sum(c.amount), 0) AS coins "
                "FROM ln_user_balances b LEFT JOIN user_utxos c ON c.user_id = b.user_id "
                "AND c.asset_id = b.asset_id AND c.spent_tx IS NULL GROUP BY 1, 2, 3"
            )
        )
        assert [(r["user_id"], r["asset_id"]) for r in rows if r["spendable"] != r["coins"]] == []
        orphans = self.run(
            self.pool.fetchval(
                "SELECT count(*) FROM user_utxos c WHERE spent_tx IS NULL AND NOT EXISTS ("
                "SELECT 1 FROM ln_user_balances b WHERE b.user_id = c.user_id "
                "AND b.asset_id = c.asset_id)"
            )
        )
        assert orphans == 0

    @invariant()
    def conservation(self) -> None:
        rows = self.run(
            self.pool.fetch(
                "SELECT asset_id, sum(amount)::bigint AS total FROM ("
                " SELECT asset_id, spendable + pending AS amount FROM ln_user_balances"
                " UNION ALL SELECT asset_id, balance FROM system_balances) h GROUP BY asset_id"
            )
        )
        assert {r["asset_id"]: r["total"] for r in rows if r["total"]} == {}
        system = self.run(
            self.pool.fetch(
                "SELECT asset_id, balance FROM system_balances WHERE account_id = $1", OPERATOR
            )
        )
        assert {r["asset_id"]: r["balance"] for r in system if r["balance"]} == {
            k: v for k, v in self.system.items() if v
        }

    @invariant()
    def audit_clean(self) -> None:
        async def audit() -> list[object]:
            async with self.pool.acquire() as conn:
                return list((await run_audit(conn)).differences)

        assert self.run(audit()) == []


def test_ledger_matches_model(pg_server: str, template_db: str) -> None:
    machine = type(
        "BoundLedgerMachine", (LedgerMachine,), {"server_dsn": pg_server, "template": template_db}
    )
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=25,
            stateful_step_count=20,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def _balance_json(asset: str, value: int) -> dict[str, int]:
    if asset == "BTC":
        return {"balance_msat": value, "balance_sats": value // 1000}
    return {"asset_amount": value}


def _balance_in(outcome: LedgerAnswer, asset: str) -> int:
    shown = outcome.json()["balance"]
    assert isinstance(shown, dict)
    value = shown["balance_msat" if asset == "BTC" else "asset_amount"]
    assert shown == _balance_json(asset, value)
    return int(value)
