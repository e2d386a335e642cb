"""Console page loads with 1M users and 10M history rows (issue 14: every page under 200 ms).

    python bench/console.py                       # 1,000,000 users, 10,000,000 history rows
    python bench/console.py --users 100000 --history 1000000 --loads 10   # a quicker look

Starts a throwaway cluster and `vnode serve` (as the other benchmarks do), fills the database by
COPY: --users virtual nodes with a BTC balance each, --history / 2 transfers in the journal over
the last 30 days with both users' history rows (--history rows), --payments external payments
(1 in 200 still pending) and as many paid invoices, and an event per user. While loading, the
foreign keys' triggers are off (session_replication_role = replica): the rows are made to fit
them, and checking 10M references one by one would take longer than the benchmark. Then the
console's traffic roll-up catches up on the 30 days (its time is printed), ANALYZE, and an
admin logs in through the login form.

Each page is then loaded --loads times in turn (one request at a time, keep-alive, the time
from request to the last byte of the answer, as a browser waits for it): overview, traffic
for the last hour, day and 30 days, pending payments, one payment, the user search, the
busiest user's page, alerts and webhooks, keys, the audit trail. Printed: p50, p99 and max per
page, and last `ratio slowest p99/200ms: 0.NN` (below 1: every page under the 200 ms goal).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Annotated

import asyncpg
import httpx
import typer
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

from harness import options as opt
from vnode.console.traffic import roll_up

console = Console(stderr=True)
out = Console(width=110)
GOAL_MS = 200.0
DAYS = 30
CHUNK_ROWS = 50_000
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def pubkey(user_id: int) -> str:
    return "02" + hashlib.sha256(user_id.to_bytes(8, "big")).hexdigest()


def _rows(count: int, line: Callable[[int], str]) -> Iterator[bytes]:
    """COPY text, CHUNK_ROWS lines at a time."""
    for start in range(0, count, CHUNK_ROWS):
        yield "".join(line(i) for i in range(start, min(count, start + CHUNK_ROWS))).encode()


async def _source(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def copy(
    conn: asyncpg.Connection, table: str, columns: list[str], chunks: Iterator[bytes]
) -> None:
    started = time.monotonic()
    await conn.copy_to_table(table, source=_source(chunks), columns=columns, format="text")
    console.log(f"COPY {table}: {time.monotonic() - started:.1f}s")


async def fill(dsn: str, users: int, history: int, payments: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET session_replication_role = replica")
        now = await conn.fetchval("SELECT extract(epoch FROM now())::bigint")

        def stamp(i: int, count: int) -> str:
            seconds = DAYS * 86400 * (count - i) // max(count, 1)
            return time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(now - seconds))

        await copy(
            conn,
            "virtual_nodes",
            ["user_id", "node_id", "pubkey"],
            _rows(users, lambda i: f"{i + 1}\tvn_{i + 1}\t{pubkey(i + 1)}\n"),
        )
        await copy(
            conn,
            "ln_user_balances",
            ["user_id", "asset_id", "spendable", "pending"],
            _rows(users, lambda i: f"{i + 1}\tBTC\t{1_000_000 + i % 997 * 1000}\t0\n"),
        )
        # The balances were credited by the operator: the system account the overview reads
        # what users are owed from (ledger/solvency.liabilities_from_accounts) says so.
        await conn.execute(
            "INSERT INTO system_balances (account_id, asset_id, balance) "
            "SELECT -1, 'BTC', -sum(spendable) FROM ln_user_balances "
            "ON CONFLICT (account_id, asset_id) DO UPDATE SET balance = excluded.balance"
        )
        moves = history // 2

        def sender(i: int) -> int:
            return (i * 7919) % users + 1

        def receiver(i: int) -> int:
            # Another user than the sender: an offset of 1 .. users - 1 from them.
            return (sender(i) - 1 + 1 + i % (users - 1)) % users + 1

        first_tx = await conn.fetchval("SELECT nextval('virtual_transactions_id_seq')")
        await copy(
            conn,
            "virtual_transactions",
            ["id", "kind", "asset_id", "from_account", "to_account", "amount", "created_at"],
            _rows(
                moves,
                lambda i: (
                    f"{first_tx + i}\ttransfer\tBTC\t{sender(i)}\t{receiver(i)}\t"
                    f"{1000 + i % 5000}\t{stamp(i, moves)}\n"
                ),
            ),
        )
        await conn.execute(
            "SELECT setval('virtual_transactions_id_seq', $1)", first_tx + moves + payments
        )

        def history_row(j: int) -> str:
            i, side = divmod(j, 2)
            user, other, direction = (
                (sender(i), receiver(i), "out") if side == 0 else (receiver(i), sender(i), "in")
            )
            return (
                f"{user}\t{first_tx + i}\ttransfer\t{direction}\tBTC\t{1000 + i % 5000}\t"
                f"vn_{other}\t{stamp(i, moves)}\n"
            )

        await copy(
            conn,
            "ln_user_transactions",
            [
                "user_id",
                "tx_id",
                "kind",
                "direction",
                "asset_id",
                "amount",
                "counterparty",
                "created_at",
            ],
            _rows(moves * 2, history_row),
        )

        def preimage(i: int) -> str:
            return hashlib.sha256(b"bench-preimage" + i.to_bytes(8, "big")).hexdigest()

        def payment_hash(i: int) -> str:
            return hashlib.sha256(bytes.fromhex(preimage(i))).hexdigest()

        def payment_row(i: int) -> str:
            pending = i % 200 == 0
            status = "pending" if pending else "succeeded"
            done = "\\N" if pending else stamp(i, payments)
            pre = "\\N" if pending else preimage(i)
            fee = "\\N" if pending else "1000"
            return (
                f"{payment_hash(i)}\t{sender(i)}\tlnbcrt-bench-{i}\texternal\t{10_000 + i}\t"
                f"51000\t{fee}\t{status}\t{pre}\t{stamp(i, payments)}\t{done}\t"
                f"{stamp(i, payments)}\t{stamp(i, payments)}\n"
            )

        await copy(
            conn,
            "ln_payments",
            [
                "payment_hash",
                "user_id",
                "invoice",
                "kind",
                "amount_msat",
                "fee_reserve_msat",
                "fee_msat",
                "status",
                "preimage",
                "invoice_expires_at",
                "finished_at",
                "created_at",
                "attempt_started_at",
            ],
            _rows(payments, payment_row),
        )

        def invoice_hash(i: int) -> str:
            return hashlib.sha256(b"bench-invoice" + i.to_bytes(8, "big")).hexdigest()

        await copy(
            conn,
            "ln_invoices",
            [
                "payment_hash",
                "user_id",
                "invoice",
                "amount_msat",
                "expires_at",
                "status",
                "created_at",
            ],
            _rows(
                payments,
                lambda i: (
                    f"{invoice_hash(i)}\t{receiver(i)}\tlnbcrt-bench-in-{i}\t20000\t"
                    f"{stamp(i, payments)}\tpaid\t{stamp(i, payments)}\n"
                ),
            ),
        )
        await copy(
            conn,
            "ln_receipts",
            ["payment_hash", "source", "user_id", "amount_msat", "created_at"],
            _rows(
                payments,
                lambda i: f"{invoice_hash(i)}\tnode\t{receiver(i)}\t20000\t{stamp(i, payments)}\n",
            ),
        )
        await copy(
            conn,
            "outbox",
            ["event_type", "user_id", "user_seq", "payload", "created_at", "fanned_out_at"],
            _rows(
                users,
                lambda i: f"admin.credit\t{i + 1}\t1\t{{}}\t{stamp(i, users)}\t{stamp(i, users)}\n",
            ),
        )
        await conn.execute("SET session_replication_role = origin")
        # As on a first start over an existing ledger: the roll-up starts from the oldest row
        # (the service's worker, started on the empty database, had begun at its start).
        await conn.execute("DELETE FROM console_traffic")
        await conn.execute("UPDATE console_traffic_state SET rolled_through = NULL")
        started = time.monotonic()
        await conn.execute("ANALYZE")
        console.log(f"ANALYZE: {time.monotonic() - started:.1f}s")
    finally:
        await conn.close()


async def catch_up(dsn: str) -> float:
    """The traffic roll-up over the 30 days, as the worker would do it pass after pass."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    started = time.monotonic()
    try:
        while await roll_up(pool) > 0:
            pass
    finally:
        await pool.close()
    return time.monotonic() - started


