"""Publishing a proof-of-liabilities epoch for a million users (issue 16: at most 60 s, bounded
memory), against copying the same balances out of PostgreSQL.

    python bench/proofs.py                   # 1,000,000 users, about 2 minutes in all
    python bench/proofs.py --users 100000

Starts a throwaway embedded PostgreSQL cluster, migrates a database, and loads `--users` virtual
nodes and BTC balances with COPY (the node pubkeys are stand-ins of the right form: deriving a
million BIP32 keys is not what is measured). Then times `vnode.proofs.publish.publish_all`: the
snapshot, the salts, the leaves written and ordered by PostgreSQL, the tree built in a stream,
the statement signed and stored. The process's peak RSS during the publication is read from the
kernel (VmHWM, reset just before). The reference, in the same run: `COPY (the same balance
query) TO STDOUT`, the floor of reading what an epoch covers. Printed last:

    ratio copy/epoch: 0.NN
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import asyncpg
import typer
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

from harness import options as opt
from harness.postgres import TemporaryCluster, create_database
from harness.usage import hwm_kib, rss_kib
from vnode.db.migrate import migrate
from vnode.keys import SoftwareSigner
from vnode.proofs import publish

out = Console(width=110)
BATCH = 50_000
BUDGET_S = 60.0


def _rows(users: int, start: int) -> Iterator[list[tuple[int, str, str]]]:
    for first in range(start, start + users, BATCH):
        ids = range(first, min(first + BATCH, start + users))
        yield [(i, f"vn_{i}", "02" + hashlib.sha256(str(i).encode()).hexdigest()) for i in ids]


async def _load(dsn: str, users: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        for nodes in _rows(users, 1):
            await conn.copy_records_to_table(
                "virtual_nodes", records=nodes, columns=["user_id", "node_id", "pubkey"]
            )
            balances = [(n[0], "BTC", (n[0] * 7919) % 10**9, 0) for n in nodes]
            await conn.copy_records_to_table(
                "ln_user_balances",
                records=balances,
                columns=["user_id", "asset_id", "spendable", "pending"],
            )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def _copy_out(dsn: str) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        started = time.monotonic()
        await conn.copy_from_query(publish.BALANCES_SQL, "BTC", output=_discard)
        return time.monotonic() - started
    finally:
        await conn.close()


async def _discard(_chunk: bytes) -> None:
    return None


async def _publish(dsn: str) -> tuple[float, int, int, int]:
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=2)
    try:
        signer = SoftwareSigner(bytes.fromhex("42" * 32))
        baseline_kib = rss_kib(os.getpid())
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        started = time.monotonic()
        (epoch,) = await publish.publish_all(pool, signer)
        elapsed = time.monotonic() - started
        return elapsed, baseline_kib, hwm_kib(os.getpid()), int(epoch.statement["leaves"])
    finally:
        await pool.close()


def main(
    users: Annotated[int, typer.Option(help="Users (each with a BTC balance)")] = 1_000_000,
    json_path: opt.JsonOut = None,
) -> None:
    """Seconds and peak memory of publishing an epoch of `--users` balances."""
    cluster = TemporaryCluster(prefix="vnode-bench-proofs-")
    try:
        server = cluster.start()
        dsn = asyncio.run(create_database(server, prefix="bench_proofs_"))
        out.print(f"machine: {common.machine_summary()}")
        out.print(f"PostgreSQL {common.server_version(dsn)}")
        started = time.monotonic()
        asyncio.run(_load(dsn, users))
        out.print(f"loaded {users:,} users by COPY in {time.monotonic() - started:.1f}s")
        common.checkpoint(dsn)
        copy_s = asyncio.run(_copy_out(dsn))
        out.print(f"reference: COPY of the balances out in {copy_s:.2f}s")
        common.checkpoint(dsn)
        epoch_s, baseline_kib, peak_kib, leaves = asyncio.run(_publish(dsn))
        out.print(
            f"epoch of {users:,} users ({leaves:,} leaves padded) published in {epoch_s:.1f}s "
            f"(budget {BUDGET_S:.0f}s); bench process RSS {baseline_kib / 1024:.0f} MiB before, "
            f"peak {peak_kib / 1024:.0f} MiB during"
        )
        common.finish(
            json_path,
            "proofs",
            {
                "users": users,
                "epoch_s": epoch_s,
                "copy_s": copy_s,
                "rss_before_mib": baseline_kib / 1024,
                "rss_peak_mib": peak_kib / 1024,
            },
            ("copy/epoch", copy_s / epoch_s),
            postgres=common.server_version(dsn),
        )
        if epoch_s > BUDGET_S:
            raise typer.Exit(1)
    finally:
        cluster.stop()


if __name__ == "__main__":
    typer.run(main)
