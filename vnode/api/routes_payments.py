"""Flow 2 (pay out) and Flow 3 (invoices, the inbound webhook)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response

from vnode.api.deps import (
    IdempotencyHeader,
    ReadKey,
    ReceiveKey,
    Services,
    ServicesDep,
    SpendKey,
    idempotency,
)
from vnode.api.errors import documented_errors
from vnode.api.models import InvoiceQuote, LnInvoice, Payment, RgbInvoice, documented
from vnode.api.responses import answer_response, json_response
from vnode.api.schemas import (
    DecodeInvoiceBody,
    LnInvoiceBody,
    PaymentQueryBody,
    RgbInvoiceBody,
    SendPaymentBody,
)
from vnode.domain.signing import SIGNATURE_HEADER
from vnode.errors import ApiError, ErrorCode
from vnode.payments import receive
from vnode.payments.policy import RGB_MIN_HTLC_MSAT
from vnode.payments.send import PayCommand, find_payment
from vnode.payments.webhook import handle_payment_webhook

router = APIRouter(tags=["lightning"])
_PENDING: dict[int | str, dict[str, Any]] = {
    202: {"model": Payment, "description": "Still in flight; the reserve stays held."}
}


@router.post(
    "/virtual_sendpayment",
    summary="Flow 2: pay a Lightning invoice for a user (scope: spend)",
    description="An invoice vnode issued is settled inside the ledger (no fee). Any other is "
    "paid through the master node: amount plus a fee reserve are held first, only a final "
    "failure refunds them, the unused reserve returns on success. `amt_msat` is required for "
    "an amountless invoice and must equal the amount otherwise. Answers 200 with `status` "
    "`succeeded` (fee and preimage) or `failed` (refunded), or 202 `pending`: follow it with "
    "`POST /virtual_payment` or the events.",
    status_code=200,
    responses={
        **documented(Payment),
        **_PENDING,
        **documented_errors(
            ErrorCode.INVALID_REQUEST,
            ErrorCode.INVALID_USER_ID,
            ErrorCode.INVALID_AMOUNT,
            ErrorCode.INVALID_INVOICE,
            ErrorCode.WRONG_NETWORK,
            ErrorCode.INVOICE_EXPIRED,
            ErrorCode.INVOICE_EXPIRY_TOO_FAR,
            ErrorCode.AMOUNT_REQUIRED,
            ErrorCode.AMOUNT_MISMATCH,
            ErrorCode.AMOUNT_TOO_LARGE,
            ErrorCode.FEE_LIMIT_TOO_LOW,
            ErrorCode.INVOICE_MISMATCH,
            ErrorCode.SELF_PAYMENT,
            ErrorCode.UNKNOWN_USER,
            ErrorCode.INSUFFICIENT_BALANCE,
            ErrorCode.LIMIT_EXCEEDED,
            ErrorCode.INVOICE_ALREADY_PAID,
            ErrorCode.PAYMENT_IN_PROGRESS,
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            ErrorCode.INVALID_IDEMPOTENCY_KEY,
            ErrorCode.NODE_UNAVAILABLE,
        ),
    },
)
async def virtual_sendpayment(
    body: SendPaymentBody,
    key: SpendKey,
    services: ServicesDep,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    command = PayCommand(body.user_id, body.invoice, body.amt_msat, body.fee_limit_msat)
    answer = await services.sender.pay(command, idempotency(key, idempotency_key))
    services.wrote_for(body.user_id)
    return answer_response(answer)


@router.post(
    "/virtual_decodeinvoice",
    summary="What paying an invoice would cost, before asking the user (scope: read)",
    description="Checks the invoice by the rules of /virtual_sendpayment and answers its "
    "amount, description, expiry, whether vnode settles it inside the ledger (`internal`, no "
    "fee) and the fee reserve that would be held. For an amountless invoice give `amt_msat`, "
    "or `amount_msat`, `fee_reserve_msat` and `total_msat` are null. Moves nothing.",
    responses={
        **documented(InvoiceQuote),
        **documented_errors(
            ErrorCode.INVALID_REQUEST,
            ErrorCode.INVALID_AMOUNT,
            ErrorCode.INVALID_INVOICE,
            ErrorCode.WRONG_NETWORK,
            ErrorCode.INVOICE_EXPIRED,
            ErrorCode.INVOICE_EXPIRY_TOO_FAR,
            ErrorCode.AMOUNT_MISMATCH,
            ErrorCode.AMOUNT_REQUIRED,
            ErrorCode.AMOUNT_TOO_LARGE,
            ErrorCode.NODE_UNAVAILABLE,
        ),
    },
)
async def virtual_decodeinvoice(
    body: DecodeInvoiceBody, _key: ReadKey, services: ServicesDep
) -> Response:
    return json_response(await services.sender.quote(body.invoice, body.amt_msat))


@router.post(
    "/virtual_payment",
    summary="The state of a user's payment, by payment hash (scope: read)",
    description="Same shape as /virtual_sendpayment: 200 when final, 202 while pending.",
    responses={
        **documented(Payment),
        **_PENDING,
        **documented_errors(
            ErrorCode.INVALID_REQUEST, ErrorCode.INVALID_USER_ID, ErrorCode.UNKNOWN_PAYMENT
        ),
    },
)
async def virtual_payment(body: PaymentQueryBody, _key: ReadKey, services: ServicesDep) -> Response:
    answer = await find_payment(services.pool, body.user_id, body.payment_hash)
    if answer is None:
        raise ApiError(ErrorCode.UNKNOWN_PAYMENT)
    return answer_response(answer)


@router.post(
    "/virtual_lninvoice",
    summary="A BOLT 11 invoice for a user (scope: receive)",
    description="BTC (`amt_msat`, optional: amountless) or an RGB asset (`asset_id` and "
    "`asset_amount`, both required; the BTC carried, `amt_msat`, defaults to "
    f"{RGB_MIN_HTLC_MSAT} msat, the node's minimum). Whatever the node receives for it is "
    "credited to the user once, overpayment included.",
    responses={
        **documented(LnInvoice),
        **documented_errors(
            ErrorCode.INVALID_REQUEST,
            ErrorCode.INVALID_USER_ID,
            ErrorCode.INVALID_AMOUNT,
            ErrorCode.INVALID_ASSET_ID,
            ErrorCode.AMOUNT_FIELDS,
            ErrorCode.AMOUNT_MISMATCH,
            ErrorCode.INVALID_EXPIRY,
            ErrorCode.LIMIT_EXCEEDED,
            ErrorCode.NODE_UNAVAILABLE,
        ),
    },
)
async def virtual_lninvoice(
    body: LnInvoiceBody, _key: ReceiveKey, services: ServicesDep
) -> Response:
    command = receive.InvoiceCommand(
        body.user_id,
        body.amt_msat,
        body.asset_id,
        body.asset_amount,
        body.description,
        body.expiry_sec,
    )
    return json_response(await _issuer(services).ln_invoice(command))


@router.post(
    "/virtual_rgbinvoice",
    summary="An invoice to receive an asset (scope: receive)",
    description="For an RGB asset: an RGB on-chain invoice from the node, credited when the "
    'node reports the transfer settled. For `"BTC"`: an amountless BOLT 11 invoice valid '
    "for `duration_seconds` (a BTC on-chain address would not be credited automatically).",
    responses={
        **documented(RgbInvoice),
        **documented_errors(
            ErrorCode.INVALID_REQUEST,
            ErrorCode.INVALID_USER_ID,
            ErrorCode.INVALID_ASSET_ID,
            ErrorCode.INVALID_EXPIRY,
            ErrorCode.LIMIT_EXCEEDED,
            ErrorCode.NODE_UNAVAILABLE,
        ),
    },
)
async def virtual_rgbinvoice(
    body: RgbInvoiceBody, _key: ReceiveKey, services: ServicesDep
) -> Response:
    command = receive.AssetInvoiceCommand(body.user_id, body.asset_id, body.duration_seconds)
    return json_response(await _issuer(services).asset_invoice(command))


def _issuer(services: Services) -> receive.InvoiceIssuer:
    return receive.InvoiceIssuer(
        services.pool, services.signer, services.backend, services.monitor, services.settings
    )


@router.post(
    "/webhook/payment",
    summary="Inbound payment notification (HMAC-signed, no API key)",
    description=f"Body as in the brief: `payment_hash`, `amount_msat`, `metadata`. Requires "
    f'`{SIGNATURE_HEADER}: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>` with '
    "VNODE_WEBHOOK_SECRET, within 5 minutes, each signature once. The body is only a nudge: "
    "vnode asks the node about the payment hash and credits what the node says was received "
    "to the user who owns the invoice.",
    openapi_extra={"security": []},
    responses=documented_errors(
        ErrorCode.INVALID_SIGNATURE,
        ErrorCode.INVALID_JSON,
        ErrorCode.INVALID_REQUEST,
        ErrorCode.UNKNOWN_INVOICE,
        ErrorCode.USER_MISMATCH,
        ErrorCode.NODE_UNAVAILABLE,
        ErrorCode.NOT_CONFIGURED,
        ErrorCode.INVALID_USER_ID,
        ErrorCode.PAYLOAD_TOO_LARGE,
        ErrorCode.ASSET_MISMATCH,
    ),
)
async def webhook_payment(
    request: Request,
    services: ServicesDep,
    signature: Annotated[str | None, Header(alias=SIGNATURE_HEADER)] = None,
) -> Response:
    secret = services.settings.webhook_secret
    if secret is None:
        raise ApiError(ErrorCode.NOT_CONFIGURED, "VNODE_WEBHOOK_SECRET is not set")
    result = await handle_payment_webhook(
        services.pool,
        services.backend,
        secret.get_secret_value().encode(),
        signature,
        await request.body(),
        services.settings.webhook_window_s,
    )
    return json_response(result)
