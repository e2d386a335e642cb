"""A success the node reports after vnode refunded: an alert and an operator loss, never
silence, and never a second debit of the user (docs/design/LESSONS.md 13)."""

from __future__ import annotations

import asyncpg
import httpx

from tests.e2e.payments.test_payments import pay
from tests.integration.api.test_api_transfer import balance, fund
from tests.lightning_support import SimControl, assert_audit_clean
from tests.support import new_user_id, wait_until
from vnode.lightning.base import PaymentOutcome
from vnode.lightning.registry import create_backend
from vnode.payments.resolve import finish, recheck_failed_once


async def test_success_after_refund_books_an_operator_loss(
    app_client: httpx.AsyncClient, sim_node: str, shared_db: str
) -> None:
    sim = SimControl(sim_node)
    alice = new_user_id()
    await fund(app_client, alice, 300_000)
    await sim.faults(next_payment="hold")
    response = await pay(app_client, alice, await sim.invoice(100_000))
    assert response.status_code == 202
    payment_id, payment_hash = response.json()["payment_id"], response.json()["payment_hash"]

    pool = await asyncpg.create_pool(shared_db, min_size=1, max_size=2)
    backend = create_backend("sim", rln_url=sim_node, rln_token=None, timeout_s=5)
    try:
        # Refunded (as an expired, never-seen payment would be) while the node still holds it.
        refunded = await finish(pool, payment_id, PaymentOutcome.FAILED, None, None, "test")
        assert refunded.json()["status"] == "failed"
        assert await balance(app_client, alice) == 300_000
        await sim.release(payment_hash, "succeed")

        found = 0

        async def booked() -> bool:
            nonlocal found
            found += await recheck_failed_once(pool, backend)
            return found > 0

        await wait_until(booked, 10, "the late success to be booked")
        assert found == 1
        assert await recheck_failed_once(pool, backend) == 0  # booked once
        alert = await pool.fetchrow(
            "SELECT kind, details FROM alerts WHERE payment_hash = $1", payment_hash
        )
        assert alert is not None and alert["kind"] == "success_after_refund"
        loss = await pool.fetchval(
            "SELECT sum(amount) FROM virtual_transactions WHERE kind = 'operator_loss' "
            "AND memo = $1",
            payment_hash,
        )
        assert loss == 100_000
        row = await pool.fetchrow(
            "SELECT status, late_success_at FROM ln_payments WHERE id = $1", payment_id
        )
        assert row is not None and row["status"] == "failed" and row["late_success_at"]
    finally:
        await backend.close()
        await pool.close()
    assert await balance(app_client, alice) == 300_000  # the user is never debited twice
    await assert_audit_clean(shared_db)
