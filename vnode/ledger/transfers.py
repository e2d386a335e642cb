"""Flow 1: internal transfers between virtual nodes."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from vnode.keys import Signer
from vnode.ledger.calls import Idempotency, LedgerAnswer, call_money_function

_SQL = "SELECT code, detail, result FROM vnode_transfer($1, $2, $3, $4, $5, $6, $7, $8, $9)"


@dataclass(frozen=True)
class TransferCommand:
    from_user_id: int
    to_user_id: int
    asset_id: str
    amount: int  # msat for BTC, asset units otherwise
    memo: str | None


async def transfer(
    pool: asyncpg.Pool, signer: Signer, command: TransferCommand, idempotency: Idempotency
) -> LedgerAnswer:
    """Move `amount` from one user to another in one database transaction.

    The recipient's virtual node is created on first use, as tip bots do, with its key derived
    here (the database never sees the seed).
    """
    fields = {
        "from": command.from_user_id,
        "to": command.to_user_id,
        "asset": command.asset_id,
        "amount": command.amount,
        "memo": command.memo,
    }
    return await call_money_function(
        pool,
        _SQL,
        command.from_user_id,
        command.to_user_id,
        signer.node_pubkey(command.to_user_id),
        command.asset_id,
        command.amount,
        command.memo,
        idempotency.owner,
        idempotency.key,
        idempotency.request_hash("transfer", fields),
    )
