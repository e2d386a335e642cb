"""The LndHub API under /lndhub (BlueWallet, Zeus, Alby), and the credentials that open it.

Every /lndhub answer, refusals included, is in LndHub's shape (vnode/lndhub/wire.py): errors
are `{"error": true, "code": N, "message": ...}`, never vnode's `{"error": {...}}`. Bodies are
read here (JSON or form-encoded), not by FastAPI, so no body is ever a 422.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict
from starlette.types import ASGIApp, Receive, Scope, Send

from vnode.api.deps import ServicesDep, SpendKey
from vnode.api.errors import documented_errors
from vnode.api.models import LndHubAccount, documented
from vnode.api.responses import json_response
from vnode.api.schemas import UserId
from vnode.errors import ErrorCode
from vnode.limits.rate import RateLimited
from vnode.lndhub import models, wire
from vnode.lndhub.service import SCOPES, LndHub, Reply, dumps
from vnode.lndhub.store import Account
from vnode.lndhub.wire import LndHubError

PREFIX = "/lndhub"
router = APIRouter(tags=["lndhub"])

_AUTH_HELP = (
    " Send `Authorization: Bearer <access_token>` (or the bare value) from POST /lndhub/auth."
)


class LndHubPaths:
    """Clients join a base URL and a path their own way: `.../lndhub/` + `/auth` gives
    `/lndhub//auth`, and some add a trailing slash. Under /lndhub, repeated slashes collapse and
    a trailing one is dropped, so each arrives at its route (a redirect would lose a POST)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith(PREFIX + "/"):
            tidy = "/".join(part for part in path.split("/") if part)
            scope = {**scope, "path": "/" + tidy, "raw_path": ("/" + tidy).encode()}
        await self.app(scope, receive, send)


def _lndhub(request: Request, services: ServicesDep) -> LndHub:
    """The app's one LndHub service, made on first use from its services (no await between
    the look-up and the store, so two requests cannot make two)."""
    hub = getattr(request.app.state, "lndhub", None)
    if not isinstance(hub, LndHub):
        hub = LndHub(
            services.pool,
            services.signer,
            services.backend,
            services.monitor,
            services.settings,
            services.sender,
        )
        request.app.state.lndhub = hub
    return hub


def _send(reply: Reply) -> Response:
    return Response(dumps(reply), reply.status, media_type="application/json")


async def _answer(work: Callable[[], Awaitable[Reply]]) -> Response:
    try:
        return _send(await work())
    except LndHubError as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return Response(dumps(Reply(exc.body())), exc.status, headers, "application/json")
    except RateLimited as exc:
        # Never code 1, which makes wallets log in again (and again): 429, Retry-After, and
        # the general error code, "try again later" (docs/LIMITS.md).
        error = LndHubError(429, wire.GENERAL_ERROR, exc.message)
        return Response(dumps(Reply(error.body())), 429, exc.headers, "application/json")


def _token(request: Request) -> str | None:
    # Read here, not declared as a Header parameter: a declared one would document a 422 that
    # never comes.
    return request.headers.get("authorization")


async def _body(request: Request) -> dict[str, Any]:
    return wire.parse_body(await request.body(), request.headers.get("content-type"))


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "bad arguments (8), not enough balance (2), not a valid invoice (4), already paid "
        "(7), payment failed (10)",
        401: "bad auth (1): no, an unknown, expired or revoked token or credentials",
        403: "an invoice-scope account may not pay (8); no new accounts (11)",
        409: "another payment of this invoice is in flight (9)",
        429: "too many requests for this account (6), with Retry-After; nothing was done",
        413: "the body is over the limit every route shares",
        503: "the node is unavailable (6); nothing was paid or made",
    }
    return {
        status: {"model": models.LndHubErrorBody, "description": described[status]}
        for status in (*statuses, 413)
    }


def _ok(model: type[BaseModel] | Any) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model}}


_PUBLIC: dict[str, Any] = {"security": []}


# ---------------------------------------------------------------- credentials (vnode API)


class LndHubAccountBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    user_id: UserId
    scope: Literal["spend", "invoice"] = "spend"


