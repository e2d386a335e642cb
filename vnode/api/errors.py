"""Rendering every refusal as {"error": {"code", "message"}, "request_id"}."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from vnode.api.schemas import ErrorBody
from vnode.errors import CATALOGUE, ApiError, ErrorCode
from vnode.logs import request_id_var

_BY_FIELD = {
    "amount_sats": ErrorCode.INVALID_AMOUNT,
    "amount_msat": ErrorCode.INVALID_AMOUNT,
    "asset_amount": ErrorCode.INVALID_AMOUNT,
    "user_id": ErrorCode.INVALID_USER_ID,
    "from_user_id": ErrorCode.INVALID_USER_ID,
    "to_user_id": ErrorCode.INVALID_USER_ID,
    "asset_id": ErrorCode.INVALID_ASSET_ID,
    "memo": ErrorCode.INVALID_MEMO,
}
_CODES = {code.value for code in ErrorCode}
_HTTP_CODES = {
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
}


def error_response(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    fields: Mapping[str, object] | None = None,
) -> Response:
    """`fields`: a refusal's data beside code and message (limit_exceeded's limit, headroom)."""
    error = {"code": code, "message": message, **(fields or {})}
    body = {"error": error, "request_id": request_id_var.get()}
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def api_error_response(error: ApiError) -> Response:
    headers = dict(error.headers)
    if error.code is ErrorCode.UNAUTHORIZED:
        headers["WWW-Authenticate"] = "Bearer"
    return error_response(
        error.status, error.code.value, error.message, headers or None, error.fields
    )


def _validation_code(error: dict[str, Any]) -> ErrorCode:
    if error["type"] in _CODES:
        return ErrorCode(error["type"])
    if error["type"] == "json_invalid":
        return ErrorCode.INVALID_JSON
    field = next((part for part in reversed(error["loc"]) if isinstance(part, str)), "")
    if error["type"] in ("missing", "extra_forbidden"):
        return ErrorCode.INVALID_REQUEST
    return _BY_FIELD.get(field, ErrorCode.INVALID_REQUEST)


def _describe(error: dict[str, Any]) -> str:
    if tuple(error["loc"]) in (("body",), ()) and error["type"] in (
        "model_attributes_type",
        "dict_type",
        "model_type",
    ):
        return "the body must be a JSON object, sent with Content-Type: application/json"
    where = ".".join(str(part) for part in error["loc"] if part != "body")
    return f"{where}: {error['msg']}" if where else str(error["msg"])


def validation_error_response(errors: Sequence[Any]) -> Response:
    """The catalogue answer for pydantic errors (FastAPI's, or a model validated directly)."""
    if not errors:
        return error_response(422, ErrorCode.INVALID_REQUEST.value, "invalid request")
    code = _validation_code(errors[0])
    message = "; ".join(_describe(e) for e in errors[:5])
    return error_response(CATALOGUE[code].status, code.value, message)


async def _on_validation(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return validation_error_response(list(exc.errors()))


async def _on_api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return api_error_response(exc)


async def _on_http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, ErrorCode.INVALID_REQUEST)
    message = exc.detail if isinstance(exc.detail, str) else CATALOGUE[code].description
    return error_response(exc.status_code, code.value, message, exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)


def documented_errors(*codes: ErrorCode) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` listing the error codes an endpoint can answer, grouped by status."""
    by_status: dict[int, list[ErrorCode]] = defaultdict(list)
    if ErrorCode.INVALID_REQUEST in codes and ErrorCode.INVALID_JSON not in codes:
        codes = (*codes, ErrorCode.INVALID_JSON)  # a body that is not JSON at all
    # What any route can answer: no key or the wrong one, a key over its rate limit
    # (limits/rate.py), a body over the one limit every route shares (api/body_limit.py), the
    # database out of reach (api/middleware.py) and the 500 of a bug.
    always = (
        ErrorCode.UNAUTHORIZED,
        ErrorCode.FORBIDDEN,
        ErrorCode.RATE_LIMITED,
        ErrorCode.PAYLOAD_TOO_LARGE,
        ErrorCode.DATABASE_UNAVAILABLE,
        ErrorCode.INTERNAL_ERROR,
    )
    for code in dict.fromkeys((*codes, *always)):
        by_status[CATALOGUE[code].status].append(code)
    return {
        status: {
            "model": ErrorBody,
            "description": "; ".join(
                f"`{c.value}`: {CATALOGUE[c].description}" for c in sorted(found, key=str)
            ),
        }
        for status, found in sorted(by_status.items())
    }
