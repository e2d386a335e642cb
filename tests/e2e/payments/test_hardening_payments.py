"""Security review 1, the payment path: each test is named after the finding it closes
(docs/design/reviews/security-review-1.md; docs/SECURITY.md)."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import make_settings, node_settings
from tests.e2e.payments.test_payments import new_invoice, pay, reserve_for, wait_payment
from tests.integration.api.test_api_transfer import balance, fund
from tests.lightning_support import SimControl, assert_audit_clean
from tests.support import ADMIN_KEY, RGB_ASSET, bearer, free_port, new_user_id, wait_until
from vnode.app import create_app
from vnode.lightning.base import LightningBackend, PaymentOutcome, PaymentStatus
from vnode.lightning.registry import create_backend
from vnode.lightning.sim_process import SimProcess
from vnode.payments.receive import RgbTransferWatcher, credit_receipt
from vnode.payments.resolve import finish, recheck_failed_once, reconcile_once
from vnode_sim import bolt11


@pytest.fixture
def sim(sim_node: str) -> SimControl:
    return SimControl(sim_node)


@asynccontextmanager
async def own_app(
    database: str, sim_node: str, data_dir: Path, **overrides: object
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app with its workers on a database of its own (for tests whose rows would
    disturb the shared database's workers or books)."""
    app = create_app(make_settings(data_dir, **{**node_settings(sim_node), **overrides}), database)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://vnode",
            headers=bearer(ADMIN_KEY),
            timeout=30,
        ) as client,
    ):
        yield client


@asynccontextmanager
async def pool_and_backend(
    database: str, sim_node: str
) -> AsyncIterator[tuple[asyncpg.Pool, LightningBackend]]:
    pool = await asyncpg.create_pool(database, min_size=1, max_size=4)
    backend = create_backend("sim", rln_url=sim_node, rln_token=None, timeout_s=5)
    try:
        yield pool, backend
    finally:
        await backend.close()
        await pool.close()


def outside_invoice(*, expiry_s: int, amount_msat: int = 1000) -> str:
    """A validly signed regtest invoice of a payee nobody knows, with the given expiry."""
    return bolt11.encode(
        network=bolt11.Network.REGTEST,
        amount_msat=amount_msat,
        payment_hash=os.urandom(32).hex(),
        payment_secret=os.urandom(32).hex(),
        timestamp=int(time.time()),
        private_key=secrets.token_bytes(32),
        description="far",
        expiry_s=expiry_s,
    )


# --- H1: far-future expiry ------------------------------------------------------------------


async def test_h1_far_future_expiry_refused(app_client: httpx.AsyncClient) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 10_000_000)
    horizon = 2016 * 600  # the documented default (docs/NODE.md)
    for expiry_s in (10**12, 2**40, horizon + 3600):
        invoice = outside_invoice(expiry_s=expiry_s)
        paid = await pay(app_client, alice, invoice)
        assert paid.status_code == 422, paid.text
        assert paid.json()["error"]["code"] == "invoice_expiry_too_far"
        quoted = await app_client.post("/virtual_decodeinvoice", json={"invoice": invoice})
        assert quoted.status_code == 422, quoted.text
        assert quoted.json()["error"]["code"] == "invoice_expiry_too_far"
    within = await app_client.post(
        "/virtual_decodeinvoice", json={"invoice": outside_invoice(expiry_s=horizon - 3600)}
    )
    assert within.status_code == 200, within.text
    state = (await app_client.post("/virtual_assetbalance", json={"user_id": alice})).json()
    assert state["balance_msat"] == 10_000_000 and state["pending_msat"] == 0


async def test_h1_undecodable_row_does_not_stop_the_reconciler(
    fresh_db: str, sim_node: str, sim: SimControl, tmp_path: Path
) -> None:
    """A row written before the fix (expiry in year 33700) no longer stops anything: the
    resolver reads timestamps as epoch seconds, and other payments are still finished."""
    async with own_app(fresh_db, sim_node, tmp_path, payment_wait_s=0) as client:
        alice = new_user_id()
        await fund(client, alice, 10_000_000)
        conn = await asyncpg.connect(fresh_db)
        try:
            # As the old code stored it (the constraint is what this fix adds).
            await conn.execute(
                "ALTER TABLE ln_payments DROP CONSTRAINT ln_payments_expiry_decodable"
            )
            invoice = outside_invoice(expiry_s=10**12)
            reserved = await conn.fetchrow(
                "SELECT code, result FROM vnode_payment_reserve($1, $2, $3, $4, NULL, NULL, $5,"
                " to_timestamp($6), 'test', NULL, NULL)",
                alice,
                bolt11.decode(invoice).payment_hash,
                invoice,
                1000,
                50_010,
                float(bolt11.decode(invoice).expires_at),
            )
            assert reserved is not None and reserved["code"] == "pending", reserved
        finally:
            await conn.close()
        await sim.faults(next_payment="hold")
        held = await pay(client, alice, await sim.invoice(100_000))
        assert held.status_code == 202, held.text
        await sim.release(held.json()["payment_hash"], "succeed")
        await wait_payment(client, alice, held.json()["payment_hash"], "succeeded")
        metrics = (await client.get("/metrics")).text
        assert 'vnode_worker_last_success_timestamp_seconds{worker="payment-reconciler"}' in metrics


