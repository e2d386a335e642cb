"""The control API (/_sim): the outside world and the faults. Not part of the RLN API.

POST /_sim/pay, /_sim/invoice and /_sim/rgbsend play outside payers, payees and wallets;
GET/POST /_sim/faults read and set the faults (payment faults with an optional count, and
hostile answers of /getpayment, /listpayments and /listtransfers: the catalogue, and which route
each kind corrupts, is in faults.py); /_sim/release and /_sim/release_all finish held payments;
GET /_sim/state shows everything.

It works whether the node is locked or not; its refusals are 400 in the node's error shape.
"""

from __future__ import annotations

from fastapi import APIRouter

from vnode_sim.models import (
    SimFaultsRequest,
    SimInvoiceRequest,
    SimPayRequest,
    SimReleaseAllRequest,
    SimReleaseRequest,
    SimRgbSendRequest,
)
from vnode_sim.routes_rln import Node

Json = dict[str, object]

router = APIRouter(prefix="/_sim")


@router.post("/pay")
async def pay(body: SimPayRequest, node: Node) -> Json:
    """An outside payer pays one of the node's invoices (what arrived is recorded)."""
    return node.ln.outside_pay(body)


@router.post("/invoice")
async def invoice(body: SimInvoiceRequest, node: Node) -> Json:
    """An invoice of an outside payee that the node can pay."""
    return node.ln.outside_invoice(body)


@router.get("/faults")
async def get_faults(node: Node) -> Json:
    return node.faults.as_json()


@router.post("/faults")
async def set_faults(body: SimFaultsRequest, node: Node) -> Json:
    """Payment faults and hostile answers (faults.py has the catalogue), e.g.
    ``{"next_payment": "hold", "count": 1000}`` or
    ``{"hostile": "uppercase_preimage", "count": 1, "target": "<payment hash>"}``."""
    return node.set_faults(body)


@router.post("/release")
async def release(body: SimReleaseRequest, node: Node) -> Json:
    """Finish a payment held by the hold fault."""
    return node.ln.release(body.payment_hash, body.outcome)


@router.post("/release_all")
async def release_all(body: SimReleaseAllRequest, node: Node) -> Json:
    """Finish every held payment the same way (after a test held a thousand)."""
    return {"released": node.ln.release_all(body.outcome)}


@router.post("/rgbsend")
async def rgb_send(body: SimRgbSendRequest, node: Node) -> Json:
    """An outside wallet sends assets on-chain to one of the node's RGB invoices."""
    return node.wallet.outside_send(body, node.now())


@router.get("/state")
async def state(node: Node) -> Json:
    return node.state_json()
