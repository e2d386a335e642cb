"""SIGKILL `vnode serve` between reserve and pay, and between the node's success and the
settlement; after a restart every balance is right and the audit is clean."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import SIM_HANG_S, TEST_SEED
from tests.e2e.payments.test_payments import reserve_for
from tests.lightning_support import SimControl, assert_audit_clean
from tests.support import ADMIN_KEY, ServeProcess, bearer, new_user_id, wait_until
from vnode.lightning import bolt11


def _env(sim_node: str, crash_points: str = "") -> dict[str, str]:
    return {
        "VNODE_MASTER_SEED": TEST_SEED,
        "VNODE_NODE": "sim",
        "VNODE_RLN_URL": sim_node,
        "VNODE_NODE_TIMEOUT_S": str(SIM_HANG_S / 2),
        "VNODE_RECONCILE_INTERVAL_S": "0.2",
        "VNODE_STALE_FAILURE_SKEW_S": "1",
        "VNODE_CRASH_POINTS": crash_points,
    }


@pytest.mark.parametrize(
    ("crash_point", "final", "expiry_sec"),
    [
        ("after_reserve", "failed", 3),  # the node never saw it: refunded once it expired
        ("after_pay", "succeeded", 3600),  # the node paid it: settled after the restart
    ],
)
async def test_crash_and_restart(
    fresh_db: str, sim_node: str, tmp_path: Path, crash_point: str, final: str, expiry_sec: int
) -> None:
    sim = SimControl(sim_node)
    alice = new_user_id()
    doomed = ServeProcess(fresh_db, tmp_path / "a", extra_env=_env(sim_node, crash_point))
    try:
        await doomed.wait_ready()
        # Made only now: a short expiry must not run out while the service starts.
        invoice = await sim.invoice(100_000, expiry_sec=expiry_sec)
        payment_hash = bolt11.decode(invoice).payment_hash
        async with httpx.AsyncClient(
            base_url=doomed.url, headers=bearer(ADMIN_KEY), timeout=30
        ) as client:
            funded = await client.post(
                "/admin/credit",
                json={"user_id": alice, "amount_msat": 500_000, "reason": "crash test"},
            )
            assert funded.status_code == 200
            with pytest.raises(httpx.TransportError):
                await client.post(
                    "/virtual_sendpayment", json={"user_id": alice, "invoice": invoice}
                )
        doomed.proc.wait(10)
        assert doomed.proc.returncode == -9  # SIGKILL, not a clean exit
    finally:
        doomed.stop()

    restarted = ServeProcess(fresh_db, tmp_path / "b", extra_env=_env(sim_node))
    try:
        await restarted.wait_ready()
        async with httpx.AsyncClient(base_url=restarted.url, headers=bearer(ADMIN_KEY)) as client:

            async def resolved() -> bool:
                state = await client.post(
                    "/virtual_payment", json={"user_id": alice, "payment_hash": payment_hash}
                )
                return bool(state.json()["status"] == final)

            await wait_until(resolved, 30, f"the payment to be {final} after restart")
            held = (await client.post("/virtual_assetbalance", json={"user_id": alice})).json()
        expected = 500_000 if final == "failed" else 500_000 - 100_000 - reserve_for(100_000)
        assert held["spendable_msat"] == expected and held["pending_msat"] == 0
    finally:
        restarted.stop()
    await assert_audit_clean(fresh_db)
