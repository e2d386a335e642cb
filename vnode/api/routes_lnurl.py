"""Lightning Addresses (issue 12, part 2; docs/LNURL.md): the API to claim and read a user's
address, and the public LNURL-pay endpoints a payer's wallet calls (no API key).

The public endpoints answer in the LUDs' words only: every refusal, whatever raised it, is
`{"status": "ERROR", "reason"}` (HTTP 200 for the payer's mistakes, which wallets read only
from a 2xx answer; 404 when addresses are off; 503 when the node cannot make an invoice now).
Their query values are read as plain strings, so no validation error of vnode's own shape can
reach a wallet."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.responses import Response

from vnode.api.deps import ReadKey, ReceiveKey, Services, ServicesDep
from vnode.api.errors import documented_errors
from vnode.api.models import LightningAddress, documented
from vnode.api.responses import answer_response, json_response
from vnode.api.schemas import AddressBody, ErrorBody, UserBody
from vnode.errors import CATALOGUE, ErrorCode
from vnode.lnurl import service
from vnode.lnurl.service import Addresses, LnurlPay, LnurlRefusal
from vnode.lnurl.wire import LudError, PayAction, PayRequest, Verify
from vnode.payments.receive import InvoiceIssuer

router = APIRouter(tags=["lightning addresses"])

_PUBLIC: dict[str, Any] = {"security": []}
# What any route can answer in vnode's own shape, before or around the handler: a body over
# the one limit (api/body_limit.py), the 500 of a bug, and (in name only: every parameter is a
# plain string) the 422 FastAPI would otherwise document in a shape vnode never sends.
_ALWAYS: dict[int | str, dict[str, Any]] = {
    CATALOGUE[code].status: {
        "model": ErrorBody,
        "description": f"`{code.value}`: {CATALOGUE[code].description}",
    }
    for code in (ErrorCode.INVALID_REQUEST, ErrorCode.PAYLOAD_TOO_LARGE, ErrorCode.INTERNAL_ERROR)
}
_LUD_ERROR = {
    "model": LudError,
    "description": '`{"status": "ERROR", "reason"}`: 200 for a refusal of the request '
    "(unknown address, amount out of range, comment too long), 404 when Lightning Addresses "
    "are off (VNODE_PUBLIC_URL unset), 503 when the node cannot make an invoice now.",
}


def _refused(refusal: LnurlRefusal) -> Response:
    body = orjson.dumps(LudError(reason=refusal.reason).wire())
    headers = None
    if refusal.retry_after_s is not None:
        headers = {"Retry-After": str(refusal.retry_after_s)}
    return Response(body, refusal.status, headers, media_type="application/json")


def _addresses(services: Services) -> Addresses:
    return Addresses(services.pool, services.settings)


def _pay(services: Services) -> LnurlPay:
    issuer = InvoiceIssuer(
        services.pool, services.signer, services.backend, services.monitor, services.settings
    )
    return LnurlPay(services.pool, issuer, services.backend, services.settings, services.rate)


@router.post(
    "/virtual_address",
    summary="Claim a Lightning Address for a user (scope: receive)",
    description="`name` (1 to 64 of a-z, 0-9, `.`, `_`, `-`; case-insensitive, stored "
    "lower-case) becomes `name@<host of VNODE_PUBLIC_URL>` for a user whose node exists "
    "(`POST /virtual_node`). A user has one address: claiming "
    "another gives the old name up, but it stays theirs (it still receives for them, and only "
    "they may take it back) for VNODE_ADDRESS_HOLD_S before anyone else may claim it. "
    "Claiming the name one has changes nothing. Answers the address, its LNURL and URL.",
    responses={
        **documented(LightningAddress),
        **documented_errors(
            ErrorCode.INVALID_REQUEST,
            ErrorCode.INVALID_USER_ID,
            ErrorCode.INVALID_ADDRESS_NAME,
            ErrorCode.ADDRESS_RESERVED,
            ErrorCode.ADDRESS_TAKEN,
            ErrorCode.UNKNOWN_USER,
            ErrorCode.NOT_CONFIGURED,
        ),
    },
)
async def virtual_address(body: AddressBody, _key: ReceiveKey, services: ServicesDep) -> Response:
    answer = await _addresses(services).claim(body.user_id, body.name)
    if not answer.ok or answer.result is None:
        return answer_response(answer)
    return json_response(service.address_document(services.settings, answer.json()))


@router.post(
    "/virtual_address_info",
    summary="A user's Lightning Address (scope: read)",
    responses={
        **documented(LightningAddress),
        **documented_errors(
            ErrorCode.INVALID_REQUEST,
            ErrorCode.INVALID_USER_ID,
            ErrorCode.NO_ADDRESS,
            ErrorCode.NOT_CONFIGURED,
        ),
    },
)
async def virtual_address_info(body: UserBody, _key: ReadKey, services: ServicesDep) -> Response:
    return json_response(await _addresses(services).show(body.user_id))


@router.get(
    "/.well-known/lnurlp/{name}",
    summary="LUD-16/LUD-06: the payRequest of a Lightning Address (public)",
    description="Exactly the LUDs' fields: `tag`, `callback`, `minSendable`, `maxSendable` "
    "(msat), `metadata` (a JSON string with `text/plain` and `text/identifier`, the same at "
    "every request) and, when comments are taken, `commentAllowed` (LUD-12).",
    openapi_extra=_PUBLIC,
    responses={200: {"model": PayRequest | LudError}, 404: _LUD_ERROR, **_ALWAYS},
)
async def well_known_lnurlp(name: str, services: ServicesDep) -> Response:
    try:
        found = await _pay(services).pay_request(name)
    except LnurlRefusal as refusal:
        return _refused(refusal)
    return json_response(found.wire())


@router.get(
    "/lnurlp/{name}/callback",
    summary="LUD-06 callback: an invoice of the address's user for `amount` msat (public)",
    description="`amount` (msat, within the payRequest's range) and, LUD-12, `comment` (at most "
    "`commentAllowed` characters; kept as the memo of the user's history entry). Answers "
    "`pr`, an invoice for exactly `amount` msat whose description hash is the SHA-256 of "
    "the payRequest's metadata, `routes` (empty) and LUD-21's `verify` URL.",
    openapi_extra=_PUBLIC,
    responses={
        200: {"model": PayAction | LudError},
        404: _LUD_ERROR,
        429: {
            **_LUD_ERROR,
            "description": "Too many callbacks for this address "
            "(VNODE_RATE_LIMIT_ADDRESS_PER_S): a LUD ERROR, with Retry-After.",
        },
        503: _LUD_ERROR,
        **_ALWAYS,
    },
)
async def lnurlp_callback(
    name: str, services: ServicesDep, amount: str | None = None, comment: str | None = None
) -> Response:
    try:
        action = await _pay(services).callback(name, amount, comment)
    except LnurlRefusal as refusal:
        return _refused(refusal)
    return json_response(action.wire())


@router.get(
    "/lnurlp/verify/{payment_hash}",
    summary="LUD-21 verify: is an address's invoice settled? (public)",
    description="`settled` once the invoice is credited; `preimage` when it was paid through "
    "the node (null before, and for a payment settled inside the ledger by another vnode "
    'user); `{"status": "ERROR", "reason": "Not found"}` for any other hash.',
    openapi_extra=_PUBLIC,
    responses={200: {"model": Verify | LudError}, 404: _LUD_ERROR, **_ALWAYS},
)
async def lnurlp_verify(payment_hash: str, services: ServicesDep) -> Response:
    try:
        found = await _pay(services).verify(payment_hash)
    except LnurlRefusal as refusal:
        return _refused(refusal)
    return json_response(found.wire())
