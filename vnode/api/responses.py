"""Turning a ledger Outcome into an HTTP response without re-encoding a success body."""

from __future__ import annotations

import orjson
from fastapi.responses import Response

from vnode.api.errors import outcome_body_with_request_id
from vnode.ledger.calls import Outcome


def outcome_response(outcome: Outcome) -> Response:
    if outcome.ok:
        return Response(outcome.body, outcome.status, media_type="application/json")
    return Response(outcome_body_with_request_id(outcome.body), outcome.status,
                    media_type="application/json")


def json_response(content: object) -> Response:
    return Response(orjson.dumps(content), media_type="application/json")
