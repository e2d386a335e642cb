"""The RLN adapter against the simulated node serving hostile answers (POST /_sim/faults
{"hostile": kind}), over real HTTP: every kind, on /getpayment, /listpayments (inbound) and
/listtransfers. The adapter must raise NodeProtocolError for the record asked for, leave a bad
item out of a listing while returning the others, log it once with its hash, and read the same
record normally once the node answers it soundly again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from tests.contract.lightning.server import serve
from vnode.lightning import bolt11
from vnode.lightning.base import PaymentOutcome
from vnode.lightning.rln import NodeProtocolError, RlnBackend
from vnode_sim.app import create_sim_app
from vnode_sim.config import SimConfig
from vnode_sim.faults import PREIMAGE_KINDS, HostileKind

ASSET = "rgb:CJkb4YZw-jRiz2sk-~PARPio-wtVYI1c-XAEYCqO-wTfvRZ8"
HARMLESS = {HostileKind.EXTRA_FIELDS}
TRANSFER_KINDS = [k for k in HostileKind if k not in PREIMAGE_KINDS]
DEADLINE_S = 5.0

T = TypeVar("T")


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    app = create_sim_app(SimConfig(settle_delay_s=0.01, rgb_assets={ASSET: 10_000}))
    with serve(app, lifespan=True) as url:
        yield url


@pytest.fixture
async def backend(sim_url: str) -> AsyncIterator[RlnBackend]:
    adapter = RlnBackend(sim_url, simulated=True, read_timeout_s=5.0)
    try:
        yield adapter
    finally:
        await adapter.close()


@pytest.fixture
async def control(sim_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim_url + "/_sim", timeout=5.0) as client:
        yield client
        # The module shares one sim: no hostile entry may outlive its test.
        await client.post("/faults", json={"hostile": None, "next_payment": None})


async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def eventually(read: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str) -> T:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = await read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}; last: {value!r}")
        await asyncio.sleep(0.01)


async def served(control: httpx.AsyncClient, kind: HostileKind) -> int:
    faults = (await control.get("/faults")).json()
    count: int = faults["hostile_served"].get(kind.value, 0)
    return count


async def paid_outbound(backend: RlnBackend, control: httpx.AsyncClient) -> str:
    made = await post(control, "/invoice", {"amt_msat": 5_000})
    await backend.pay_invoice(
        bolt11.decode(made["invoice"]), amount_msat=None, fee_limit_msat=1_000
    )
    await eventually(
        lambda: backend.payment_status(made["payment_hash"]),
        lambda s: s.outcome is PaymentOutcome.SUCCEEDED,
        "the payment to settle",
    )
    payment_hash: str = made["payment_hash"]
    return payment_hash


@pytest.mark.parametrize("kind", list(HostileKind))
async def test_hostile_getpayment(
    kind: HostileKind, backend: RlnBackend, control: httpx.AsyncClient
) -> None:
    payment_hash = await paid_outbound(backend, control)
    before = await served(control, kind)
    await post(
        control, "/faults", {"hostile": kind.value, "target": payment_hash, "route": "/getpayment"}
    )
    if kind in HARMLESS:
        status = await backend.payment_status(payment_hash)
        assert status.outcome is PaymentOutcome.SUCCEEDED
    else:
        with pytest.raises(NodeProtocolError):
            await backend.payment_status(payment_hash)
    assert await served(control, kind) == before + 1
    # Used up: the same record reads normally, with its real preimage.
    status = await backend.payment_status(payment_hash)
    assert status.outcome is PaymentOutcome.SUCCEEDED and status.preimage is not None
    assert hashlib.sha256(bytes.fromhex(status.preimage)).hexdigest() == payment_hash


@pytest.mark.parametrize("kind", list(HostileKind))
async def test_hostile_inbound_listing(
    kind: HostileKind,
    backend: RlnBackend,
    control: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hashes = []
    for amount in (1_000, 2_000):
        created = await backend.create_invoice(amount_msat=amount, expiry_s=600, description=None)
        await post(control, "/pay", {"invoice": created.invoice})
        hashes.append(created.payment_hash)
    bad, good = hashes
    await post(
        control,
        "/faults",
        {"hostile": kind.value, "count": 2, "target": bad, "route": "/listpayments"},
    )
    with caplog.at_level(logging.DEBUG, logger="vnode.lightning.rln"):
        for _ in range(2):  # twice: the second time the same bad item is not logged again
            listed = {p.payment_hash: p for p in await backend.inbound_payments()}
            assert listed[good].outcome is PaymentOutcome.SUCCEEDED
            assert listed[good].amount_msat == 2_000
            assert (bad in listed) == (kind in HARMLESS)
    # Logged with its hash, unless the hash is what the node left out.
    logged_as = None if kind == HostileKind.MISSING_FIELDS else bad
    reports = [r for r in caplog.records if hasattr(r, "item") and r.__dict__["item"] == logged_as]
    if kind in HARMLESS:
        assert not reports
    else:
        assert [r.levelno for r in reports] == [logging.WARNING, logging.DEBUG], reports
        assert "/listpayments" in reports[0].__dict__["where"]
    # Used up: both are back.
    listed = {p.payment_hash: p for p in await backend.inbound_payments()}
    assert listed[bad].outcome is PaymentOutcome.SUCCEEDED and listed[bad].amount_msat == 1_000


@pytest.mark.parametrize("kind", TRANSFER_KINDS)
async def test_hostile_transfers(
    kind: HostileKind, backend: RlnBackend, control: httpx.AsyncClient
) -> None:
    recipients = []
    for amount in (3, 4):
        invoice = await backend.create_rgb_invoice(
            asset_id=ASSET, duration_s=600, min_confirmations=1
        )
        await post(
            control,
            "/rgbsend",
            {"recipient_id": invoice.recipient_id, "asset_id": ASSET, "amount": amount},
        )
        recipients.append(invoice.recipient_id)
    await backend.refresh_transfers()
    await backend.refresh_transfers()  # sent -> waiting for confirmations -> settled
    bad, good = recipients
    await post(
        control, "/faults", {"hostile": kind.value, "target": bad, "route": "/listtransfers"}
    )
    listed = {t.recipient_id: t for t in await backend.list_transfers(ASSET)}
    assert (listed[good].status, listed[good].amount) == ("Settled", 4)
    assert (bad in listed) == (kind in HARMLESS)
    listed = {t.recipient_id: t for t in await backend.list_transfers(ASSET)}
    assert (listed[bad].status, listed[bad].amount) == ("Settled", 3)


async def test_untargeted_hostile_fault_hits_records_in_order(
    backend: RlnBackend, control: httpx.AsyncClient
) -> None:
    """Without a target, the next N records served are hostile, whoever they belong to: a
    listing of many keeps every other one."""
    for _ in range(3):
        created = await backend.create_invoice(amount_msat=1_000, expiry_s=600, description=None)
        await post(control, "/pay", {"invoice": created.invoice})
    everything = await backend.inbound_payments()
    await post(control, "/faults", {"hostile": "huge_amount", "count": 2, "route": "/listpayments"})
    assert len(await backend.inbound_payments()) == len(everything) - 2
    assert len(await backend.inbound_payments()) == len(everything)
