"""LndHub's wire format, as the clients read it (docs/WALLETS.md; the research file A.1-A.5).

Pure functions only: request bodies (JSON or form-encoded, numbers as numbers or strings), the
token header (with or without `Bearer `), Node's Buffer encoding, the error body and its codes,
and the table that turns a refusal of vnode's payment path into an LndHub code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson

from vnode.errors import ErrorCode
from vnode.lightning import bolt11

# The codes of the original LndHub (controllers/api.js) that clients know. Only BAD_AUTH makes
# a client act (BlueWallet and Alby log in again), so it is never used for anything else.
BAD_AUTH = 1
NOT_ENOUGH_BALANCE = 2
NOT_A_VALID_INVOICE = 4
GENERAL_ERROR = 6
ALREADY_PAID = 7  # also the original's answer to a second payment of an internal invoice
BAD_ARGUMENTS = 8
IN_TRANSIT = 9  # "Your previous payment is in transit"
PAYMENT_FAILED = 10
NO_NEW_ACCOUNTS = 11

CODE_MEANINGS: dict[int, str] = {
    BAD_AUTH: "bad auth: unknown, expired or revoked credentials or token",
    NOT_ENOUGH_BALANCE: "not enough balance, an expired invoice, a wrong network or a limit",
    NOT_A_VALID_INVOICE: "not a valid invoice",
    GENERAL_ERROR: "general server error: the node is unavailable (nothing was paid), or "
    "the database briefly is (503 with Retry-After: check the transactions before paying again)",
    ALREADY_PAID: "the invoice was already paid by someone else",
    BAD_ARGUMENTS: "bad arguments, or a read-only (invoice) account asked to pay",
    IN_TRANSIT: "the payment is in flight: it did not fail, do not pay again",
    PAYMENT_FAILED: "payment failed (refunded)",
    NO_NEW_ACCOUNTS: "no new accounts: credentials come from the Telegram bot",
}


@dataclass(frozen=True)
class LndHubError(Exception):
    """A refusal in LndHub's shape: `{"error": true, "code": code, "message": message}`."""

    status: int
    code: int
    message: str

    def body(self) -> dict[str, object]:
        return {"error": True, "code": self.code, "message": self.message}


def bad_auth(message: str = "bad auth") -> LndHubError:
    return LndHubError(401, BAD_AUTH, message)


def bad_arguments(message: str) -> LndHubError:
    return LndHubError(400, BAD_ARGUMENTS, message)


# One table from a refusal of vnode's services (ErrorCode) to LndHub's (HTTP status, code).
# Statuses are lndhub.go's: 4xx so Zeus and Alby (which throw on >= 300) show the message,
# BlueWallet reads the body's `error` whatever the status. limit_exceeded is the per-user
# limits' refusal (issue 12, part 3); it is looked up by value so the table needs nothing of it.
REFUSALS: dict[str, tuple[int, int]] = {
    ErrorCode.INSUFFICIENT_BALANCE.value: (400, NOT_ENOUGH_BALANCE),
    ErrorCode.UNKNOWN_USER.value: (400, NOT_ENOUGH_BALANCE),
    ErrorCode.INVOICE_EXPIRED.value: (400, NOT_ENOUGH_BALANCE),
    ErrorCode.WRONG_NETWORK.value: (400, NOT_ENOUGH_BALANCE),
    "limit_exceeded": (400, NOT_ENOUGH_BALANCE),
    ErrorCode.INVALID_INVOICE.value: (400, NOT_A_VALID_INVOICE),
    ErrorCode.INVOICE_EXPIRY_TOO_FAR.value: (400, NOT_A_VALID_INVOICE),
    ErrorCode.INVOICE_MISMATCH.value: (400, NOT_A_VALID_INVOICE),
    ErrorCode.INVOICE_ALREADY_PAID.value: (400, ALREADY_PAID),
    ErrorCode.PAYMENT_IN_PROGRESS.value: (409, IN_TRANSIT),
    ErrorCode.NODE_UNAVAILABLE.value: (503, GENERAL_ERROR),
}


DATABASE_DOWN_MESSAGE = (
    "the service is briefly unavailable; a payment sent now may or may not have been made: "
    "check your transactions before paying again"
)


def database_down() -> LndHubError:
    """The database out of reach (api/middleware.py): 503 and the general error. Unlike the
    node's 503, a payment may have been booked before the connection was lost: the wallet is
    told to look at its transactions before paying again (docs/WALLETS.md)."""
    return LndHubError(503, GENERAL_ERROR, DATABASE_DOWN_MESSAGE)