# --- M2: head-of-line blocking --------------------------------------------------------------

HELD = 1000


@pytest.fixture
def own_sim(tmp_path: Path) -> Iterator[str]:
    """A simulated node of this test's own: a thousand held payments stay out of the shared
    one's listings, which every other test's watchers read."""
    sim = SimProcess("127.0.0.1", free_port(), tmp_path / "sim.log", ("--hang-s", "3"))
    sim.wait_ready()
    yield sim.url
    sim.stop()


async def test_m2_thousand_held_payments_do_not_delay_a_new_one(
    fresh_db: str, own_sim: str, tmp_path: Path
) -> None:
    sim = SimControl(own_sim)
    held_total = HELD * (1000 + reserve_for(1000))
    alice = new_user_id()
    # The thousand are made through a process without workers (a second vnode process on the
    # same database, as in production), so making them is not slowed by checking them.
    async with own_app(
        fresh_db, own_sim, tmp_path / "maker", payment_wait_s=0, run_workers=False
    ) as maker:
        await fund(maker, alice, held_total + 10_000_000)
        async with httpx.AsyncClient(base_url=own_sim) as node:
            invoices = [
                (await node.post("/_sim/invoice", json={"amt_msat": 1000})).json()["invoice"]
                for _ in range(HELD)
            ]
        await sim.faults(next_payment="hold", count=HELD)
        gate = asyncio.Semaphore(16)

        async def hold(invoice: str) -> int:
            async with gate:
                return (await pay(maker, alice, invoice)).status_code

        assert set(await asyncio.gather(*(hold(i) for i in invoices))) == {202}
    try:
        async with own_app(
            fresh_db, own_sim, tmp_path / "worker", payment_wait_s=0, watch_interval_s=1.0
        ) as client:
            state = (await client.post("/virtual_assetbalance", json={"user_id": alice})).json()
            assert state["pending_msat"] == held_total
            # A new payment the node settles at once must be final within 10 s.
            started = time.monotonic()
            fresh = await pay(client, alice, await sim.invoice(5000))
            assert fresh.status_code in (200, 202), fresh.text
            await wait_payment(
                client, alice, fresh.json()["payment_hash"], "succeeded", timeout_s=10
            )
            assert time.monotonic() - started < 10
            # And the held ones are all finished once the node releases them.
            assert await sim.release_all("fail") == HELD

            async def all_refunded() -> bool:
                body = (await client.post("/virtual_assetbalance", json={"user_id": alice})).json()
                return bool(body["pending_msat"] == 0)

            await wait_until(all_refunded, 60, "the released payments to be refunded")
    finally:
        await sim.release_all("fail")
    await assert_audit_clean(fresh_db)


# --- M1: a retried invoice is no late success -----------------------------------------------


async def test_m1_failed_then_retried_invoice_books_no_loss(
    app_client: httpx.AsyncClient, sim: SimControl, sim_node: str, shared_db: str
) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 1_000_000)
    invoice = await sim.invoice(100_000)
    payment_hash = bolt11.decode(invoice).payment_hash
    await sim.faults(next_payment="fail")
    first = await pay(app_client, alice, invoice)
    assert first.json()["status"] == "failed"
    second = await pay(app_client, alice, invoice)
    assert second.json()["status"] == "succeeded", second.text
    async with pool_and_backend(shared_db, sim_node) as (pool, backend):
        assert await recheck_failed_once(pool, backend) == 0
        # Even asked directly, the refunded attempt is not booked as a late success: the
        # node's record is the retry's.
        preimage = second.json()["preimage"]
        await finish(
            pool, first.json()["payment_id"], PaymentOutcome.SUCCEEDED, None, preimage, None
        )
        alerts = await pool.fetchval(
            "SELECT count(*) FROM alerts WHERE payment_hash = $1", payment_hash
        )
        loss = await pool.fetchval(
            "SELECT count(*) FROM virtual_transactions WHERE kind = 'operator_loss' AND memo = $1",
            payment_hash,
        )
        assert alerts == 0 and loss == 0
    assert await balance(app_client, alice) == 1_000_000 - 100_000 - reserve_for(100_000)
    await assert_audit_clean(shared_db)