@router.post(
    "/virtual_lndhub_account",
    summary="LndHub credentials for a user's virtual node (scope: spend)",
    description="Creates the user's LndHub account of this `scope`, or rotates it: a new login "
    "and password, and every token issued before is revoked. `spend` credentials can pay from "
    "the user's balance; `invoice` ones can only make invoices and read (point of sale). The "
    "password is shown only here (it is stored as a salted scrypt hash). `url` is the "
    "`lndhub://login:password@<VNODE_PUBLIC_URL>/lndhub` string BlueWallet, Zeus and Alby import.",
    tags=["lndhub"],
    responses={
        **documented(LndHubAccount),
        **documented_errors(ErrorCode.INVALID_REQUEST, ErrorCode.INVALID_USER_ID),
    },
)
async def virtual_lndhub_account(
    body: LndHubAccountBody, _key: SpendKey, services: ServicesDep, request: Request
) -> Response:
    assert body.scope in SCOPES
    issued = await _lndhub(request, services).issue(body.user_id, body.scope)
    base = (services.settings.public_url or str(request.base_url)).rstrip("/")
    return json_response(
        {
            "user_id": body.user_id,
            "scope": body.scope,
            "login": issued.login,
            "password": issued.password,
            "url": f"lndhub://{issued.login}:{issued.password}@{base}{PREFIX}",
        }
    )


# ---------------------------------------------------------------- LndHub


@router.post(
    f"{PREFIX}/create",
    summary="LndHub: new accounts are not made here",
    description="Always refused with code 11: accounts come from the Telegram bot (/wallet).",
    openapi_extra=_PUBLIC,
    responses=_errors(403),
)
async def lndhub_create() -> Response:
    async def refuse() -> Reply:
        raise LndHubError(
            403,
            wire.NO_NEW_ACCOUNTS,
            "no new accounts here: open the Telegram bot and use /wallet for your credentials",
        )

    return await _answer(refuse)


@router.post(
    f"{PREFIX}/auth",
    summary="LndHub: log in (login, password) or refresh (type=refresh_token)",
    description="JSON or form body. `{login, password}` (`?type=auth`, or no query), or "
    "`{refresh_token}` (`?type=refresh_token`; each refresh token works once). Answers a new "
    "access and refresh token.",
    openapi_extra=_PUBLIC,
    responses={**_ok(models.Tokens), **_errors(400, 401)},
)
async def lndhub_auth(request: Request, services: ServicesDep) -> Response:
    # `type` is read here, not declared: a declared query parameter would document a 422
    # that never comes (every /lndhub refusal is in LndHub's shape).
    hub = _lndhub(request, services)
    return await _answer(lambda: _auth(hub, request, request.query_params.get("type")))


async def _auth(hub: LndHub, request: Request, kind: str | None) -> Reply:
    return await hub.auth(await _body(request), kind)


@router.post(
    f"{PREFIX}/addinvoice",
    summary="LndHub: a BOLT 11 invoice for the account's user",
    description="`{amt, memo}` (amt in sats, a number or a string; 0 or none: amountless). "
    "Expires in 24 h; credited when paid, as /virtual_lninvoice." + _AUTH_HELP,
    responses={**_ok(models.AddedInvoice), **_errors(400, 401, 429, 503)},
)
async def lndhub_addinvoice(request: Request, services: ServicesDep) -> Response:
    hub = _lndhub(request, services)

    async def work() -> Reply:
        account = await hub.authenticate(_token(request))
        return await hub.addinvoice(account, await _body(request))

    return await _answer(work)


@router.post(
    f"{PREFIX}/payinvoice",
    summary="LndHub: pay an invoice from the account's user (spend accounts only)",
    description="`{invoice, amount}`: `amount` (sats) only for an invoice without one. Paid "
    "once per account and invoice whatever is repeated: a repeat while in flight or after "
    "success answers that payment. Answers within 25 s: 200 paid, 202 code 9 still in flight "
    "(not failed; do not pay again), 400 code 10 failed and refunded." + _AUTH_HELP,
    responses={
        **_ok(models.Paid),
        202: {"model": models.InTransit, "description": "in flight (code 9)"},
        **_errors(400, 401, 403, 409, 429, 503),
    },
)
async def lndhub_payinvoice(request: Request, services: ServicesDep) -> Response:
    hub = _lndhub(request, services)

    async def work() -> Reply:
        account = await hub.authenticate(_token(request), spend=True)
        return await hub.payinvoice(account, await _body(request))

    return await _answer(work)


