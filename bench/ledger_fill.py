"""A large ledger made by COPY, row for row what the money functions would have written, so that
`vnode audit` passes on it (bench/scale.py).

Each user is funded once by the operator (what `vnode_admin_move('admin_credit', ...)` writes:
a journal row from operator_funding, a coin, a history row, an `admin.credit` event, the
operator_funding balance), then transfers are replayed in order as `vnode_transfer` books them:
a journal row; every unspent coin of the sender spent by it; a coin for the recipient and one
for the sender's change; the cached balances; an 'out' and an 'in' history row; both users'
next event numbers and a `transfer.completed` event for each (already fanned out: no channel
is behind). The coins are tracked user by user so that the unspent ones add up to each cached
balance, and the simulation refuses a transfer above the sender's balance, as the database
would.

The transfers come in rounds. A round puts its users in a random order and each one pays the
next (the last pays the first), the same amount: everyone sends once and receives once, so
balances never drift far. The first round covers every user, each next round the first half
of the previous one's, down to `busy` users, and the remaining rounds those `busy` users: a few
users with thousands of history rows (deep pages for the history benchmark), most with ten.

The rows go straight into `COPY ... FROM STDIN` of one psql per table, written while the
transfers are replayed, so PostgreSQL loads while Python generates. Foreign-key triggers are
off during the load (session_replication_role = replica), as in bench/console.py: the rows are
made to fit them, and checking 30 million references one by one would take longer than the
benchmark; `vnode audit` then checks the money.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

import asyncpg

from vnode.db.embedded import bin_dir

FUND_MSAT = 100_000_000  # each user's operator credit: 100,000 sats
OPERATOR = -1  # system account operator_funding
CREDIT_MEMO = "bench funding"
FLUSH_ROWS = 5_000  # lines gathered per table before a write to its psql


def pubkey(user_id: int) -> str:
    """A stand-in node pubkey of the right form, unique per user."""
    return f"02{user_id:064x}"


@dataclass(frozen=True)
class Plan:
    users: int
    history: int  # history rows in all: one per credit, two per transfer
    busy: int = 1000  # users of the small rounds, who get the long histories
    days: int = 30  # the journal spans the last `days` days
    seed: int = 13

    @property
    def transfers(self) -> int:
        return max(0, (self.history - self.users) // 2)


def rounds(plan: Plan, rng: random.Random) -> Iterator[tuple[int, int, int]]:
    """(sender, recipient, amount) of every transfer, in booking order."""
    made, size, number = 0, plan.users, 0
    while made < plan.transfers:
        order = list(range(1, size + 1))
        rng.shuffle(order)
        amount = 1000 + (number * 7919) % 5000  # msat, the same for the whole round
        for j in range(size):
            if made == plan.transfers:
                return
            yield order[j], order[(j + 1) % size], amount
            made += 1
        size, number = max(min(plan.busy, plan.users), size // 2), number + 1


class CopyPipe:
    """`COPY table (columns) FROM STDIN` in a psql of its own, fed line by line."""

    def __init__(self, dsn: str, table: str, columns: list[str]) -> None:
        self.table = table
        env = {**os.environ, "PGOPTIONS": "-c session_replication_role=replica"}
        sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        self.proc = subprocess.Popen(
            [str(bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", sql],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            bufsize=1 << 20,
        )
        assert self.proc.stdin is not None
        self.stdin: IO[bytes] = self.proc.stdin
        self.lines: list[str] = []
        self.rows = 0

    def add(self, line: str) -> None:
        self.lines.append(line)
        if len(self.lines) >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.lines:
            text = "".join(self.lines)
            self.rows += text.count("\n")  # a line added may hold several rows
            self.stdin.write(text.encode())
            self.lines = []

    def close(self) -> None:
        self.flush()
        self.stdin.close()
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        if self.proc.wait() != 0:
            raise RuntimeError(f"COPY {self.table} failed: {err.decode().strip()}")


class Clock:
    """created_at of the n-th of `count` journal rows, evenly over the last `days` days, as
    COPY text and as the API's JSON timestamps (one string per second, reused)."""

    def __init__(self, now: int, days: int, count: int) -> None:
        self.start = now - days * 86400
        self.span = days * 86400
        self.count = max(count, 1)
        self._second = -1
        self._text = ("", "")

    def at(self, n: int) -> tuple[str, str]:
        second = self.start + self.span * n // self.count
        if second != self._second:
            tm = time.gmtime(second)
            self._second = second
            self._text = (
                time.strftime("%Y-%m-%d %H:%M:%S+00", tm),
                time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", tm),
            )
        return self._text