def refusal(code: str, message: str) -> LndHubError:
    """A refusal of vnode's payment or invoice path in LndHub's terms; anything not in the
    table is the caller's argument (code 8): amounts, self-payment, fee limits."""
    status, lndhub_code = REFUSALS.get(code, (400, BAD_ARGUMENTS))
    return LndHubError(status, lndhub_code, message)


# ---------------------------------------------------------------- requests


def parse_body(raw: bytes, content_type: str | None) -> dict[str, Any]:
    """A POST body as BlueWallet, Zeus, Alby (JSON) or curl and Python clients (form-encoded)
    send it. No body is an empty one (`/auth?type=...` may carry everything in the query)."""
    if not raw.strip():
        return {}
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        return _form(raw)
    try:
        decoded = orjson.loads(raw)
    except orjson.JSONDecodeError:
        if kind != "application/json":
            return _form(raw)  # a form body sent without its type (or with another one)
        raise bad_arguments("the body must be JSON or form-encoded") from None
    if not isinstance(decoded, dict):
        raise bad_arguments("the body must be a JSON object")
    return decoded


def _form(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise bad_arguments("the form body is not UTF-8") from None
    return dict(parse_qsl(text, keep_blank_values=True))


def token_of(authorization: str | None) -> str | None:
    """The access token of `Authorization: Bearer X`, or of a bare `X` (a Python LndHub client
    sends it without the scheme; the original hub strips `Bearer `)."""
    if authorization is None:
        return None
    parts = authorization.split(None, 1)
    if parts and parts[0].lower() == "bearer":
        parts = parts[1:]
    return parts[0].strip() if parts else None


def integer(value: object, field: str, *, required: bool = False) -> int | None:
    """A whole number given as a JSON number or a decimal string (BlueWallet sends `amt + ''`;
    a form body has only strings). None when absent or empty, unless `required`."""
    if value is None or value == "":
        if required:
            raise bad_arguments(f"{field} is required")
        return None
    if isinstance(value, bool):
        raise bad_arguments(f"{field} must be a whole number")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdecimal():
        number = int(value.strip())
    else:
        raise bad_arguments(f"{field} must be a whole number")
    if not 0 <= number < 2**53:
        raise bad_arguments(f"{field} must be between 0 and 2^53")
    return number


def text(value: object, field: str, *, max_length: int, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise bad_arguments(f"{field} is required")
        return None
    if not isinstance(value, str):
        raise bad_arguments(f"{field} must be a string")
    if len(value) > max_length:
        raise bad_arguments(f"{field} is longer than {max_length} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise bad_arguments(f"{field} must not contain control characters")
    return value


# ---------------------------------------------------------------- answers


def buffer(hex_value: str) -> dict[str, object]:
    """Node's `Buffer.toJSON()`: what the original hub sends for `r_hash` and `payment_hash`
    (a Python LndHub client does `bytes(r_hash["data"])` and fails on a hex string)."""
    return {"type": "Buffer", "data": list(bytes.fromhex(hex_value))}


def sats_floor(msat: int) -> int:
    return msat // 1000


def sats_ceil(msat: int) -> int:
    """What a payer is shown as spent: never less than what left the balance."""
    return -(-msat // 1000)


def decoded_invoice(invoice: bolt11.Invoice) -> dict[str, object]:
    """LND's PayReq as the original hub's /decodeinvoice answers it (numbers as strings)."""
    return {
        "destination": invoice.payee_pubkey,
        "payment_hash": invoice.payment_hash,
        "num_satoshis": str(sats_floor(invoice.amount_msat or 0)),
        "num_msat": str(invoice.amount_msat or 0),
        "timestamp": str(invoice.timestamp),
        "expiry": str(invoice.expiry_s),
        "description": invoice.description or "",
        "description_hash": invoice.description_hash or "",
        "fallback_addr": "",
        "cltv_expiry": str(invoice.min_final_cltv_expiry_delta),
        "route_hints": [],
    }


def paid_answer(payment: dict[str, Any], invoice: bolt11.Invoice) -> dict[str, object]:
    """/payinvoice's success, in the shape of the original hub and lndhub.go."""
    amount_msat = int(payment["amount_msat"])
    fee_msat = int(payment.get("fee_msat") or 0)
    return {
        "payment_error": "",
        "payment_preimage": payment.get("preimage") or "",
        "payment_hash": buffer(str(payment["payment_hash"])),
        "payment_route": {
            "total_amt": sats_ceil(amount_msat + fee_msat),
            "total_fees": sats_ceil(fee_msat),
            "total_amt_msat": amount_msat + fee_msat,
            "total_fees_msat": fee_msat,
        },
        "pay_req": invoice.text,
        "decoded": decoded_invoice(invoice),
        "num_satoshis": sats_ceil(amount_msat),
        "description": invoice.description or "",
    }
