"""The brief's endpoints for virtual nodes, Flow 1 transfers, balances and history."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from vnode.api import hot
from vnode.api.deps import ReadKey, ReceiveKey, Services, ServicesDep, idempotency
from vnode.api.errors import documented_errors
from vnode.api.hot import HotRoute
from vnode.api.models import (
    Balances,
    HistoryPage,
    Transfer,
    UserAssetBalance,
    VirtualNode,
    documented,
)
from vnode.api.responses import answer_response, json_response
from vnode.api.schemas import AssetBalanceBody, HistoryBody, TransferBody, UserBody
from vnode.apikeys import Principal
from vnode.apikeys import Scope as KeyScope
from vnode.domain.ids import BTC, node_id
from vnode.domain.timestamps import format_timestamp
from vnode.errors import ApiError, ErrorCode
from vnode.ledger import balances, history, nodes, transfers

router = APIRouter(tags=["virtual nodes"])


@router.post(
    "/virtual_node",
    summary="Create or fetch a user's virtual node (scope: receive)",
    description="Creates `vn_{telegram_id}` on first call, with a public key derived by BIP32 "
    "from the service's master seed; later calls return the same node.",
    responses={
        **documented(VirtualNode),
        **documented_errors(ErrorCode.INVALID_USER_ID, ErrorCode.INVALID_REQUEST),
    },
)
async def virtual_node(body: UserBody, _key: ReceiveKey, services: ServicesDep) -> Response:
    node = await nodes.ensure_node(services.pool, services.signer, body.user_id)
    services.wrote_for(body.user_id)  # a new node: its reads see it at once
    return json_response(
        {
            "user_id": node.user_id,
            "node_id": node.node_id,
            "pubkey": node.pubkey,
            "created_at": format_timestamp(node.created_at),
        }
    )


async def handle_transfer(
    services: Services, body: TransferBody, key: Principal, idempotency_key: str | None
) -> Response:
    if body.from_user_id == body.to_user_id:
        raise ApiError(ErrorCode.SELF_TRANSFER)
    command = transfers.TransferCommand(
        body.from_user_id, body.to_user_id, body.asset_id, body.amount, body.memo
    )
    answer = await transfers.transfer(
        services.pool,
        services.signer,
        command,
        idempotency(key, idempotency_key),
        services.transfers,
    )
    services.wrote_for(body.from_user_id, body.to_user_id)
    services.metrics.transfers.labels(
        "completed" if answer.ok else answer.code,
        "BTC" if body.asset_id == BTC else "RGB",
    ).inc()
    return answer_response(answer)


async def handle_assetbalance(
    services: Services, body: AssetBalanceBody, _key: Principal, _idempotency_key: str | None
) -> Response:
    found = await balances.asset_balance(
        services.read_pool(body.user_id), body.user_id, body.asset_id
    )
    if found is None:
        raise ApiError(ErrorCode.UNKNOWN_USER)
    return json_response(
        {"user_id": body.user_id, "node_id": node_id(body.user_id), **found.as_json()}
    )


# Served by vnode/api/fastpath.py (app.py gives it this table); hot.include below makes their
# FastAPI routes, for the OpenAPI document and as the fallback.
HOT_ROUTES: tuple[HotRoute[Any], ...] = (
    HotRoute(
        "/virtual_transfer",
        KeyScope.SPEND,
        TransferBody,
        Transfer,
        handle_transfer,
        summary="Flow 1: internal transfer between two users (scope: spend)",
        description="Moves an amount from one user to another in one database transaction, "
        "free and instant. Exactly one amount field: `amount_sats` or `amount_msat` for BTC, "
        "`asset_amount` for an RGB asset. The recipient's node is created on first use. "
        "Send an `Idempotency-Key` header to make retries safe.",
        errors=(
            ErrorCode.INVALID_JSON,
            ErrorCode.INVALID_REQUEST,
            ErrorCode.INVALID_AMOUNT,
            ErrorCode.AMOUNT_FIELDS,
            ErrorCode.INVALID_USER_ID,
            ErrorCode.INVALID_ASSET_ID,
            ErrorCode.INVALID_MEMO,
            ErrorCode.INVALID_IDEMPOTENCY_KEY,
            ErrorCode.SELF_TRANSFER,
            ErrorCode.UNKNOWN_USER,
            ErrorCode.INSUFFICIENT_BALANCE,
            ErrorCode.LIMIT_EXCEEDED,
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
        ),
        idempotent=True,
    ),
    HotRoute(
        "/virtual_assetbalance",
        KeyScope.READ,
        AssetBalanceBody,
        UserAssetBalance,
        handle_assetbalance,
        summary="A user's balance of one asset (scope: read)",
        description="`balance` is settled (spendable plus pending), `pending` is reserved for "
        "outgoing payments in flight, `spendable` can be sent now. BTC amounts are in msat, "
        "with whole sats rounded down alongside; RGB amounts are in the asset's units.",
        errors=(
            ErrorCode.INVALID_USER_ID,
            ErrorCode.INVALID_ASSET_ID,
            ErrorCode.UNKNOWN_USER,
            ErrorCode.INVALID_REQUEST,
        ),
    ),
)
hot.include(router, HOT_ROUTES)


async def _require_node(services: ServicesDep, user_id: int) -> None:
    if not await balances.node_exists(services.read_pool(user_id), user_id):
        raise ApiError(ErrorCode.UNKNOWN_USER)


@router.post(
    "/virtual_balances",
    summary="Every asset a user holds (scope: read)",
    responses={
        **documented(Balances),
        **documented_errors(
            ErrorCode.INVALID_USER_ID, ErrorCode.UNKNOWN_USER, ErrorCode.INVALID_REQUEST
        ),
    },
)
async def virtual_balances(body: UserBody, _key: ReadKey, services: ServicesDep) -> Response:
    found = await balances.all_balances(services.read_pool(body.user_id), body.user_id)
    if found is None:
        raise ApiError(ErrorCode.UNKNOWN_USER)
    return json_response(balances.balances_json(body.user_id, found))


@router.post(
    "/virtual_history",
    summary="A user's transactions, newest first (scope: read)",
    description="Keyset pagination: pass the `next_cursor` of one page as `cursor` to get the "
    "next; it is null on the last page.",
    responses={
        **documented(HistoryPage),
        **documented_errors(
            ErrorCode.INVALID_USER_ID,
            ErrorCode.INVALID_CURSOR,
            ErrorCode.UNKNOWN_USER,
            ErrorCode.INVALID_REQUEST,
        ),
    },
)
async def virtual_history(body: HistoryBody, _key: ReadKey, services: ServicesDep) -> Response:
    before_id = None
    if body.cursor is not None:
        try:
            before_id = history.decode_cursor(body.cursor)
        except ValueError:
            raise ApiError(ErrorCode.INVALID_CURSOR) from None
    await _require_node(services, body.user_id)
    entries, next_cursor = await history.history_page(
        services.read_pool(body.user_id), body.user_id, body.limit, before_id
    )
    return json_response(
        {
            "user_id": body.user_id,
            "node_id": node_id(body.user_id),
            "transactions": entries,
            "next_cursor": next_cursor,
        }
    )