def fill(dsn: str, plan: Plan, now: int, log: Callable[[str], None]) -> dict[str, int]:
    """Load the ledger of `plan` into the migrated, empty database `dsn`; returns the rows
    written per table. Then `finish` sets the sequences and the operator's balance."""
    rng = random.Random(plan.seed)
    users = plan.users
    journal_rows = users + plan.transfers
    clock = Clock(now, plan.days, journal_rows)
    pipes = {
        "journal": CopyPipe(
            dsn,
            "virtual_transactions",
            [
                "id",
                "kind",
                "asset_id",
                "from_account",
                "to_account",
                "amount",
                "memo",
                "created_at",
            ],
        ),
        "coins": CopyPipe(
            dsn,
            "user_utxos",
            ["id", "user_id", "asset_id", "amount", "created_tx", "spent_tx", "created_at"],
        ),
        "history": CopyPipe(
            dsn,
            "ln_user_transactions",
            [
                "user_id",
                "tx_id",
                "kind",
                "direction",
                "asset_id",
                "amount",
                "counterparty",
                "memo",
                "created_at",
            ],
        ),
        "outbox": CopyPipe(
            dsn,
            "outbox",
            ["event_type", "user_id", "user_seq", "payload", "created_at", "fanned_out_at"],
        ),
    }
    journal, coins_out, history, outbox = (
        pipes["journal"],
        pipes["coins"],
        pipes["history"],
        pipes["outbox"],
    )
    balance = array("q", [0]) * (users + 1)
    seq = array("q", [0]) * (users + 1)
    last_tx = array("q", [0]) * (users + 1)
    # Each user's unspent coins: (coin id, amount, created_tx, created_at), a few at a time.
    unspent: list[list[tuple[int, int, int, str]]] = [[] for _ in range(users + 1)]
    coin_id = 0
    started = time.monotonic()
    try:
        # The operator's credits: transactions 1 .. users.
        for user in range(1, users + 1):
            tx = user
            at, at_json = clock.at(tx)
            journal.add(
                f"{tx}\tadmin_credit\tBTC\t{OPERATOR}\t{user}\t{FUND_MSAT}\t{CREDIT_MEMO}\t{at}\n"
            )
            coin_id += 1
            unspent[user].append((coin_id, FUND_MSAT, tx, at))
            balance[user] = FUND_MSAT
            history.add(
                f"{user}\t{tx}\tadmin_credit\tin\tBTC\t{FUND_MSAT}\toperator_funding\t"
                f"{CREDIT_MEMO}\t{at}\n"
            )
            seq[user] = 1
            last_tx[user] = tx
            outbox.add(
                f"admin.credit\t{user}\t1\t"
                f'{{"amount_msat": {FUND_MSAT}, "amount_sats": {FUND_MSAT // 1000}, '
                f'"transaction_id": {tx}, "direction": "in", "asset_id": "BTC", '
                f'"reason": "{CREDIT_MEMO}", "created_at": "{at_json}"}}\t{at}\t{at}\n'
            )
        log(f"credits of {users:,} users written ({time.monotonic() - started:.0f}s)")
        # The transfers: transactions users + 1 .. users + transfers.
        tx = users
        for sender, recipient, amount in rounds(plan, rng):
            tx += 1
            at, at_json = clock.at(tx)
            old = balance[sender]
            if old < amount:
                raise RuntimeError(f"plan error: user {sender} has {old}, sends {amount}")
            journal.add(f"{tx}\ttransfer\tBTC\t{sender}\t{recipient}\t{amount}\t\\N\t{at}\n")
            spent = 0
            for cid, camount, ctx, cat in unspent[sender]:
                spent += camount
                coins_out.add(f"{cid}\t{sender}\tBTC\t{camount}\t{ctx}\t{tx}\t{cat}\n")
            if spent != old:
                raise RuntimeError(f"plan error: user {sender} coins {spent} balance {old}")
            new = old - amount
            coin_id += 1
            unspent[recipient].append((coin_id, amount, tx, at))
            if new > 0:
                coin_id += 1
                unspent[sender] = [(coin_id, new, tx, at)]
            else:
                unspent[sender] = []
            balance[sender] = new
            balance[recipient] += amount
            last_tx[sender] = last_tx[recipient] = tx
            sender_node, recipient_node = f"vn_{sender}", f"vn_{recipient}"
            history.add(
                f"{sender}\t{tx}\ttransfer\tout\tBTC\t{amount}\t{recipient_node}\t\\N\t{at}\n"
                f"{recipient}\t{tx}\ttransfer\tin\tBTC\t{amount}\t{sender_node}\t\\N\t{at}\n"
            )
            seq[sender] += 1
            seq[recipient] += 1
            event = (
                f'{{"amount_msat": {amount}, "amount_sats": {amount // 1000}, '
                f'"transfer_id": {tx}, "asset_id": "BTC", "memo": null, '
                f'"created_at": "{at_json}", '
            )
            outbox.add(
                f"transfer.completed\t{sender}\t{seq[sender]}\t{event}"
                f'"direction": "out", "counterparty": "{recipient_node}"}}\t{at}\t{at}\n'
                f"transfer.completed\t{recipient}\t{seq[recipient]}\t{event}"
                f'"direction": "in", "counterparty": "{sender_node}"}}\t{at}\t{at}\n'
            )
            if (tx - users) % 500_000 == 0:
                log(f"{tx - users:,} of {plan.transfers:,} transfers written")
        # What is still unspent, the nodes with their event numbers, the cached balances.
        for user in range(1, users + 1):
            for cid, camount, ctx, cat in unspent[user]:
                coins_out.add(f"{cid}\t{user}\tBTC\t{camount}\t{ctx}\t\\N\t{cat}\n")
        for pipe in pipes.values():
            pipe.close()
        rows = {pipe.table: pipe.rows for pipe in pipes.values()}
        nodes = CopyPipe(
            dsn, "virtual_nodes", ["user_id", "node_id", "pubkey", "event_seq", "created_at"]
        )
        balances = CopyPipe(
            dsn, "ln_user_balances", ["user_id", "asset_id", "spendable", "pending", "updated_at"]
        )
        for user in range(1, users + 1):
            created, _ = clock.at(user)
            nodes.add(f"{user}\tvn_{user}\t{pubkey(user)}\t{seq[user]}\t{created}\n")
            changed, _ = clock.at(last_tx[user])
            balances.add(f"{user}\tBTC\t{balance[user]}\t0\t{changed}\n")
        for pipe in (nodes, balances):
            pipe.close()
            rows[pipe.table] = pipe.rows
    except BaseException:
        for pipe in pipes.values():
            pipe.proc.kill()
            pipe.proc.wait()
        raise
    rows["_coins"] = coin_id
    rows["_journal"] = journal_rows
    return rows


async def finish(dsn: str, plan: Plan, rows: dict[str, int]) -> None:
    """After fill: the sequences past the rows written, the operator's balance, the console's
    traffic roll-up marked as caught up (bench/console.py measures that catch-up), then VACUUM
    ANALYZE (the visibility map and statistics a long-running database would have)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT setval('virtual_transactions_id_seq', $1)", rows["_journal"])
        await conn.execute("SELECT setval('user_utxos_id_seq', $1)", rows["_coins"])
        await conn.execute(
            "INSERT INTO system_balances (account_id, asset_id, balance) VALUES ($1, 'BTC', $2) "
            "ON CONFLICT (account_id, asset_id) DO UPDATE SET balance = excluded.balance",
            OPERATOR,
            -plan.users * FUND_MSAT,
        )
        await conn.execute(
            "UPDATE console_traffic_state SET rolled_through = date_trunc('minute', now())"
        )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