# --- M5: a retry whose send was lost --------------------------------------------------------


async def test_m5_lost_retry_refunded_after_expiry(
    app_client: httpx.AsyncClient, sim: SimControl, sim_node: str, shared_db: str
) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 1_000_000)
    invoice = await sim.invoice(100_000)
    decoded = bolt11.decode(invoice)
    await sim.faults(next_payment="fail")
    assert (await pay(app_client, alice, invoice)).json()["status"] == "failed"
    async with pool_and_backend(shared_db, sim_node) as (pool, backend):
        # The retry reserved, but its send never reached the node (a crash, a dropped
        # connection); it started a minute after the node's failed record, and the invoice
        # has expired since.
        reserved = await pool.fetchrow(
            "SELECT code, result FROM vnode_payment_reserve($1, $2, $3, $4, NULL, NULL, $5,"
            " to_timestamp($6), 'test', NULL, NULL)",
            alice,
            decoded.payment_hash,
            invoice,
            100_000,
            reserve_for(100_000),
            float(decoded.expires_at),
        )
        assert reserved is not None and reserved["code"] == "pending"
        retry_id = int(
            await pool.fetchval(
                "UPDATE ln_payments SET attempt_started_at = now() + interval '60 seconds', "
                "invoice_expires_at = now() - interval '1 hour' "
                "WHERE payment_hash = $1 AND status = 'pending' RETURNING id",
                decoded.payment_hash,
            )
        )
        state = await backend.payment_status(decoded.payment_hash)
        assert state.outcome is PaymentOutcome.FAILED  # the earlier attempt's record

        async def refunded() -> bool:
            await reconcile_once(pool, backend, stale_skew_s=5)
            return bool(
                await pool.fetchval("SELECT status FROM ln_payments WHERE id = $1", retry_id)
                == "failed"
            )

        await wait_until(refunded, 10, "the lost retry to be refunded")
    assert await balance(app_client, alice) == 1_000_000
    await assert_audit_clean(shared_db)


# --- M4: the fee reserve covers the node's worst case ----------------------------------------


async def test_m4_default_reserve_covers_ldk_fee_cap(
    app_client: httpx.AsyncClient, sim: SimControl
) -> None:
    for amount in (1000, 100_000, 10_000_000):
        ldk_cap = -(-amount // 100) + 50_000  # LDK's default: 1% + 50 sat
        quote = (
            await app_client.post(
                "/virtual_decodeinvoice", json={"invoice": await sim.invoice(amount)}
            )
        ).json()
        assert quote["fee_reserve_msat"] >= ldk_cap, quote
        assert quote["total_msat"] == amount + quote["fee_reserve_msat"]
        assert "50000 msat + 1%" in quote["fee_reserve_rule"]
        assert "whole reserve is charged" in quote["fee_reserve_rule"]  # RLN reports no fee


# --- M6, L9: RGB receipts -------------------------------------------------------------------


async def _rgb_invoice(client: httpx.AsyncClient, user: int) -> dict[str, Any]:
    response = await client.post(
        "/virtual_rgbinvoice",
        json={"user_id": user, "asset_id": RGB_ASSET, "duration_seconds": 600},
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_m6_late_rgb_receipt_credited(
    app_client: httpx.AsyncClient, sim: SimControl, sim_node: str, shared_db: str
) -> None:
    alice = new_user_id()
    created = await _rgb_invoice(app_client, alice)
    async with pool_and_backend(shared_db, sim_node) as (pool, backend):
        # The transfer confirms two days after the invoice expired (vnode's copy only).
        await pool.execute(
            "UPDATE rgb_invoices SET expires_at = now() - interval '2 days' "
            "WHERE recipient_id = $1",
            created["recipient_id"],
        )
        await sim.rgbsend(created["recipient_id"], RGB_ASSET, 77)
        watcher = RgbTransferWatcher(pool, backend)

        async def credited() -> bool:
            await watcher.poll_once()
            return await balance(app_client, alice, RGB_ASSET) == 77

        await wait_until(credited, 20, "the late RGB receipt to be credited")
    await assert_audit_clean(shared_db)


async def test_m6_unmatched_rgb_receipt_alerts(
    app_client: httpx.AsyncClient, sim: SimControl, sim_node: str, shared_db: str
) -> None:
    alice = new_user_id()
    await _rgb_invoice(app_client, alice)  # keeps the watcher looking at this asset
    async with httpx.AsyncClient(base_url=sim_node) as node:
        direct = (
            await node.post(
                "/rgbinvoice",
                json={
                    "min_confirmations": 1,
                    "asset_id": RGB_ASSET,
                    "expiration_timestamp": int(time.time()) + 600,
                    "witness": False,
                    "transport_endpoints": ["rpc://127.0.0.1:3000/json-rpc"],
                },
            )
        ).json()
    await sim.rgbsend(direct["recipient_id"], RGB_ASSET, 5)
    async with pool_and_backend(shared_db, sim_node) as (pool, backend):
        watcher = RgbTransferWatcher(pool, backend)

        async def alerted() -> bool:
            await watcher.poll_once()
            return bool(
                await pool.fetchval(
                    "SELECT count(*) FROM alerts WHERE kind = 'unmatched_rgb_receipt' "
                    "AND details ->> 'recipient_id' = $1",
                    direct["recipient_id"],
                )
            )

        await wait_until(alerted, 20, "an unmatched_rgb_receipt alert")


async def test_l9_inbound_asset_checked_against_invoice(
    app_client: httpx.AsyncClient, sim_node: str, shared_db: str
) -> None:
    alice = new_user_id()
    created = await new_invoice(app_client, alice, amt_msat=10_000)
    async with pool_and_backend(shared_db, sim_node) as (pool, _backend):
        wrong = PaymentStatus(
            created["payment_hash"],
            PaymentOutcome.SUCCEEDED,
            amount_msat=10_000,
            asset_id=RGB_ASSET,
            asset_amount=5,
        )
        refused = await credit_receipt(pool, wrong)
        assert (refused.status, refused.code, refused.credited) == (409, "asset_mismatch", False)
        assert await balance(app_client, alice, RGB_ASSET) == -1 or (
            await balance(app_client, alice, RGB_ASSET) == 0
        )
        assert await balance(app_client, alice) == 0
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM alerts WHERE kind = 'receipt_asset_mismatch' "
                "AND payment_hash = $1",
                created["payment_hash"],
            )
            == 1
        )
        rgb = await _rgb_invoice(app_client, alice)
        row = await pool.fetchrow(
            "SELECT code, credited FROM vnode_rgb_receipt_credit($1, 1, 5, NULL, $2)",
            rgb["recipient_id"],
            "rgb:another-asset",
        )
        assert row is not None and (row["code"], row["credited"]) == ("asset_mismatch", None)
    await assert_audit_clean(shared_db)


