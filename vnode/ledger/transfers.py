"""Flow 1: internal transfers between virtual nodes."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from vnode.keys import Signer
from vnode.ledger.calls import Idempotency, LedgerAnswer
from vnode.ledger.transfer_batch import TransferArgs, TransferBatcher, transfer_one


@dataclass(frozen=True)
class TransferCommand:
    from_user_id: int
    to_user_id: int
    asset_id: str
    amount: int  # msat for BTC, asset units otherwise
    memo: str | None


async def transfer(
    pool: asyncpg.Pool,
    signer: Signer,
    command: TransferCommand,
    idempotency: Idempotency,
    batcher: TransferBatcher | None = None,
) -> LedgerAnswer:
    """Move `amount` from one user to another in one database transaction (shared with other
    concurrent transfers when `batcher` is given: vnode/ledger/transfer_batch.py).

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
    args = TransferArgs(
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
    if batcher is not None:
        return await batcher.transfer(args)
    return await transfer_one(pool, args)
