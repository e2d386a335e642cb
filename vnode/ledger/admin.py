"""Operator credits and debits, booked against the operator_funding system account."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import asyncpg

from vnode.keys import Signer
from vnode.ledger.calls import Idempotency, LedgerAnswer, call_money_function

_SQL = "SELECT code, detail, result FROM vnode_admin_move($1, $2, $3, $4, $5, $6, $7, $8, $9)"


class AdminMove(StrEnum):
    CREDIT = "admin_credit"
    DEBIT = "admin_debit"


@dataclass(frozen=True)
class AdminCommand:
    move: AdminMove
    user_id: int
    asset_id: str
    amount: int
    reason: str


async def admin_move(
    pool: asyncpg.Pool, signer: Signer, command: AdminCommand, idempotency: Idempotency
) -> LedgerAnswer:
    fields = {
        "user": command.user_id,
        "asset": command.asset_id,
        "amount": command.amount,
        "reason": command.reason,
    }
    return await call_money_function(
        pool,
        _SQL,
        command.move.value,
        command.user_id,
        signer.node_pubkey(command.user_id),
        command.asset_id,
        command.amount,
        command.reason,
        idempotency.owner,
        idempotency.key,
        idempotency.request_hash(command.move.value, fields),
    )
