"""Webhook subscriptions (scope admin): add (the signing secret is shown once), list, rotate
the secret (the new one shown once), remove, and the dead-letter list with its retry."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from vnode.api.deps import AdminKey, ServicesDep
from vnode.api.errors import documented_errors
from vnode.errors import ApiError, ErrorCode
from vnode.events import endpoints
from vnode.events.catalogue import EVENT_TYPES
from vnode.events.endpoints import (
    DEAD_LETTERS_MAX,
    DEFAULT_GRACE_S,
    DESCRIPTION_MAX_CHARS,
    MAX_GRACE_S,
    URL_MAX_CHARS,
    DeadLetter,
    InvalidEventType,
    InvalidUrl,
    WebhookInfo,
)
from vnode.events.ssrf import UnsafeUrl

router = APIRouter(prefix="/admin/webhooks", tags=["webhooks"])
# Ids are bounded like their bigint column: a larger one is the caller's error (422), not the
# database driver's (a 500; found by schemathesis).
MAX_ID = 2**63 - 1


def _url(value: object) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError(ErrorCode.INVALID_URL.value, "url must be a string")
    try:
        return endpoints.parse_url(value)
    except InvalidUrl as exc:
        raise PydanticCustomError(ErrorCode.INVALID_URL.value, str(exc)) from None


def _event_types(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise PydanticCustomError(
            ErrorCode.INVALID_EVENT_TYPE.value, "events must be a list of event type names"
        )
    try:
        return endpoints.parse_event_types(value)
    except InvalidEventType as exc:
        raise PydanticCustomError(ErrorCode.INVALID_EVENT_TYPE.value, str(exc)) from None


_EVENTS_SCHEMA = {
    "type": "array",
    "items": {"type": "string", "enum": list(EVENT_TYPES)},
    "description": "Event types to receive; empty or absent: every type.",
}


class WebhookBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "url": "https://bot.example.com/vnode-events",
                    "events": ["transfer.completed", "invoice.paid"],
                }
            ]
        },
    )

    url: Annotated[
        str,
        BeforeValidator(_url),
        WithJsonSchema(
            {
                "type": "string",
                "format": "uri",
                "maxLength": URL_MAX_CHARS,
                "description": "http(s) URL receiving the signed POSTs",
            }
        ),
    ]
    events: Annotated[
        tuple[str, ...], BeforeValidator(_event_types), WithJsonSchema(_EVENTS_SCHEMA)
    ] = ()
    description: Annotated[str | None, Field(max_length=DESCRIPTION_MAX_CHARS)] = None


class Webhook(BaseModel):
    id: int
    url: str
    events: list[str] = Field(description="Subscribed event types; empty: every type.")
    description: str | None
    created_at: datetime
    removed_at: datetime | None = None
    pending: int = Field(description="Deliveries waiting or backing off.")
    dead: int = Field(description="Deliveries in the dead-letter list.")
    secret_rotated_at: datetime | None = Field(
        default=None, description="When the secret was last rotated; null: never."
    )
    previous_secret_until: datetime | None = Field(
        default=None,
        description="During a rotation's grace period: until when the replaced "
        "secret still signs deliveries beside the new one.",
    )

    @classmethod
    def of(cls, info: WebhookInfo) -> Webhook:
        return cls(
            id=info.id,
            url=info.url,
            events=list(info.event_types),
            description=info.description,
            created_at=info.created_at,
            removed_at=info.removed_at,
            pending=info.pending,
            dead=info.dead,
            secret_rotated_at=info.secret_rotated_at,
            previous_secret_until=info.previous_secret_until,
        )


_SIGNING_DOC = (
    "`whsec_<base64>`: signs every delivery the Standard Webhooks way (`webhook-id`, "
    "`webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 over "
    '"<id>.<timestamp>.<body>">`); verify with any Standard Webhooks library. Shown only in '
    "this answer."
)


class WebhookCreated(Webhook):
    secret: str = Field(description=_SIGNING_DOC)


class RotateBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    grace_s: int = Field(
        default=DEFAULT_GRACE_S,
        ge=0,
        le=MAX_GRACE_S,
        description=(
            "For this many seconds the replaced secret still signs deliveries beside the new one "
            "(default 24 hours); 0: it stops at once."
        ),
    )


class WebhookRotated(Webhook):
    secret: str = Field(description="The new secret. " + _SIGNING_DOC)


class WebhookList(BaseModel):
    webhooks: list[Webhook]


class FailedDelivery(BaseModel):
    webhook_id: int
    url: str
    event_id: str
    type: str
    user_id: int
    seq: int
    attempts: int
    last_error: str | None
    created_at: datetime = Field(description="When the event happened.")
    first_tried_at: datetime = Field(description="When its delivery was queued (or requeued).")

    @classmethod
    def of(cls, dead: DeadLetter) -> FailedDelivery:
        return cls(
            webhook_id=dead.webhook_id,
            url=dead.url,
            event_id=dead.event_id,
            type=dead.event_type,
            user_id=dead.user_id,
            seq=dead.seq,
            attempts=dead.attempts,
            last_error=dead.last_error,
            created_at=dead.event_created_at,
            first_tried_at=dead.first_tried_at,
        )


class FailedList(BaseModel):
    failed: list[FailedDelivery]


class RetryBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook_id: int | None = Field(
        default=None, ge=1, le=MAX_ID, description="Only this endpoint; absent: all."
    )


class Requeued(BaseModel):
    requeued: int = Field(description="Dead deliveries queued again, with a new retry period.")


def _errors(*codes: ErrorCode) -> dict[int | str, dict[str, Any]]:
    return documented_errors(ErrorCode.INVALID_JSON, ErrorCode.INVALID_REQUEST, *codes)


WebhookId = Annotated[int, Path(description="The endpoint's id", ge=1, le=MAX_ID)]


@router.post(
    "",
    status_code=201,
    summary="Subscribe a URL to events; the signing secret is shown once (scope: admin)",
    description="Each event is POSTed as its JSON envelope with the Standard Webhooks headers "
    "`webhook-id` (the event id), `webhook-timestamp` and `webhook-signature`, and "
    "`X-VNode-Event-Id` and `X-VNode-Event-Type` (`X-VNode-Signature`, vnode's earlier "
    "signature, is still sent but deprecated; docs/EVENTS.md); a user's events arrive in "
    "`seq` order, at least once (deduplicate by event id). A delivery failing for more than 24 "
    "hours, with exponential backoff, goes to the dead-letter list. URLs on private, loopback, "
    "link-local or metadata addresses are refused (`unsafe_url`) unless their host is listed in "
    "VNODE_WEBHOOK_ALLOW_HOSTS.",
    responses=_errors(ErrorCode.INVALID_URL, ErrorCode.UNSAFE_URL, ErrorCode.INVALID_EVENT_TYPE),
)
async def create_webhook(
    body: WebhookBody, _key: AdminKey, services: ServicesDep
) -> WebhookCreated:
    try:
        info, secret = await endpoints.create_endpoint(
            services.pool,
            body.url,
            body.events,
            services.settings.allowed_webhook_hosts,
            body.description,
        )
    except UnsafeUrl as exc:
        raise ApiError(ErrorCode.UNSAFE_URL, str(exc)) from None
    except InvalidUrl as exc:
        raise ApiError(ErrorCode.INVALID_URL, str(exc)) from None
    return WebhookCreated(**Webhook.of(info).model_dump(), secret=secret)


@router.get(
    "",
    summary="List the webhook endpoints, without their secrets (scope: admin)",
    responses=_errors(),
)
async def list_webhooks(_key: AdminKey, services: ServicesDep) -> WebhookList:
    found = await endpoints.list_endpoints(services.pool)
    return WebhookList(webhooks=[Webhook.of(info) for info in found])


@router.get(
    "/failed",
    summary="The dead-letter list: deliveries that failed past the retry period (scope: admin)",
    responses=_errors(),
)
async def failed_deliveries(
    _key: AdminKey,
    services: ServicesDep,
    webhook_id: Annotated[
        int | None, Query(description="Only this endpoint", ge=1, le=MAX_ID)
    ] = None,
    limit: Annotated[int, Query(ge=1, le=DEAD_LETTERS_MAX)] = 100,
) -> FailedList:
    dead = await endpoints.dead_letters(services.pool, webhook_id, limit)
    return FailedList(failed=[FailedDelivery.of(d) for d in dead])


@router.post(
    "/retry",
    summary="Send dead deliveries again, of one endpoint or all (scope: admin)",
    description="They go back to the queue, in their original order, with a new retry period.",
    responses=_errors(ErrorCode.UNKNOWN_WEBHOOK),
)
async def retry_failed(
    _key: AdminKey, services: ServicesDep, body: RetryBody | None = None
) -> Requeued:
    webhook_id = body.webhook_id if body is not None else None
    requeued = await endpoints.retry_dead_letters(services.pool, webhook_id)
    if requeued is None:
        raise ApiError(ErrorCode.UNKNOWN_WEBHOOK, f"no active webhook endpoint {webhook_id}")
    return Requeued(requeued=requeued)


@router.post(
    "/{webhook_id}/rotate",
    summary="Give an endpoint a new signing secret, shown once (scope: admin)",
    description="For `grace_s` seconds (default 24 hours) deliveries carry two signatures in "
    "`webhook-signature`, one with the new secret and one with the replaced one, so the "
    "receiver can switch to the new secret at any time within it; then only the new secret "
    "signs. Rotating again during a grace period drops the secret replaced before.",
    responses=_errors(ErrorCode.UNKNOWN_WEBHOOK),
)
async def rotate_webhook_secret(
    webhook_id: WebhookId, _key: AdminKey, services: ServicesDep, body: RotateBody | None = None
) -> WebhookRotated:
    grace_s = body.grace_s if body is not None else DEFAULT_GRACE_S
    rotated = await endpoints.rotate_secret(services.pool, webhook_id, grace_s)
    if rotated is None:
        raise ApiError(ErrorCode.UNKNOWN_WEBHOOK, f"no active webhook endpoint {webhook_id}")
    return WebhookRotated(**Webhook.of(rotated.endpoint).model_dump(), secret=rotated.secret)


@router.delete(
    "/{webhook_id}",
    summary="Remove a webhook endpoint; its pending deliveries stop (scope: admin)",
    responses=_errors(ErrorCode.UNKNOWN_WEBHOOK),
)
async def remove_webhook(webhook_id: WebhookId, _key: AdminKey, services: ServicesDep) -> Webhook:
    removed = await endpoints.remove_endpoint(services.pool, webhook_id)
    if removed is None:
        raise ApiError(ErrorCode.UNKNOWN_WEBHOOK, f"no active webhook endpoint {webhook_id}")
    return Webhook.of(removed)
