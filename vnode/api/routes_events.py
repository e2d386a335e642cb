"""GET /virtual_events: one user's events, live, as Server-Sent Events (docs/EVENTS.md)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from fastapi.security.utils import get_authorization_scheme_param

from vnode.api.deps import ReadKey, ServicesDep
from vnode.api.errors import documented_errors
from vnode.apikeys import Scope
from vnode.domain.ids import parse_user_id
from vnode.errors import ApiError, ErrorCode
from vnode.events import sse
from vnode.ledger.balances import node_exists

router = APIRouter(tags=["events"])

_SEQ = re.compile(r"(0|[1-9][0-9]{0,18})")
_EXAMPLE = (
    "retry: 1000\n\n"
    "id: 7\nevent: transfer.completed\ndata: {\"version\":1,\"id\":\"7b0c...\",\"type\":"
    "\"transfer.completed\",\"user_id\":123456789,\"seq\":7,\"created_at\":"
    "\"2026-11-26T10:00:00.000001Z\",\"data\":{...}}\n\n"
    ": keep-alive\n\n")


@router.get(
    "/virtual_events",
    summary="One user's events, live, as Server-Sent Events (scope: read)",
    description="A `text/event-stream` of the user's events: each is `id: <seq>`, "
    "`event: <type>`, `data: <envelope JSON>` (docs/EVENTS.md). Without `Last-Event-ID` the "
    "stream starts with the events committed after it opened; with `Last-Event-ID: N` it first "
    "sends every event with seq > N (0: the whole history), then live ones. A comment line is "
    "sent every 15 s while nothing happens. The key goes in the `Authorization` header only: "
    "any query parameter besides `user_id` is refused.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"example": _EXAMPLE}}},
               **documented_errors(ErrorCode.INVALID_REQUEST, ErrorCode.INVALID_USER_ID,
                                   ErrorCode.UNKNOWN_USER)},
)
async def virtual_events(
    request: Request,
    _key: ReadKey,
    services: ServicesDep,
    user_id: Annotated[str, Query(description="Telegram id, decimal or vn_<id>")],
    last_event_id: Annotated[str | None, Header(
        alias="Last-Event-ID",
        description="Resume after this seq (the last `id:` received); absent: new events "
                    "only")] = None,
) -> StreamingResponse:
    unexpected = sorted(set(request.query_params) - {"user_id"})
    if unexpected:
        # Keys pasted into URLs leak (logs, proxies, history): refuse rather than ignore.
        raise ApiError(ErrorCode.INVALID_REQUEST,
                       f"unknown query parameter(s) {', '.join(unexpected)}; the API key goes "
                       "only in the 'Authorization: Bearer' header")
    if len(request.query_params.getlist("user_id")) != 1:
        raise ApiError(ErrorCode.INVALID_USER_ID, "give user_id exactly once")
    try:
        user = parse_user_id(user_id)
    except ValueError as exc:
        raise ApiError(ErrorCode.INVALID_USER_ID, str(exc)) from None
    if not await node_exists(services.pool, user):
        raise ApiError(ErrorCode.UNKNOWN_USER)
    latest = await sse.latest_seq(services.pool, user)
    if last_event_id is None:
        after = latest
    else:
        if not _SEQ.fullmatch(last_event_id.strip()):
            raise ApiError(ErrorCode.INVALID_REQUEST,
                           "Last-Event-ID is the seq of the last event received, a decimal "
                           "integer")
        after = int(last_event_id.strip())
        if after > latest:
            raise ApiError(ErrorCode.INVALID_REQUEST,
                           f"Last-Event-ID {after} is ahead of this user's latest event "
                           f"({latest}); was it another user's stream?")

    _, token = get_authorization_scheme_param(request.headers.get("Authorization"))

    async def still_authorised() -> bool:
        # Cached for a few seconds; a revocation empties the cache at once (NOTIFY).
        principal = await services.keys.verify(token)
        return principal is not None and principal.scope.allows(Scope.READ)

    return StreamingResponse(
        sse.stream_events(services.pool, user, after, still_authorised=still_authorised,
                          disconnected=request.is_disconnected),
        media_type=sse.MEDIA_TYPE, headers=sse.HEADERS)
