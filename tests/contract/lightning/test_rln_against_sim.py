"""The RLN adapter end-to-end against the simulated node, over real HTTP.

The sim speaks the RLN REST API (plus its /_sim control API, used here as "the outside world"),
so this runs the very code that talks to a real node: backend `sim` from the registry.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.contract.lightning.server import serve
from vnode.domain.ids import BTC
from vnode.lightning import bolt11
from vnode.lightning.base import (
    DuplicatePayment,
    LightningBackend,
    Network,
    NodeLocked,
    PaymentOutcome,
    PaymentStatus,
)
from vnode.lightning.registry import create_backend
from vnode_sim.app import create_sim_app
from vnode_sim.config import SimConfig

ASSET = "rgb:CJkb4YZw-jRiz2sk-~PARPio-wtVYI1c-XAEYCqO-wTfvRZ8"


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    app = create_sim_app(SimConfig(settle_delay_s=0.02, rgb_assets={ASSET: 1000}))
    with serve(app, lifespan=True) as url:
        yield url


@pytest.fixture
async def backend(sim_url: str) -> AsyncIterator[LightningBackend]:
    adapter = create_backend("sim", rln_url=sim_url, rln_token=None, timeout_s=5)
    try:
        yield adapter
    finally:
        await adapter.close()


@pytest.fixture
async def outside(sim_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The sim's control API: outside payers and payees, and faults."""
    async with httpx.AsyncClient(base_url=sim_url, timeout=5) as client:
        yield client


async def control(client: httpx.AsyncClient, path: str, body: dict[str, object]) -> object:
    response = await client.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def settled(backend: LightningBackend, payment_hash: str, *, inbound: bool) -> PaymentStatus:
    """Poll until the payment leaves PENDING (the sim settles in the background)."""
    for _ in range(250):
        status = await backend.payment_status(payment_hash, inbound=inbound)
        if status.outcome != PaymentOutcome.PENDING:
            return status
        await asyncio.sleep(0.02)
    raise AssertionError("the payment stayed pending")


async def test_node_info(backend: LightningBackend) -> None:
    info = await backend.node_info()
    assert info.network == Network.REGTEST
    assert info.simulated is True
    assert len(info.pubkey) == 66


async def test_create_then_decode_our_invoice(backend: LightningBackend) -> None:
    info = await backend.node_info()
    created = await backend.create_invoice(
        amount_msat=5_000_000, expiry_s=600, description="coffee"
    )
    decoded = await backend.decode_invoice(created.invoice)
    assert decoded.payment_hash == created.payment_hash
    assert decoded.amount_msat == 5_000_000
    assert decoded.expiry_s == 600
    assert created.expires_at == decoded.timestamp + 600
    assert decoded.payee_pubkey == info.pubkey
    # Not paid yet: the node knows it as a pending inbound payment, or not at all.
    status = await backend.payment_status(created.payment_hash, inbound=True)
    assert status.outcome in {PaymentOutcome.PENDING, PaymentOutcome.UNKNOWN}


async def test_outside_payer_pays_our_invoice(
    backend: LightningBackend, outside: httpx.AsyncClient
) -> None:
    created = await backend.create_invoice(amount_msat=2_000_000, expiry_s=600, description=None)
    await control(outside, "/_sim/pay", {"invoice": created.invoice})
    status = await settled(backend, created.payment_hash, inbound=True)
    assert status.outcome == PaymentOutcome.SUCCEEDED
    assert status.amount_msat == 2_000_000
    inbound = {p.payment_hash: p for p in await backend.inbound_payments()}
    assert inbound[created.payment_hash].outcome == PaymentOutcome.SUCCEEDED


async def test_pay_outside_invoice_then_duplicate(
    backend: LightningBackend, outside: httpx.AsyncClient
) -> None:
    made = await control(outside, "/_sim/invoice", {"amt_msat": 3_000_000})
    assert isinstance(made, dict)
    invoice, payment_hash = made["invoice"], made["payment_hash"]
    started = await backend.pay_invoice(
        bolt11.decode(invoice), amount_msat=None, fee_limit_msat=30_000
    )
    assert started.payment_hash == payment_hash
    assert started.outcome in {PaymentOutcome.PENDING, PaymentOutcome.SUCCEEDED}
    final = await settled(backend, payment_hash, inbound=False)
    assert final.outcome == PaymentOutcome.SUCCEEDED
    assert final.preimage is not None
    assert hashlib.sha256(bytes.fromhex(final.preimage)).hexdigest() == payment_hash
    assert final.fee_msat is None  # RLN never reports the fee
    with pytest.raises(DuplicatePayment):
        await backend.pay_invoice(bolt11.decode(invoice), amount_msat=None, fee_limit_msat=30_000)


async def test_unknown_payment_is_unknown(backend: LightningBackend) -> None:
    status = await backend.payment_status("ab" * 32)
    assert status.outcome == PaymentOutcome.UNKNOWN
    assert status.preimage is None


async def test_locked_node(backend: LightningBackend, outside: httpx.AsyncClient) -> None:
    made = await control(outside, "/_sim/invoice", {"amt_msat": 3_000_000})
    assert isinstance(made, dict)
    await control(outside, "/_sim/faults", {"locked": True})
    try:
        with pytest.raises(NodeLocked):
            await backend.node_info()
        with pytest.raises(NodeLocked):
            await backend.pay_invoice(
                bolt11.decode(made["invoice"]), amount_msat=None, fee_limit_msat=30_000
            )
    finally:
        await control(outside, "/_sim/faults", {"locked": False})
    # Nothing was sent while locked: the node does not know the payment.
    status = await backend.payment_status(made["payment_hash"])
    assert status.outcome == PaymentOutcome.UNKNOWN
    assert (await backend.node_info()).simulated


async def test_spendable_balances(backend: LightningBackend) -> None:
    balances = await backend.spendable_balances()
    assert balances[BTC] > 0
    assert balances[ASSET] > 0


async def test_rgb_receive_on_chain(backend: LightningBackend, outside: httpx.AsyncClient) -> None:
    rgb = await backend.create_rgb_invoice(asset_id=ASSET, duration_s=3600, min_confirmations=1)
    assert rgb.recipient_id
    await control(
        outside, "/_sim/rgbsend", {"invoice": rgb.invoice, "asset_id": ASSET, "amount": 25}
    )
    for _ in range(20):
        await backend.refresh_transfers()
        transfers = {t.recipient_id: t for t in await backend.list_transfers(ASSET)}
        received = transfers.get(rgb.recipient_id)
        if received is not None and received.status == "Settled":
            break
    assert received is not None
    assert received.status == "Settled"
    assert received.incoming
    assert received.amount == 25
