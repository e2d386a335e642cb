"""Turning a ledger answer into an HTTP response without re-encoding a success body."""

from __future__ import annotations

import orjson
from fastapi.responses import Response

from vnode.api.errors import error_response
from vnode.ledger.calls import LedgerAnswer


def answer_response(answer: LedgerAnswer) -> Response:
    """A success's document as the database wrote it; a refusal from the catalogue."""
    if answer.result is not None:
        return Response(answer.result, answer.status, media_type="application/json")
    return error_response(answer.status, answer.code, answer.message, fields=answer.error_fields)


def json_response(content: object) -> Response:
    return Response(orjson.dumps(content), media_type="application/json")
