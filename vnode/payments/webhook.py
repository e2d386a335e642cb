"""POST /webhook/payment: a signed nudge. The body alone never moves money: vnode asks the node
about the payment hash and credits what the node says arrived, to the invoice's owner."""

from __future__ import annotations

import logging
import re

import asyncpg
import orjson

from vnode.domain.ids import parse_user_id
from vnode.domain.signing import SignatureError, verify
from vnode.errors import ApiError, ErrorCode
from vnode.lightning.base import LightningBackend, PaymentOutcome
from vnode.payments import store
from vnode.payments.node_errors import node_refusals
from vnode.payments.receive import credit_receipt

log = logging.getLogger(__name__)
_HASH = re.compile(r"[0-9a-f]{64}")


async def _check_signature(
    pool: asyncpg.Pool, secret: bytes, header: str | None, body: bytes, window_s: int
) -> None:
    try:
        signature = verify(secret, header, body, window_s)
    except SignatureError as exc:
        raise ApiError(ErrorCode.INVALID_SIGNATURE, str(exc)) from None
    # Each signature is accepted once: a replayed request inside the window is refused.
    if not await store.first_use_of_signature(pool, signature, window_s):
        raise ApiError(ErrorCode.INVALID_SIGNATURE, "this signed request was already received")


def _claimed_user(metadata: object) -> int | None:
    """The user id the sender put in metadata (a JSON string in the brief), if any.

    A user id that is there but is not one (`"vn_²"`: str.isdigit() said yes, int() said no, a
    500 before; security review L7) is refused with the API's own user-id rule.
    """
    if isinstance(metadata, str):
        try:
            metadata = orjson.loads(metadata)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(metadata, dict) or metadata.get("user_id") is None:
        return None
    try:
        return parse_user_id(metadata["user_id"])
    except ValueError as exc:
        raise ApiError(ErrorCode.INVALID_USER_ID, f"metadata.user_id: {exc}") from None


async def handle_payment_webhook(
    pool: asyncpg.Pool,
    backend: LightningBackend,
    secret: bytes,
    header: str | None,
    body: bytes,
    window_s: int,
) -> dict[str, object]:
    await _check_signature(pool, secret, header, body, window_s)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(ErrorCode.INVALID_JSON) from None
    payment_hash = payload.get("payment_hash") if isinstance(payload, dict) else None
    if not isinstance(payment_hash, str) or not _HASH.fullmatch(payment_hash):
        raise ApiError(ErrorCode.INVALID_REQUEST, "payment_hash must be 64 lower-case hex digits")
    owner = await store.invoice_owner(pool, payment_hash)
    if owner is None:
        raise ApiError(ErrorCode.UNKNOWN_INVOICE)
    claimed = _claimed_user(payload.get("metadata"))
    if claimed is not None and claimed != owner:
        log.warning(
            "webhook names a user who does not own the invoice; refused",
            extra={
                "payment_hash": payment_hash,
                "claimed_user_id": claimed,
                "owner_user_id": owner,
            },
        )
        raise ApiError(ErrorCode.USER_MISMATCH)
    with node_refusals(ErrorCode.NODE_UNAVAILABLE):  # it refuses no status query
        status = await backend.payment_status(payment_hash, inbound=True)
    if status.outcome is not PaymentOutcome.SUCCEEDED:
        return {
            "credited": False,
            "payment_hash": payment_hash,
            "user_id": owner,
            "node_status": status.outcome.value,
        }
    answer = await credit_receipt(pool, status)
    if not answer.ok:
        # Another asset than the invoice's arrived (an alert is raised), or the invoice went.
        raise ApiError(ErrorCode(answer.code), answer.message)
    assert answer.result is not None
    document: dict[str, object] = orjson.loads(answer.result)
    return document
