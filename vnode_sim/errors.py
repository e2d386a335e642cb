"""Error answers in the RGB Lightning Node's shape: ``{"error", "code", "name"}``.

Names, texts and status codes follow the node's ``APIError`` (400 validation, 401 password,
403 state and business refusals, 500 internal). The control API (/_sim) answers its own
refusals in the same shape with status 400.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


class RlnError(Exception):
    def __init__(self, status: int, name: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.name = name
        self.message = message

    def body(self) -> dict[str, object]:
        return {"error": self.message, "code": self.status, "name": self.name}


def already_unlocked() -> RlnError:
    return RlnError(403, "AlreadyUnlocked", "Node has already been unlocked")


def duplicate_payment(status: str) -> RlnError:
    return RlnError(
        403, "DuplicatePayment", f"Another payment for this invoice is already in status {status}"
    )


def incomplete_rgb_info() -> RlnError:
    return RlnError(
        400, "IncompleteRGBInfo", "For an RGB operation both the asset ID and amount are necessary"
    )


def invalid_amount(detail: str) -> RlnError:
    return RlnError(400, "InvalidAmount", f"Invalid amount: {detail}")


def invalid_asset_id(asset_id: str) -> RlnError:
    return RlnError(400, "InvalidAssetID", f"Invalid asset ID: {asset_id}")


def invalid_description_hash(value: str) -> RlnError:
    return RlnError(400, "InvalidDescriptionHash", f"Invalid description hash: {value}")


def invalid_invoice(detail: str) -> RlnError:
    return RlnError(400, "InvalidInvoice", f"Invalid invoice: {detail}")


def invalid_payment_hash(value: str) -> RlnError:
    return RlnError(400, "InvalidPaymentHash", f"Invalid payment hash: {value}")


def invalid_request(detail: str) -> RlnError:
    return RlnError(400, "InvalidRequest", f"Invalid request: {detail}")


def locked_node() -> RlnError:
    return RlnError(403, "LockedNode", "Node is locked (hint: call unlock)")


def payment_not_found(payment_hash: str) -> RlnError:
    return RlnError(403, "PaymentNotFound", f"Payment not found: {payment_hash}")


def recipient_id_already_used() -> RlnError:
    return RlnError(403, "RecipientIDAlreadyUsed", "Recipient ID already used")


def unexpected(detail: str) -> RlnError:
    # 500 Unexpected says nothing about a payment's fate: clients must treat it as unknown.
    return RlnError(500, "Unexpected", f"Unexpected error: {detail}")


def unknown_contract_id() -> RlnError:
    return RlnError(403, "UnknownContractId", "Unknown RGB contract ID")


def unknown_ln_invoice() -> RlnError:
    return RlnError(403, "UnknownLNInvoice", "Unknown LN invoice")


def wrong_password() -> RlnError:
    return RlnError(401, "WrongPassword", "The provided password is incorrect")


def control_refusal(name: str, message: str) -> RlnError:
    """A refusal of the control API (/_sim), e.g. paying an invoice twice."""
    return RlnError(400, name, message)


def install_error_handlers(app: FastAPI) -> None:
    async def on_rln_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RlnError)
        return JSONResponse(exc.body(), status_code=exc.status)

    async def on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
        # The node rejects a body it cannot deserialise (missing field, wrong type, negative
        # amount, bad JSON) as 400 InvalidRequest before looking at anything else.
        assert isinstance(exc, RequestValidationError)
        details = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', '')}"
            for err in exc.errors()
        )
        error = invalid_request(details or "malformed body")
        return JSONResponse(error.body(), status_code=error.status)

    app.add_exception_handler(RlnError, on_rln_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
