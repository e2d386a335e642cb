"""Hot routes: one declaration per busy endpoint, from which both of its request paths are made.

A `HotRoute` says everything about an endpoint on the bot's every-message path: its path, the
key scope it needs, its body model, its answer model, its handler and its documentation. From
that one row
- `include` registers the FastAPI route (the OpenAPI document, and the fallback should the fast
  path ever be bypassed), with the scope's key dependency, the body model, the
  `Idempotency-Key` header if the route takes one, and the answer and error codes documented;
- `vnode/api/fastpath.FastPath` serves the same path without FastAPI's per-request machinery,
  with the same scope, body model and handler.
So the two paths cannot drift: nothing about the endpoint is written twice. The body limit is
BodyLimit's, outside both (vnode/api/body_limit.py). docs/adr/0004 says why the fast path exists.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from inspect import Parameter, Signature
from typing import Annotated, Any, Generic, TypeVar

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel

from vnode.api.deps import IdempotencyHeader, Services, ServicesDep, require
from vnode.api.errors import documented_errors
from vnode.api.models import Answer, documented
from vnode.apikeys import Principal
from vnode.apikeys import Scope as KeyScope
from vnode.errors import ErrorCode

B = TypeVar("B", bound=BaseModel)

# (services, the validated body, the caller, the Idempotency-Key header) -> the answer
Handler = Callable[[Services, B, Principal, str | None], Awaitable[Response]]


@dataclass(frozen=True)
class HotRoute(Generic[B]):
    path: str
    scope: KeyScope
    body: type[B]
    answer: type[Answer]
    handle: Handler[B]
    summary: str
    description: str = ""
    # Every code the endpoint can answer besides 401/403/500 (documented_errors adds those).
    errors: tuple[ErrorCode, ...] = field(default=())
    # Whether the FastAPI route reads the Idempotency-Key header (the fast path always passes
    # it on; a handler that does not move money ignores it).
    idempotent: bool = False


def include(router: APIRouter, routes: Sequence[HotRoute[Any]]) -> None:
    """Register each hot route on `router` as a documented `POST` FastAPI route."""
    for route in routes:
        router.add_api_route(
            route.path,
            _endpoint(route),
            methods=["POST"],
            name=route.path.lstrip("/"),
            summary=route.summary,
            description=route.description or None,
            responses={**documented(route.answer), **documented_errors(*route.errors)},
        )


def _endpoint(route: HotRoute[Any]) -> Callable[..., Awaitable[Response]]:
    """A FastAPI endpoint for the route: its signature tells FastAPI the body model, the key
    dependency of the route's scope and the optional header; the work is the route's handler."""

    async def endpoint(
        body: BaseModel, key: Principal, services: Services, idempotency_key: str | None = None
    ) -> Response:
        return await route.handle(services, body, key, idempotency_key)

    parameters = [
        Parameter("body", Parameter.KEYWORD_ONLY, annotation=route.body),
        Parameter(
            "key",
            Parameter.KEYWORD_ONLY,
            annotation=Annotated[Principal, Depends(require(route.scope))],
        ),
        Parameter("services", Parameter.KEYWORD_ONLY, annotation=ServicesDep),
    ]
    if route.idempotent:
        parameters.append(
            Parameter(
                "idempotency_key",
                Parameter.KEYWORD_ONLY,
                default=None,
                annotation=IdempotencyHeader,
            )
        )
    endpoint.__signature__ = Signature(  # type: ignore[attr-defined]
        parameters, return_annotation=Response
    )
    return endpoint
