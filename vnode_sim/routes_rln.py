"""The RGB Lightning Node REST routes vnode uses: same paths, methods, bodies and errors.

Every route but /unlock and /decodelninvoice answers 403 LockedNode while the node is locked:
the node decodes invoices without looking at its lock, and so does the sim.

Requests are parsed, and every answer is checked before it leaves, with the models vnode's
adapter reads the node with (``vnode.lightning.rln_api``): a sim that drifted from what the
adapter reads fails here, with a 500, not in some test far away. The hostile-answer faults
break records after that check, on purpose.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from vnode.lightning import rln_api as api
from vnode_sim import errors
from vnode_sim.connection import request_drop
from vnode_sim.faults import HostileRoute, PaymentFault
from vnode_sim.state import SimNode

Json = dict[str, object]


def sound(model: type[api.Model], answer: Json) -> Json:
    """``answer`` as built (with the spec's fields vnode does not read), once the model of
    what vnode reads accepts it."""
    model.model_validate(answer)
    return answer


# Dependencies are coroutines: FastAPI runs a plain function in its thread pool, a thread hop
# per request that was a good part of the sim's time per payment (bench/payments.py).
async def get_node(request: Request) -> SimNode:
    node = request.app.state.sim_node
    assert isinstance(node, SimNode)
    return node


async def unlocked_node(request: Request) -> SimNode:
    node = await get_node(request)
    node.require_unlocked()
    return node


Node = Annotated[SimNode, Depends(get_node)]
UnlockedNode = Annotated[SimNode, Depends(unlocked_node)]

router = APIRouter()


@router.get("/nodeinfo")
async def node_info(node: UnlockedNode) -> Json:
    return sound(api.NodeInfoResponse, node.node_info())


@router.get("/networkinfo")
async def network_info(node: UnlockedNode) -> Json:
    return sound(api.NetworkInfoResponse, node.network_info())


@router.get("/listchannels")
async def list_channels(node: UnlockedNode) -> Json:
    return sound(api.ListChannelsResponse, {"channels": node.list_channels()})


@router.post("/btcbalance")
async def btc_balance(_body: api.BtcBalanceRequest, node: UnlockedNode) -> Json:
    return node.btc_balance()


@router.post("/assetbalance")
async def asset_balance(body: api.AssetBalanceRequest, node: UnlockedNode) -> dict[str, int]:
    return node.asset_balance(body.asset_id)


@router.post("/listassets")
async def list_assets(body: api.ListAssetsRequest, node: UnlockedNode) -> Json:
    return node.list_assets(list(body.filter_asset_schemas))


@router.post("/decodelninvoice")
async def decode_ln_invoice(body: api.DecodeLNInvoiceRequest, node: Node) -> Json:
    return sound(api.DecodeLNInvoiceResponse, node.ln.decode_invoice(body.invoice))


@router.post("/lninvoice")
async def ln_invoice(body: api.LNInvoiceRequest, node: UnlockedNode) -> Json:
    return sound(api.LNInvoiceResponse, {"invoice": node.ln.create_invoice(body)})


@router.post("/invoicestatus")
async def invoice_status(body: api.InvoiceStatusRequest, node: UnlockedNode) -> Json:
    return {"status": node.ln.invoice_status(body.invoice)}


@router.post("/sendpayment", response_model=None)
async def send_payment(
    body: api.SendPaymentRequest, node: UnlockedNode, request: Request
) -> Json | JSONResponse:
    result = node.ln.send_payment(body)
    sound(api.SendPaymentResponse, result.body)
    # The payment is recorded and in flight before any of these answers: it proceeds.
    if result.wire_fault == PaymentFault.TIMEOUT_THEN_SUCCEED:
        await node.hang(node.config.request_timeout_hang_s)
    elif result.wire_fault == PaymentFault.ERROR_500_THEN_SUCCEED:
        error = errors.unexpected("lost track of the payment request (simulated)")
        return JSONResponse(error.body(), status_code=error.status)
    elif result.wire_fault == PaymentFault.DROP_THEN_SUCCEED:
        request_drop(request)
    return result.body


# The hostile-answer faults (faults.py) rewrite records here, on the way out, so the node's
# own state stays sound: only what the client reads is broken.


@router.post("/getpayment")
async def get_payment(body: api.GetPaymentRequest, node: UnlockedNode) -> Json:
    payment = node.ln.get_payment(body.payment_hash)
    sound(api.GetPaymentResponse, {"payment": payment})
    (served,) = node.faults.serve(HostileRoute.GETPAYMENT, [payment])
    return {"payment": served}


@router.get("/listpayments")
async def list_payments(node: UnlockedNode) -> Json:
    payments = node.ln.list_payments()
    sound(api.ListPaymentsResponse, {"payments": payments})
    return {"payments": node.faults.serve(HostileRoute.LISTPAYMENTS, payments)}


@router.post("/rgbinvoice")
async def rgb_invoice(body: api.RgbInvoiceRequest, node: UnlockedNode) -> Json:
    return sound(api.RgbInvoiceResponse, node.wallet.create_invoice(body, node.now()))


@router.post("/refreshtransfers")
async def refresh_transfers(body: api.RefreshRequest, node: UnlockedNode) -> Json:
    return node.wallet.refresh_transfers(body, node.now())


@router.post("/listtransfers")
async def list_transfers(body: api.ListTransfersRequest, node: UnlockedNode) -> Json:
    transfers = node.wallet.list_transfers(body.asset_filter, body.txid)
    sound(api.ListTransfersResponse, {"transfers": transfers})
    return {"transfers": node.faults.serve(HostileRoute.LISTTRANSFERS, transfers)}


@router.post("/lock")
async def lock(node: Node) -> Json:
    node.lock()
    return {}


@router.post("/unlock")
async def unlock(body: api.UnlockRequest, node: Node) -> Json:
    node.unlock(body.password)
    return {}
