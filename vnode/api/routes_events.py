"""GET /virtual_events: one user's events, live, as Server-Sent Events (docs/EVENTS.md)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.security.utils import get_authorization_scheme_param
from fastapi.sse import EventSourceResponse, ServerSentEvent

from vnode.api.deps import ReadKey, Services, ServicesDep
from vnode.api.errors import documented_errors
from vnode.apikeys import Scope
from vnode.domain.ids import parse_user_id
from vnode.errors import ApiError, ErrorCode
from vnode.events import sse
from vnode.events.envelope import Event

router = APIRouter(tags=["events"])

_SEQ = re.compile(r"(0|[1-9][0-9]{0,18})")
_EXAMPLE = (
    "retry: 1000\n\n"
    'event: transfer.completed\ndata: {"version":1,"id":"7b0c...","type":'
    '"transfer.completed","user_id":123456789,"seq":7,"created_at":'
    '"2026-11-26T10:00:00.000001Z","data":{...}}\nid: 7\n\n'
    ": ping\n\n"
)


def stream_hub(request: Request, services: Services) -> sse.StreamHub:
    """The app's StreamHub, made on first use (one per process and app)."""
    hub: sse.StreamHub | None = getattr(request.app.state, "sse_hub", None)
    if hub is None or hub.pool is not services.pool:
        hub = sse.StreamHub(
            services.pool,
            max_streams=services.settings.sse_max_streams,
            max_per_key=services.settings.sse_max_streams_per_key,
        )
        request.app.state.sse_hub = hub
    return hub


@dataclass(frozen=True)
class Admitted:
    """A stream that passed every check and holds its place (given back when it ends)."""

    hub: sse.StreamHub
    user_id: int
    after_seq: int
    token: str


async def admit(
    request: Request,
    key: ReadKey,
    services: ServicesDep,
    user_id: Annotated[str, Query(description="Telegram id, decimal or vn_<id>")],
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="Resume after this seq (the last `id:` received); absent: new events only",
        ),
    ] = None,
) -> AsyncIterator[Admitted]:
    """Every refusal happens here, before the response starts (a stream answers 200 at once);
    the place taken in the caps is given back when the request ends, however it ends."""
    unexpected = sorted(set(request.query_params) - {"user_id"})
    if unexpected:
        # Keys pasted into URLs leak (logs, proxies, history): refuse rather than ignore.
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            f"unknown query parameter(s) {', '.join(unexpected)}; the API key goes "
            "only in the 'Authorization: Bearer' header",
        )
    if len(request.query_params.getlist("user_id")) != 1:
        raise ApiError(ErrorCode.INVALID_USER_ID, "give user_id exactly once")
    try:
        user = parse_user_id(user_id)
    except ValueError as exc:
        raise ApiError(ErrorCode.INVALID_USER_ID, str(exc)) from None
    if last_event_id is not None and not _SEQ.fullmatch(last_event_id.strip()):
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            "Last-Event-ID is the seq of the last event received, a decimal integer",
        )

    hub = stream_hub(request, services)
    # Admission comes before any database work, so refused streams cost the database nothing.
    slot = hub.try_open(key.owner)
    if slot is None:
        raise ApiError(
            ErrorCode.TOO_MANY_STREAMS,
            f"at most {hub.max_per_key} event streams per API key and "
            f"{hub.max_streams} in all are open at once on this process; close one "
            "or retry later",
        )
    try:
        try:
            latest = await hub.opening(user)
        except TimeoutError:
            raise ApiError(
                ErrorCode.UNAVAILABLE, "the database is busy; retry the stream shortly"
            ) from None
        if latest is None:
            raise ApiError(ErrorCode.UNKNOWN_USER)
        if last_event_id is None:
            after = latest
        else:
            after = int(last_event_id.strip())
            if after > latest:
                raise ApiError(
                    ErrorCode.INVALID_REQUEST,
                    f"Last-Event-ID {after} is ahead of this user's latest event "
                    f"({latest}); was it another user's stream?",
                )
        _, token = get_authorization_scheme_param(request.headers.get("Authorization"))
        yield Admitted(hub, user, after, token)
    finally:
        slot.release()


def server_sent(event: Event) -> ServerSentEvent:
    """The envelope JSON as stored (one line: it has no newline), sent as-is."""
    return ServerSentEvent(
        id=str(event.user_seq), event=event.event_type, raw_data=event.encode().decode()
    )


@router.get(
    "/virtual_events",
    summary="One user's events, live, as Server-Sent Events (scope: read)",
    description="A `text/event-stream` of the user's events: each has `id: <seq>`, "
    "`event: <type>` and `data: <envelope JSON>` (docs/EVENTS.md). Without `Last-Event-ID` "
    "the stream starts with the events committed after it opened; with `Last-Event-ID: N` it "
    "first sends every event with seq > N (0: the whole history), then live ones. A comment "
    "line is sent every 15 s while nothing happens. The key goes in the `Authorization` "
    "header only: any query parameter besides `user_id` is refused. Open streams are capped "
    "per API key and per process (`VNODE_SSE_MAX_STREAMS_PER_KEY`, `VNODE_SSE_MAX_STREAMS`): "
    "one more is answered 429 `too_many_streams`.",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {"example": _EXAMPLE}}},
        **documented_errors(
            ErrorCode.INVALID_REQUEST,
            ErrorCode.INVALID_USER_ID,
            ErrorCode.UNKNOWN_USER,
            ErrorCode.TOO_MANY_STREAMS,
            ErrorCode.UNAVAILABLE,
        ),
    },
)
async def virtual_events(
    request: Request,
    services: ServicesDep,
    admitted: Annotated[Admitted, Depends(admit)],
) -> AsyncIterator[ServerSentEvent]:
    async def still_authorised() -> bool:
        # Cached for a few seconds; a revocation empties the cache at once (NOTIFY).
        principal = await services.keys.verify(admitted.token)
        return principal is not None and principal.scope.allows(Scope.READ)

    services.metrics.sse_streams.inc()
    try:
        # Sent at once: the client sees the stream open before any event exists.
        yield ServerSentEvent(retry=sse.RETRY_MS)
        async for event in admitted.hub.stream(
            admitted.user_id,
            admitted.after_seq,
            still_authorised=still_authorised,
            disconnected=request.is_disconnected,
        ):
            yield server_sent(event)
    finally:
        services.metrics.sse_streams.dec()
