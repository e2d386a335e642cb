"""What the ledger's integration tests share: the signer, a call without an Idempotency-Key,
an RGB asset id, and funding a user."""

from __future__ import annotations

import asyncpg

from vnode.keys import SoftwareSigner
from vnode.ledger.admin import AdminCommand, AdminMove, admin_move
from vnode.ledger.calls import Idempotency, LedgerAnswer

SIGNER = SoftwareSigner(bytes.fromhex("11" * 32))
NO_KEY = Idempotency("test", None)
RGB = "rgb:CJkb4YZw-jRiz2sk-~PARPio-wtVYI1c-XAEYCqO-wTfvRZ8"


async def credit(pool: asyncpg.Pool, user: int, amount: int, asset: str = "BTC") -> LedgerAnswer:
    """The operator credits `user` (a new user gets a node); the credit must succeed."""
    outcome = await admin_move(
        pool, SIGNER, AdminCommand(AdminMove.CREDIT, user, asset, amount, "funding"), NO_KEY
    )
    assert outcome.status == 200, outcome.body
    return outcome
