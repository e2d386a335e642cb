"""Virtual nodes: vn_{telegram_id}, created on first use with a BIP32-derived public key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from vnode.keys import Signer


@dataclass(frozen=True)
class VirtualNode:
    user_id: int
    node_id: str
    pubkey: str
    created_at: datetime


async def ensure_node(pool: asyncpg.Pool, signer: Signer, user_id: int) -> VirtualNode:
    """Create the user's node if needed and return it (the same one on every call)."""
    await pool.execute("SELECT vnode_ensure_node($1, $2)", user_id, signer.node_pubkey(user_id))
    row = await pool.fetchrow(
        "SELECT user_id, node_id, pubkey, created_at FROM virtual_nodes WHERE user_id = $1",
        user_id,
    )
    assert row is not None
    return VirtualNode(row["user_id"], row["node_id"], row["pubkey"], row["created_at"])