def measure(url: str, admin_key: str, pages: dict[str, str], loads: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in pages}
    with httpx.Client(base_url=url, timeout=60, follow_redirects=False) as client:
        form = client.get("/console/login")
        csrf = _CSRF.search(form.text)
        assert csrf is not None
        login = client.post("/console/login", data={"csrf": csrf[1], "key": admin_key})
        assert login.status_code == 303, login.text[:300]
        for path in pages.values():  # one warm load each: templates, plans, caches
            assert client.get(path).status_code in (200, 303), path
        for _ in range(loads):
            for name, path in pages.items():
                started = time.perf_counter()
                answer = client.get(path)
                times[name].append((time.perf_counter() - started) * 1000)
                assert answer.status_code in (200, 303), (path, answer.status_code)
    return times


def main(
    users: Annotated[int, typer.Option(help="Virtual nodes, each with a BTC balance")] = 1_000_000,
    history: Annotated[int, typer.Option(help="History rows (two per transfer)")] = 10_000_000,
    payments: Annotated[int, typer.Option(help="External payments and paid invoices")] = 200_000,
    loads: Annotated[int, typer.Option(help="Loads of each page measured")] = 30,
    json_path: opt.JsonOut = None,
) -> None:
    """Console page-load times with a million users' ledger."""
    workdir = Path(tempfile.mkdtemp(prefix="vnode-bench-console-"))
    running: common.RunningService | None = None
    try:
        with console.status("starting PostgreSQL and vnode serve"):
            running = common.RunningService.start(workdir, 1)
        pg_version = common.server_version(running.dsn)
        out.print(f"machine: {common.machine_summary()}")
        out.print(f"PostgreSQL {pg_version}; {users:,} users, {history:,} history rows")
        started = time.monotonic()
        asyncio.run(fill(running.dsn, users, history, payments))
        out.print(f"loaded in {time.monotonic() - started:.0f}s")
        rolled_s = asyncio.run(catch_up(running.dsn))
        out.print(f"traffic roll-up of {DAYS} days caught up in {rolled_s:.1f}s")
        common.checkpoint(running.dsn)
        busiest = int(
            common.psql(
                running.dsn,
                "-tAc",
                "SELECT user_id FROM ln_user_transactions GROUP BY 1 ORDER BY count(*) DESC "
                "LIMIT 1",
            ).strip()
        )
        pages = {
            "overview": "/console",
            "traffic, hour": "/console/traffic?window=hour",
            "traffic, day": "/console/traffic?window=day",
            "traffic, 30 days": "/console/traffic?window=month",
            "pending payments": "/console/payments",
            "a payment": "/console/payments/1",
            "user search": f"/console/users?q=vn_{users // 2}",
            "busiest user": f"/console/users/{busiest}",
            "alerts, webhooks": "/console/alerts",
            "keys": "/console/keys",
            "audit trail": "/console/actions",
        }
        times = measure(running.url, running.admin_key, pages, loads)
        table = Table(title=f"console page loads, {loads} each (ms)")
        for column in ("page", "p50", "p99", "max"):
            table.add_column(column, justify="left" if column == "page" else "right")
        figures: dict[str, float] = {"roll-up catch-up s": rolled_s}
        worst = 0.0
        for name, samples in times.items():
            ordered = sorted(samples)
            p50 = statistics.median(ordered)
            p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
            worst = max(worst, p99)
            figures[f"{name} p50 ms"] = p50
            figures[f"{name} p99 ms"] = p99
            table.add_row(name, f"{p50:.1f}", f"{p99:.1f}", f"{ordered[-1]:.1f}")
        out.print(table)
        common.finish(
            json_path,
            "console",
            figures,
            ("slowest p99/200ms", worst / GOAL_MS),
            postgres=pg_version,
        )
    finally:
        with console.status("stopping"):
            if running is not None:
                running.stop()
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    typer.run(main)
