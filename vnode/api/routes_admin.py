"""Operator endpoints: funding and corrections, booked against a system account."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from vnode.api import models
from vnode.api.deps import AdminKey, IdempotencyHeader, ServicesDep, idempotency
from vnode.api.errors import documented_errors
from vnode.api.responses import answer_response
from vnode.api.schemas import AdminMoveBody
from vnode.errors import ErrorCode
from vnode.ledger.admin import AdminCommand, AdminMove, admin_move

router = APIRouter(prefix="/admin", tags=["admin"])

_RESPONSES = {
    **models.documented(models.AdminMove),
    **documented_errors(
        ErrorCode.INVALID_JSON,
        ErrorCode.INVALID_REQUEST,
        ErrorCode.INVALID_AMOUNT,
        ErrorCode.AMOUNT_FIELDS,
        ErrorCode.INVALID_USER_ID,
        ErrorCode.INVALID_ASSET_ID,
        ErrorCode.INVALID_IDEMPOTENCY_KEY,
        ErrorCode.UNKNOWN_USER,
        ErrorCode.INSUFFICIENT_BALANCE,
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
    ),
}


async def _move(
    move: AdminMove,
    body: AdminMoveBody,
    key: AdminKey,
    services: ServicesDep,
    idempotency_key: str | None,
) -> Response:
    command = AdminCommand(move, body.user_id, body.asset_id, body.amount, body.reason)
    answer = await admin_move(
        services.pool, services.signer, command, idempotency(key, idempotency_key)
    )
    services.wrote_for(body.user_id)
    return answer_response(answer)


@router.post(
    "/credit",
    summary="Credit a user from the operator_funding account (scope: admin)",
    description="Creates the user's node if needed. Shows in the user's history with the reason.",
    responses=_RESPONSES,
)
async def credit(
    body: AdminMoveBody,
    key: AdminKey,
    services: ServicesDep,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    return await _move(AdminMove.CREDIT, body, key, services, idempotency_key)


@router.post(
    "/debit",
    summary="Debit a user to the operator_funding account (scope: admin)",
    description="Refused with insufficient_balance when the user's spendable balance is short.",
    responses=_RESPONSES,
)
async def debit(
    body: AdminMoveBody,
    key: AdminKey,
    services: ServicesDep,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    return await _move(AdminMove.DEBIT, body, key, services, idempotency_key)
