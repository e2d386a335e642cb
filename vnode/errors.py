"""The catalogue of result codes: every refusal the API can give, with a stable code, its HTTP
status and its text, and the two successes a money function can answer.

The database's money functions answer these codes and nothing of HTTP (ADR 0012); this module
alone turns a code into a status and a text. Callers match on `code`; messages are for people
and may change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class ErrorSpec:
    status: int
    description: str


class ErrorCode(StrEnum):
    INVALID_REQUEST = "invalid_request"
    INVALID_JSON = "invalid_json"
    INVALID_AMOUNT = "invalid_amount"
    AMOUNT_FIELDS = "amount_fields"
    INVALID_USER_ID = "invalid_user_id"
    INVALID_ASSET_ID = "invalid_asset_id"
    INVALID_MEMO = "invalid_memo"
    INVALID_CURSOR = "invalid_cursor"
    INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key"
    SELF_TRANSFER = "self_transfer"
    UNKNOWN_USER = "unknown_user"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    INVALID_INVOICE = "invalid_invoice"
    WRONG_NETWORK = "wrong_network"
    INVOICE_EXPIRED = "invoice_expired"
    INVOICE_EXPIRY_TOO_FAR = "invoice_expiry_too_far"
    AMOUNT_REQUIRED = "amount_required"
    AMOUNT_MISMATCH = "amount_mismatch"
    AMOUNT_TOO_LARGE = "amount_too_large"
    FEE_LIMIT_TOO_LOW = "fee_limit_too_low"
    INVOICE_MISMATCH = "invoice_mismatch"
    SELF_PAYMENT = "self_payment"
    INVOICE_ALREADY_PAID = "invoice_already_paid"
    PAYMENT_IN_PROGRESS = "payment_in_progress"
    UNKNOWN_PAYMENT = "unknown_payment"
    UNKNOWN_INVOICE = "unknown_invoice"
    INVALID_EXPIRY = "invalid_expiry"
    INVALID_SIGNATURE = "invalid_signature"
    USER_MISMATCH = "user_mismatch"
    NODE_UNAVAILABLE = "node_unavailable"
    NOT_CONFIGURED = "not_configured"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNAVAILABLE = "unavailable"
    DATABASE_UNAVAILABLE = "database_unavailable"
    INTERNAL_ERROR = "internal_error"
    INVALID_URL = "invalid_url"
    UNSAFE_URL = "unsafe_url"
    INVALID_EVENT_TYPE = "invalid_event_type"
    UNKNOWN_WEBHOOK = "unknown_webhook"
    TOO_MANY_STREAMS = "too_many_streams"
    ASSET_MISMATCH = "asset_mismatch"
    # Per-user limits (issue 12, docs/LIMITS.md).
    LIMIT_EXCEEDED = "limit_exceeded"
    RATE_LIMITED = "rate_limited"
    # Lightning Addresses (issue 12, part 2; docs/LNURL.md)
    INVALID_ADDRESS_NAME = "invalid_address_name"
    ADDRESS_RESERVED = "address_reserved"
    ADDRESS_TAKEN = "address_taken"
    NO_ADDRESS = "no_address"
    # Proofs of liabilities (issue 16, docs/PROOFS.md)
    NO_PROOF = "no_proof"
    PROOF_PRUNED = "proof_pruned"


CATALOGUE: dict[ErrorCode, ErrorSpec] = {
    ErrorCode.INVALID_REQUEST: ErrorSpec(422, "The body is not of the documented shape."),
    ErrorCode.INVALID_JSON: ErrorSpec(400, "The body is not valid JSON."),
    ErrorCode.INVALID_AMOUNT: ErrorSpec(
        422, "An amount is not a positive JSON integer below 2^63 in its unit."
    ),
    ErrorCode.AMOUNT_FIELDS: ErrorSpec(
        422, "Not exactly one amount field, or an amount field that does not fit the asset."
    ),
    ErrorCode.INVALID_USER_ID: ErrorSpec(
        422, "A user id is not a positive integer, a decimal string or a vn_ node id."
    ),
    ErrorCode.INVALID_ASSET_ID: ErrorSpec(422, "The asset id is neither BTC nor an rgb: id."),
    ErrorCode.INVALID_MEMO: ErrorSpec(422, "The memo is too long or contains control characters."),
    ErrorCode.INVALID_CURSOR: ErrorSpec(422, "The history cursor is not one this API gave."),
    ErrorCode.INVALID_IDEMPOTENCY_KEY: ErrorSpec(
        422, "The Idempotency-Key header is empty, too long or not printable ASCII."
    ),
    ErrorCode.SELF_TRANSFER: ErrorSpec(422, "Sender and recipient are the same user."),
    ErrorCode.UNKNOWN_USER: ErrorSpec(404, "The user has no virtual node."),
    ErrorCode.INSUFFICIENT_BALANCE: ErrorSpec(409, "The spendable balance is too small."),
    ErrorCode.IDEMPOTENCY_KEY_REUSED: ErrorSpec(
        409, "The Idempotency-Key was used before with a different request."
    ),
    ErrorCode.INVALID_INVOICE: ErrorSpec(
        422, "Not a valid BOLT 11 invoice (checksum, signature, fields or required features)."
    ),
    ErrorCode.WRONG_NETWORK: ErrorSpec(422, "The invoice is for another Bitcoin network."),
    ErrorCode.INVOICE_EXPIRED: ErrorSpec(422, "The invoice has expired."),
    ErrorCode.INVOICE_EXPIRY_TOO_FAR: ErrorSpec(
        422,
        "The invoice expires further ahead than this service accepts "
        "(VNODE_INVOICE_EXPIRY_HORIZON_S, docs/NODE.md).",
    ),
    ErrorCode.AMOUNT_REQUIRED: ErrorSpec(422, "The invoice has no amount: give amt_msat."),
    ErrorCode.AMOUNT_MISMATCH: ErrorSpec(
        422, "amt_msat differs from the invoice's amount, or an RGB payment carries too little BTC."
    ),
    ErrorCode.AMOUNT_TOO_LARGE: ErrorSpec(422, "The amount is above the per-payment limit."),
    ErrorCode.FEE_LIMIT_TOO_LOW: ErrorSpec(
        422, "fee_limit_msat is below the fee reserve, and this node cannot enforce a smaller one."
    ),
    ErrorCode.INVOICE_MISMATCH: ErrorSpec(
        422, "The payment hash belongs to a vnode invoice, but the invoice text differs."
    ),
    ErrorCode.SELF_PAYMENT: ErrorSpec(422, "A user cannot pay their own invoice."),
    ErrorCode.INVOICE_ALREADY_PAID: ErrorSpec(409, "This invoice is already paid."),
    ErrorCode.PAYMENT_IN_PROGRESS: ErrorSpec(409, "A payment of this invoice is in flight."),
    ErrorCode.UNKNOWN_PAYMENT: ErrorSpec(404, "No payment of this user with this hash."),
    ErrorCode.UNKNOWN_INVOICE: ErrorSpec(404, "vnode issued no invoice with this payment hash."),
    ErrorCode.INVALID_EXPIRY: ErrorSpec(422, "The expiry is not between 1 s and the maximum."),
    ErrorCode.INVALID_SIGNATURE: ErrorSpec(
        401, "The webhook signature is missing, wrong, outside its time window or replayed."
    ),
    ErrorCode.USER_MISMATCH: ErrorSpec(
        403, "The webhook names a user who does not own the invoice; nothing was credited."
    ),
    ErrorCode.NODE_UNAVAILABLE: ErrorSpec(
        503, "The master node is locked, changing state or unreachable; no money moved."
    ),
    ErrorCode.NOT_CONFIGURED: ErrorSpec(503, "This feature is not configured on the service."),
    ErrorCode.UNAUTHORIZED: ErrorSpec(401, "No API key, or a key that is unknown or revoked."),
    ErrorCode.FORBIDDEN: ErrorSpec(403, "The API key's scope does not allow this endpoint."),
    ErrorCode.NOT_FOUND: ErrorSpec(404, "No such endpoint or object."),
    ErrorCode.METHOD_NOT_ALLOWED: ErrorSpec(405, "The endpoint does not take this method."),
    ErrorCode.PAYLOAD_TOO_LARGE: ErrorSpec(413, "The body is larger than the service accepts."),
    ErrorCode.UNAVAILABLE: ErrorSpec(503, "No database connection is free for a stream."),
    ErrorCode.DATABASE_UNAVAILABLE: ErrorSpec(
        503,
        "The database cannot be reached (restarting, failing over): the effect is unknown, "
        "send again with the same Idempotency-Key (docs/RELIABILITY.md).",
    ),
    ErrorCode.INTERNAL_ERROR: ErrorSpec(
        500, "Something failed inside vnode; the log has the details under the request id."
    ),
    ErrorCode.INVALID_URL: ErrorSpec(
        422, "Not an http(s) URL with a host, or one with credentials, a fragment or spaces."
    ),
    ErrorCode.UNSAFE_URL: ErrorSpec(
        422,
        "The URL's host is or resolves to a private, loopback, link-local or metadata "
        "address (or does not resolve); allow it explicitly with VNODE_WEBHOOK_ALLOW_HOSTS.",
    ),
    ErrorCode.INVALID_EVENT_TYPE: ErrorSpec(422, "An event type is not one vnode emits."),
    ErrorCode.UNKNOWN_WEBHOOK: ErrorSpec(404, "No active webhook endpoint with this id."),
    ErrorCode.ASSET_MISMATCH: ErrorSpec(
        409, "The node received another asset than the invoice asks for; nothing was credited."
    ),
    ErrorCode.TOO_MANY_STREAMS: ErrorSpec(
        429,
        "Too many event streams are open, for this API key or on this process; close one "
        "or retry later.",
    ),
    # Per-user limits (issue 12, docs/LIMITS.md).
    ErrorCode.LIMIT_EXCEEDED: ErrorSpec(
        409,
        "A per-user limit refuses this amount (the error names the limit and the headroom "
        "left); nothing moved.",
    ),
    ErrorCode.RATE_LIMITED: ErrorSpec(
        429,
        "Too many requests for this API key or account; nothing was done: retry after the "
        "Retry-After header's seconds.",
    ),
    # Lightning Addresses (issue 12, part 2; docs/LNURL.md)
    ErrorCode.INVALID_ADDRESS_NAME: ErrorSpec(
        422, "An address name is 1 to 64 characters of a-z, 0-9, '.', '_' and '-' (LUD-16)."
    ),
    ErrorCode.ADDRESS_RESERVED: ErrorSpec(422, "This address name is reserved for the service."),
    ErrorCode.ADDRESS_TAKEN: ErrorSpec(
        409,
        "Another user has this address name, or gave it up recently and it is held for them "
        "(VNODE_ADDRESS_HOLD_S).",
    ),
    ErrorCode.NO_ADDRESS: ErrorSpec(404, "The user has no Lightning Address."),
    ErrorCode.NO_PROOF: ErrorSpec(
        404, "No such epoch was published, or the user held none of the asset in it."
    ),
    ErrorCode.PROOF_PRUNED: ErrorSpec(
        410,
        "The epoch's tree is no longer kept (VNODE_PROOFS_RETENTION_S); its signed statement "
        "is. Ask for a newer epoch.",
    ),
}


# The successes of a money function (vnode/db/functions/00_helpers.sql): "ok" when its work is
# done, "pending" for an external payment reserved but not yet final.
SUCCESS_STATUS: dict[str, int] = {"ok": 200, "pending": 202}


def result_status(code: str) -> int:
    """The HTTP status of a result code; a code outside the catalogue is a bug (ValueError)."""
    success = SUCCESS_STATUS.get(code)
    return success if success is not None else CATALOGUE[ErrorCode(code)].status


class ApiError(Exception):
    """A refusal with a catalogued code. Raised by services, rendered by the API layer."""

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        fields: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.code = code
        self.status = CATALOGUE[code].status
        self.message = message or CATALOGUE[code].description
        # A refusal's data beside code and message (limit_exceeded: the limit and headroom).
        self.fields = dict(fields or {})
        self.headers = dict(headers or {})  # rate_limited: Retry-After
        super().__init__(f"{code.value}: {self.message}")