def _read(
    path: str,
    summary: str,
    model: Any,
    serve: Callable[[LndHub, Account, Request], Awaitable[Reply]],
    *statuses: int,
    query: tuple[str, ...] = (),
) -> None:
    """A GET route for an authenticated read. The handler reads its parameters from the
    request itself (LndHub clients send numbers as text, or nothing), so they are declared to
    the OpenAPI document here: every `{name}` of the path, and the `query` names, as strings."""
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", path)
    ] + [
        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
        for name in query
    ]

    async def route(request: Request, services: ServicesDep) -> Response:
        hub = _lndhub(request, services)

        async def work() -> Reply:
            return await serve(hub, await hub.authenticate(_token(request)), request)

        return await _answer(work)

    router.add_api_route(
        f"{PREFIX}{path}",
        route,
        methods=["GET"],
        summary=f"LndHub: {summary}",
        description=summary + "." + _AUTH_HELP,
        responses={**_ok(model), **_errors(401, 429, *statuses)},
        name=f"lndhub_{path.strip('/').split('/')[0]}",
        openapi_extra={"parameters": parameters} if parameters else None,
    )


async def _balance(hub: LndHub, account: Account, _request: Request) -> Reply:
    return await hub.balance(account)


async def _gettxs(hub: LndHub, account: Account, request: Request) -> Reply:
    query = request.query_params
    return await hub.gettxs(account, query.get("limit"), query.get("offset"))


async def _getuserinvoices(hub: LndHub, account: Account, request: Request) -> Reply:
    query = request.query_params
    return await hub.getuserinvoices(account, query.get("limit"), query.get("offset"))


async def _getinfo(hub: LndHub, _account: Account, _request: Request) -> Reply:
    return await hub.getinfo()


async def _empty(_hub: LndHub, _account: Account, _request: Request) -> Reply:
    # No on-chain deposits for LndHub users (a fake address would lose money) and nothing
    # pending on chain: empty lists, as lndhub.go answers.
    return Reply([])


async def _checkpayment(hub: LndHub, account: Account, request: Request) -> Reply:
    return await hub.checkpayment(account, str(request.path_params["payment_hash"]))


async def _decodeinvoice(hub: LndHub, _account: Account, request: Request) -> Reply:
    return await hub.decodeinvoice(request.query_params.get("invoice"))


_read("/balance", "what the user can spend now, in sats", models.Balance, _balance)
_read(
    "/gettxs",
    "the user's payments, newest first (`limit` at most 1000, `offset`)",
    list[models.Tx],
    _gettxs,
    400,
    query=("limit", "offset"),
)
_read(
    "/getuserinvoices",
    "the user's invoices, newest first (`limit` at most 1000, `offset`)",
    list[models.UserInvoice],
    _getuserinvoices,
    400,
    query=("limit", "offset"),
)
_read("/getinfo", "the master node's identity", models.Info, _getinfo, 503)
_read("/getpending", "on-chain pending: always empty", list[object], _empty)
_read("/getbtc", "on-chain deposit addresses: none", list[object], _empty)
_read(
    "/checkpayment/{payment_hash}",
    "whether the user's invoice (or payment) of this hash is paid",
    models.PaymentCheck,
    _checkpayment,
    400,
)
_read(
    "/decodeinvoice",
    "an invoice decoded (`?invoice=`)",
    models.DecodedInvoice,
    _decodeinvoice,
    400,
    query=("invoice",),
)
_read(
    "/checkrouteinvoice",
    "an invoice decoded (`?invoice=`), as /decodeinvoice",
    models.DecodedInvoice,
    _decodeinvoice,
    400,
    query=("invoice",),
)
