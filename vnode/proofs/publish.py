"""Publishing an epoch: one consistent snapshot of every user's balance, per asset, built into
a Merkle sum tree whose signed root statement is kept forever (docs/PROOFS.md).

The balances, the ledger position and the total owed (`ledger/solvency.liabilities`, the same
figure `vnode audit` and /readyz show) are read in one REPEATABLE READ, READ ONLY transaction;
the tree must sum to exactly that total or nothing is published. A second connection writes the
leaves while the snapshot is read, so memory stays bounded: rows pass in batches, the leaves are
put in their order (by SHA-256 of the salt) by PostgreSQL, and the tree is built in a stream.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from vnode.db.pool import DbConnection
from vnode.domain.ids import BTC
from vnode.domain.timestamps import format_timestamp
from vnode.keys import Signer
from vnode.ledger import solvency
from vnode.proofs.tree import BuiltTree, TreeBuilder
from vnode.proofs.verifier import canonical, statement_digest

log = logging.getLogger(__name__)

BATCH_ROWS = 20_000
SORT_MEMORY = "256MB"
# One publisher at a time across processes (session-level advisory lock; key: "vnPROOFS").
PUBLISH_LOCK = 0x766E50524F4F4653


class ProofsError(RuntimeError):
    """An epoch could not be published; nothing of it was kept."""


@dataclass(frozen=True)
class Published:
    asset_id: str
    epoch: int
    statement: dict[str, Any]
    signature: str


# Every user of the asset, zero balances included: for BTC every virtual node, for an RGB asset
# everyone with a balance row of it. A user's balance is settled (spendable + pending), as in
# ledger/solvency.liabilities.
BALANCES_SQL = """
    SELECT n.user_id, coalesce(b.spendable + b.pending, 0) AS balance
    FROM virtual_nodes n
    LEFT JOIN ln_user_balances b ON b.user_id = n.user_id AND b.asset_id = $1
    WHERE $1 = 'BTC' OR b.user_id IS NOT NULL
    ORDER BY n.user_id"""


async def publish_all(pool: asyncpg.Pool, signer: Signer) -> list[Published]:
    """Publish one epoch of every asset from one snapshot; [] when another process is at it."""
    if pool.get_max_size() < 2:
        # It holds two connections at once: from a pool of one it would wait for itself.
        raise ProofsError("publishing needs a pool of at least 2 connections (VNODE_DB_POOL_MAX)")
    async with pool.acquire() as writer, pool.acquire() as reader:
        if not await writer.fetchval("SELECT pg_try_advisory_lock($1)", PUBLISH_LOCK):
            return []
        try:
            async with reader.transaction(isolation="repeatable_read", readonly=True):
                position = await reader.fetchval(
                    "SELECT coalesce(max(id), 0) FROM virtual_transactions"
                )
                taken_at = await reader.fetchval("SELECT now()")
                owed = await solvency.liabilities(reader)
                assets = sorted(set(owed) | {BTC}, key=lambda a: (a != BTC, a))
                return [
                    await _publish_asset(
                        reader, writer, signer, asset, owed.get(asset, 0), position, taken_at
                    )
                    for asset in assets
                ]
        finally:
            await writer.execute("SELECT pg_advisory_unlock($1)", PUBLISH_LOCK)


async def _publish_asset(
    reader: DbConnection,
    writer: DbConnection,
    signer: Signer,
    asset_id: str,
    owed: int,
    position: int,
    taken_at: datetime,
) -> Published:
    async with writer.transaction():
        epoch = await writer.fetchval(
            "SELECT coalesce(max(epoch), 0) + 1 FROM proof_epochs WHERE asset_id = $1", asset_id
        )
        count = await _stage(reader, writer, asset_id)
        # The sort that orders a million leaves fits in memory instead of spilling to disk.
        await writer.execute(f"SET LOCAL work_mem = '{SORT_MEMORY}'")
        await writer.execute(
            "INSERT INTO proof_leaves (asset_id, epoch, position, user_id, balance, salt) "
            "SELECT $1, $2, row_number() OVER (ORDER BY sha256(salt)) - 1, user_id, balance, salt "
            "FROM proof_stage",
            asset_id,
            epoch,
        )
        pad_seed = secrets.token_bytes(32)
        tree = await _build(writer, asset_id, epoch, count, pad_seed)
        if tree.total != owed:
            # The leaves and the liabilities come from one snapshot: a difference is a bug.
            raise ProofsError(f"{asset_id}: the tree sums to {tree.total}, users are owed {owed}")
        statement: dict[str, Any] = {
            "asset_id": asset_id,
            "epoch": epoch,
            "root": tree.root.hex(),
            "total": tree.total,
            "leaves": tree.leaves,
            "created_at": format_timestamp(taken_at),
            "ledger_position": position,
        }
        signature = signer.sign_proof(statement_digest(statement)).hex()
        await writer.execute(
            "INSERT INTO proof_epochs (asset_id, epoch, statement, signature, root, total, "
            "leaves, leaf_count, ledger_position, created_at, upper, pad_seed) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            asset_id,
            epoch,
            canonical(statement).decode(),
            signature,
            tree.root,
            tree.total,
            tree.leaves,
            tree.count,
            position,
            taken_at,
            tree.upper,
            pad_seed,
        )
    log.info(
        "proof epoch published",
        extra={"asset_id": asset_id, "epoch": epoch, "leaves": tree.count, "total": tree.total},
    )
    return Published(asset_id, epoch, statement, signature)


async def _stage(reader: DbConnection, writer: DbConnection, asset_id: str) -> int:
    """Copy the snapshot's balances of `asset_id`, each with a fresh salt, into a temporary
    table on the writer; answers how many."""
    await writer.execute(
        "CREATE TEMP TABLE proof_stage (user_id bigint, balance bigint, salt bytea) ON COMMIT DROP"
    )
    count = 0
    cursor = await reader.cursor(BALANCES_SQL, asset_id)
    while batch := await cursor.fetch(BATCH_ROWS):
        salts = secrets.token_bytes(32 * len(batch))
        await writer.copy_records_to_table(
            "proof_stage",
            records=[(row[0], row[1], salts[32 * i : 32 * i + 32]) for i, row in enumerate(batch)],
        )
        count += len(batch)
    return count


async def _build(
    writer: DbConnection, asset_id: str, epoch: int, count: int, pad_seed: bytes
) -> BuiltTree:
    builder = TreeBuilder(count, pad_seed)
    cursor = await writer.cursor(
        "SELECT user_id, balance, salt FROM proof_leaves "
        "WHERE asset_id = $1 AND epoch = $2 ORDER BY position",
        asset_id,
        epoch,
    )
    while batch := await cursor.fetch(BATCH_ROWS):
        for user_id, balance, salt in batch:
            builder.add(user_id, balance, salt)
    return builder.finish()


async def publish_when_due(
    pool: asyncpg.Pool, signer: Signer, interval_s: float, retention_s: int
) -> list[Published]:
    """The worker's pass: publish when the newest epoch is `interval_s` old (or there is none),
    then prune. Asking the database rather than a timer keeps one schedule across processes
    and restarts."""
    due = await pool.fetchval(
        "SELECT coalesce(max(created_at) <= now() - make_interval(secs => $1), true) "
        "FROM proof_epochs",
        interval_s,
    )
    published = await publish_all(pool, signer) if due else []
    await prune(pool, retention_s)
    return published


async def prune(pool: asyncpg.Pool, retention_s: int) -> int:
    """Drop the trees (leaves, salts, upper levels) of epochs older than the retention window;
    their statements stay. Answers how many epochs were pruned."""
    async with pool.acquire() as conn, conn.transaction():
        pruned = await conn.fetch(
            "UPDATE proof_epochs SET upper = NULL, pad_seed = NULL, tree_pruned_at = now() "
            "WHERE tree_pruned_at IS NULL AND created_at < now() - make_interval(secs => $1) "
            "RETURNING asset_id, epoch",
            retention_s,
        )
        for row in pruned:
            await conn.execute(
                "DELETE FROM proof_leaves WHERE asset_id = $1 AND epoch = $2",
                row["asset_id"],
                row["epoch"],
            )
    return len(pruned)