# --- L8: one credit that raises does not block the others -----------------------------------


async def test_l8_one_failing_credit_does_not_block_others(
    fresh_db: str, sim_node: str, sim: SimControl, tmp_path: Path
) -> None:
    async with own_app(fresh_db, sim_node, tmp_path) as client:
        whale, alice = new_user_id(), new_user_id()
        await fund(client, whale, 2**63 - 2)  # one more msat overflows their balance
        poisoned = await new_invoice(client, whale, amt_msat=5000)
        paid = await sim.pay(poisoned["invoice"])
        assert paid.status_code == 200, paid.text
        fine = await new_invoice(client, alice, amt_msat=7000)
        assert (await sim.pay(fine["invoice"])).status_code == 200

        async def credited() -> bool:
            return await balance(client, alice) == 7000

        await wait_until(credited, 15, "the second receipt to be credited")

        async def counted() -> bool:
            text = (await client.get("/metrics")).text
            return 'vnode_worker_item_errors_total{worker="invoice-watcher"}' in text

        await wait_until(counted, 15, "the failing item to be counted")
        assert await balance(client, whale) == 2**63 - 2


# --- readiness: a stuck money worker is reported ----------------------------------------------


async def test_readyz_degraded_when_a_money_worker_stalls(
    fresh_db: str, sim_node: str, tmp_path: Path
) -> None:
    async with own_app(fresh_db, sim_node, tmp_path, money_worker_stale_s=1.0) as client:

        async def ready() -> bool:
            return bool((await client.get("/readyz")).json()["status"] == "ready")

        await wait_until(ready, 10, "ready")
        conn = await asyncpg.connect(fresh_db)
        try:
            # Every pass of the reconciler now fails.
            await conn.execute("ALTER TABLE ln_payments RENAME TO ln_payments_away")

            async def degraded() -> bool:
                answer = await client.get("/readyz", headers={"Authorization": ""})
                return answer.status_code == 200 and answer.json() == {"status": "degraded"}

            await wait_until(degraded, 15, "readyz to report a stale money worker")
            detail = (await client.get("/readyz")).json()
            assert "payment-reconciler" in detail["checks"]["workers"]
            await conn.execute("ALTER TABLE ln_payments_away RENAME TO ln_payments")
            await wait_until(ready, 40, "ready again")  # after the worker's backoff
        finally:
            await conn.close()
