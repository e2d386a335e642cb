"""Reading what was published: the signed statements, a user's inclusion proof (rebuilt from the
leaves of one chunk and the stored upper levels), and a user's signed balance statement."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from vnode.db.pool import DbConnection
from vnode.domain.ids import node_id
from vnode.domain.timestamps import format_timestamp
from vnode.errors import ApiError, ErrorCode
from vnode.keys import Signer
from vnode.ledger.balances import all_balances
from vnode.proofs.tree import Node, chunk_size, leaf_node, pad_node, path
from vnode.proofs.verifier import statement_digest


@dataclass(frozen=True)
class Epoch:
    statement: dict[str, Any]
    signature: str
    pruned: bool

    def as_json(self) -> dict[str, object]:
        return {"statement": self.statement, "signature": self.signature, "pruned": self.pruned}


def _epoch(row: asyncpg.Record) -> Epoch:
    return Epoch(json.loads(row["statement"]), row["signature"], row["tree_pruned_at"] is not None)


async def latest_epochs(pool: asyncpg.Pool) -> list[Epoch]:
    """The newest epoch of every asset, BTC first."""
    # A public page over a table that grows every hour forever: walk the primary key from
    # asset to asset (a few index probes each) instead of reading every epoch.
    rows = await pool.fetch(
        """
        WITH RECURSIVE assets AS (
            (SELECT asset_id FROM proof_epochs ORDER BY asset_id LIMIT 1)
            UNION ALL
            SELECT (SELECT p.asset_id FROM proof_epochs p WHERE p.asset_id > a.asset_id
                    ORDER BY p.asset_id LIMIT 1)
            FROM assets a WHERE a.asset_id IS NOT NULL)
        SELECT e.statement, e.signature, e.tree_pruned_at FROM assets a
        CROSS JOIN LATERAL (SELECT statement, signature, tree_pruned_at FROM proof_epochs
                            WHERE asset_id = a.asset_id ORDER BY epoch DESC LIMIT 1) e"""
    )
    return sorted(
        (_epoch(r) for r in rows),
        key=lambda e: (e.statement["asset_id"] != "BTC", e.statement["asset_id"]),
    )


async def _find(
    conn: asyncpg.Pool | DbConnection, asset_id: str, number: int | None
) -> asyncpg.Record:
    """An epoch of the asset (the newest when `number` is None); 404 no_proof if none."""
    row = await conn.fetchrow(
        "SELECT epoch, leaves, upper, pad_seed, statement, signature, tree_pruned_at "
        "FROM proof_epochs WHERE asset_id = $1 AND ($2::bigint IS NULL OR epoch = $2) "
        "ORDER BY epoch DESC LIMIT 1",
        asset_id,
        number,
    )
    if row is None:
        raise ApiError(ErrorCode.NO_PROOF, f"no such epoch of {asset_id} has been published")
    return row


async def epoch(pool: asyncpg.Pool, asset_id: str, number: int | None) -> Epoch:
    return _epoch(await _find(pool, asset_id, number))


async def inclusion_proof(
    pool: asyncpg.Pool, user_id: int, asset_id: str, number: int | None
) -> dict[str, object]:
    """The user's inclusion proof in an epoch of the asset (the newest when `number` is None)."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        row = await _find(conn, asset_id, number)
        if row["tree_pruned_at"] is not None:
            raise ApiError(ErrorCode.PROOF_PRUNED)
        leaf = await conn.fetchrow(
            "SELECT position, balance, salt FROM proof_leaves "
            "WHERE asset_id = $1 AND epoch = $2 AND user_id = $3",
            asset_id,
            row["epoch"],
            user_id,
        )
        if leaf is None:
            raise ApiError(
                ErrorCode.NO_PROOF,
                f"user {user_id} held no {asset_id} in epoch {row['epoch']}",
            )
        chunk = chunk_size(row["leaves"])
        start = leaf["position"] - leaf["position"] % chunk
        stored = await conn.fetch(
            "SELECT user_id, balance, salt FROM proof_leaves WHERE asset_id = $1 AND epoch = $2 "
            "AND position >= $3 AND position < $4 ORDER BY position",
            asset_id,
            row["epoch"],
            start,
            start + chunk,
        )
    nodes: list[Node] = [leaf_node(r[0], r[1], r[2]) for r in stored]
    nodes += [pad_node(row["pad_seed"], p) for p in range(start + len(nodes), start + chunk)]
    found = _epoch(row)
    return {
        "statement": found.statement,
        "signature": found.signature,
        "user_id": user_id,
        "balance": leaf["balance"],
        "salt": bytes(leaf["salt"]).hex(),
        "path": path(nodes, leaf["position"], row["leaves"], row["upper"]),
    }


async def balance_statement(pool: asyncpg.Pool, signer: Signer, user_id: int) -> dict[str, object]:
    """The user's balances and last journal id, signed by the user's own node key (BIP340
    Schnorr over SHA-256 of the canonical statement), so the user can later show what the
    service told them."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        balances = await all_balances(conn, user_id)
        if balances is None:
            raise ApiError(ErrorCode.UNKNOWN_USER)
        last = await conn.fetchrow(
            "SELECT max(tx_id) AS tx_id, now() AS at FROM ln_user_transactions WHERE user_id = $1",
            user_id,
        )
        assert last is not None  # an aggregate answers one row
    statement: dict[str, object] = {
        "user_id": user_id,
        "node_id": node_id(user_id),
        "node_pubkey": signer.node_pubkey(user_id),
        "balances": [
            {"asset_id": b.asset_id, "balance": b.settled, "spendable": b.spendable}
            for b in balances
        ],
        "last_tx_id": last["tx_id"],
        "created_at": format_timestamp(last["at"]),
    }
    signature = signer.sign_as_node(user_id, statement_digest(statement))
    return {"statement": statement, "signature": signature.hex()}
