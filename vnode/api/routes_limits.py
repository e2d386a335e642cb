"""Operator endpoints for per-user limits (issue 12, docs/LIMITS.md): read a user's limits,
change the user's overrides. The limits are enforced by the money functions, not here."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from vnode.api import models
from vnode.api.deps import AdminKey, ServicesDep
from vnode.api.errors import documented_errors
from vnode.api.responses import json_response
from vnode.api.schemas import LimitsBody, UserId
from vnode.errors import ErrorCode
from vnode.limits import store

router = APIRouter(prefix="/admin", tags=["admin"])


@router.post(
    "/limits",
    summary="Set a user's limit overrides (scope: admin)",
    description="Each limit named in the body becomes the user's override (msat of BTC); "
    "null removes the override, so the server default (VNODE_LIMIT_*) applies again; a limit "
    "left out stays as it was. Answers the user's limits after the change. Enforced by every "
    "later transfer, payment and invoice (docs/LIMITS.md).",
    responses={
        **models.documented(models.UserLimits),
        **documented_errors(
            ErrorCode.INVALID_JSON, ErrorCode.INVALID_REQUEST, ErrorCode.INVALID_USER_ID
        ),
    },
)
async def set_limits(body: LimitsBody, _key: AdminKey, services: ServicesDep) -> Response:
    found = await store.set_overrides(services.pool, body.user_id, body.changes())
    return json_response(store.limits_answer(found).model_dump(mode="json"))


@router.get(
    "/limits/{user_id}",
    summary="A user's limits: effective, overrides, defaults, usage, headroom (scope: admin)",
    responses={
        **models.documented(models.UserLimits),
        **documented_errors(ErrorCode.INVALID_REQUEST, ErrorCode.INVALID_USER_ID),
    },
)
async def show_limits(
    user_id: Annotated[UserId, Path(description="Telegram id, decimal or vn_<id>")],
    _key: AdminKey,
    services: ServicesDep,
) -> Response:
    found = await store.user_limits(services.pool, user_id)
    return json_response(store.limits_answer(found).model_dump(mode="json"))
