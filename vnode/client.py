"""A typed async client for the vnode HTTP API, for the bot and any other Python program.

    async with VNodeClient("http://127.0.0.1:3001", api_key) as vnode:
        await vnode.transfer(123456789, 987654321, amount_sats=5000, idempotency_key="tip-42")

Every refusal the service gives raises `VNodeError` with its stable `code` (the catalogue in
`vnode/errors.py`, served at `/docs`); match on `code`, never on `message`.

A transport failure (connection refused or reset, timeout, a broken answer) raises
`VNodeUnavailable`, a subclass of `VNodeError` with `status` 0. On a call that moves money
(`transfer`, `send_payment`, `admin_credit`, `admin_debit`) it is ambiguous: the request may
or may not have been carried out. Retry it with the same Idempotency-Key, never without one:
the service then answers the first outcome instead of moving the money twice. These calls
always send a key (a random one when the caller gives none) and the error carries it as
`idempotency_key`, so a retry is always possible. A 5xx answer (`internal_error`,
`database_unavailable`) on a money call is ambiguous in the same way and carries the key too.

The client resends by itself (`RetryPolicy`, on by default): a money call with its key, and a
read, whose answer was unknown (no answer, a 5xx other than the definite refusals
`node_unavailable` and `not_configured`) is sent again, with the same Idempotency-Key, after an
exponential backoff with full jitter (never less than the server's Retry-After), at most
`attempts` sends and never starting one after `total_s`. Only when every send stayed unknown is
the error raised. Calls that make something new each time (invoices, LndHub credentials,
limits) are never resent.

The API key goes only into the Authorization header of requests to `base_url`; it is not
kept as an attribute, never logged and absent from `repr()`.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from pydantic import ValidationError

from vnode.api.models import (
    AdminMove,
    Answer,
    AssetBalance,
    BalanceAfter,
    Balances,
    BalanceStatement,
    HistoryEntry,
    HistoryPage,
    InclusionProof,
    InvoiceQuote,
    LightningAddress,
    LndHubAccount,
    LnInvoice,
    Payment,
    ProofKey,
    Readiness,
    RgbInvoice,
    Transfer,
    UserAssetBalance,
    UserLimits,
    VirtualNode,
)
from vnode.domain.ids import BTC

# The answers' models are the server's own (vnode/api/models.py imports nothing of the server).
from vnode.tls import tls_context

__all__ = [
    "BTC",
    "NO_RETRY",
    "TRANSPORT_ERROR",
    "UNEXPECTED_RESPONSE",
    "AdminMove",
    "AssetBalance",
    "BalanceAfter",
    "BalanceStatement",
    "Balances",
    "HistoryEntry",
    "HistoryPage",
    "InclusionProof",
    "InvoiceQuote",
    "LightningAddress",
    "LnInvoice",
    "LndHubAccount",
    "Payment",
    "ProofKey",
    "Readiness",
    "RetryPolicy",
    "RgbInvoice",
    "Transfer",
    "UserAssetBalance",
    "UserId",
    "UserLimits",
    "VNodeClient",
    "VNodeError",
    "VNodeUnavailable",
    "VirtualNode",
]

UserId = int | str
"""A Telegram user id (int), a decimal string, or a `vn_` node id."""

UNEXPECTED_RESPONSE = "unexpected_response"
TRANSPORT_ERROR = "transport_error"


class VNodeError(Exception):
    """An error answer of the service (or, for the subclass, no answer at all)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        request_id: str | None,
        idempotency_key: str | None = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.idempotency_key = idempotency_key
        # The error object's other fields: limit_exceeded's limit and headroom_msat,
        # rate_limited's retry_after_s (docs/LIMITS.md).
        self.fields = fields or {}
        super().__init__(
            f"{status} {code}: {message}" + (f" (request {request_id})" if request_id else "")
        )


class VNodeUnavailable(VNodeError):
    """No answer from the service: connection failed, timed out or broke mid-answer.

    On a money call the outcome is unknown: retry with `idempotency_key`, never without.
    """

    def __init__(self, message: str, idempotency_key: str | None = None) -> None:
        super().__init__(0, TRANSPORT_ERROR, message, None, idempotency_key)


_M = TypeVar("_M", bound=Answer)

# 5xx answers that say for sure nothing happened: resending would only wait longer.
_DEFINITE_5XX = frozenset({"node_unavailable", "not_configured"})


@dataclass(frozen=True)
class RetryPolicy:
    """How a call whose answer is unknown is sent again (the module docstring).

    The n-th resend waits a uniform random time in [0, min(cap_s, base_s * 2**(n-1))] ("full
    jitter": many clients cut off by one failover do not come back in step), and at least the
    answer's Retry-After when it is not longer than cap_s."""

    attempts: int = 6  # sends in all, the first included
    base_s: float = 0.25
    cap_s: float = 5.0
    total_s: float = 30.0  # no send starts later than this after the first

    def delay(self, resend: int, retry_after_s: float | None = None) -> float:
        jitter = random.uniform(0, min(self.cap_s, self.base_s * 2 ** (resend - 1)))
        if retry_after_s is not None and retry_after_s <= self.cap_s:
            return max(jitter, retry_after_s)
        return jitter


NO_RETRY = RetryPolicy(attempts=1)


def _retry_after(error: VNodeError) -> float | None:
    value = error.fields.get("retry_after_s")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def unknown_outcome(error: VNodeError) -> bool:
    """True when the call may or may not have had its effect: no answer, an answer that is
    not vnode's, or a 5xx other than a definite refusal. Such a call is resent with its key."""
    if isinstance(error, VNodeUnavailable) or error.code == UNEXPECTED_RESPONSE:
        return True
    return error.status >= 500 and error.code not in _DEFINITE_5XX


class VNodeClient:
    """Async client of one vnode service. Use as `async with`, or call `close()`."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 15,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        if not api_key:
            raise ValueError("api_key is empty")
        self._base_url = base_url.rstrip("/")
        self._retry = retry
        self.resends = 0  # calls sent again after an unknown outcome, for the curious
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            timeout=timeout_s,
            transport=transport,
            headers={"Authorization": f"Bearer {api_key}"},
            follow_redirects=False,
            verify=tls_context(),
        )

    def __repr__(self) -> str:
        return f"VNodeClient(base_url={self._base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    # --- plumbing ----------------------------------------------------------------------

    async def _call(
        self,
        answer: type[_M],
        path: str,
        *,
        method: str = "POST",
        idempotency_key: str | None = None,
        accept: tuple[int, ...] = (200, 202),
        nulls: tuple[str, ...] = (),
        resend: bool = False,
        **fields: Any,
    ) -> _M:
        """Every request: `fields` (those not None, and those named in `nulls` even when None)
        as the JSON body of a POST, the answer parsed with its model; a refusal or an answer
        of another shape raises VNodeError. With `resend`, an unknown outcome is sent again
        under the retry policy (a POST only with an Idempotency-Key or as a read)."""
        started = time.monotonic()
        sends = 1
        while True:
            try:
                return await self._send(
                    answer, path, method, idempotency_key, accept, nulls, fields
                )
            except VNodeError as exc:
                if not resend or not unknown_outcome(exc) or sends >= self._retry.attempts:
                    raise
                wait_s = self._retry.delay(sends, _retry_after(exc))
                if time.monotonic() - started + wait_s > self._retry.total_s:
                    raise
            await asyncio.sleep(wait_s)
            sends += 1
            self.resends += 1

    async def _send(
        self,
        answer: type[_M],
        path: str,
        method: str,
        idempotency_key: str | None,
        accept: tuple[int, ...],
        nulls: tuple[str, ...],
        fields: dict[str, Any],
    ) -> _M:
        body = (
            {k: v for k, v in fields.items() if v is not None or k in nulls}
            if method == "POST"
            else None
        )
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
        try:
            response = await self._http.request(method, path, json=body, headers=headers)
        except httpx.TransportError as exc:
            raise VNodeUnavailable(f"{type(exc).__name__}: {exc}", idempotency_key) from exc
        try:
            decoded = response.json()
        except ValueError:
            decoded = None
        status = response.status_code
        if status in accept and isinstance(decoded, dict) and "error" not in decoded:
            try:
                return answer.model_validate(decoded)
            except ValidationError as exc:
                raise VNodeError(
                    status,
                    UNEXPECTED_RESPONSE,
                    f"answer does not fit {answer.__name__}: {exc.error_count()} errors",
                    None,
                    idempotency_key,
                ) from None
        request_id = response.headers.get("x-request-id")
        if isinstance(decoded, dict) and isinstance(decoded.get("error"), dict):
            error = decoded["error"]
            code, message = error.get("code"), error.get("message")
            if isinstance(code, str):
                rid = decoded.get("request_id")
                extra = {k: v for k, v in error.items() if k not in ("code", "message")}
                retry_after = response.headers.get("retry-after", "")
                if retry_after.isdigit():
                    extra.setdefault("retry_after_s", int(retry_after))
                raise VNodeError(
                    status,
                    code,
                    message if isinstance(message, str) else "",
                    rid if isinstance(rid, str) else request_id,
                    idempotency_key,
                    extra,
                )
        raise VNodeError(
            status,
            UNEXPECTED_RESPONSE,
            f"unexpected answer ({response.headers.get('content-type', '?')}, "
            f"{len(response.content)} bytes)",
            request_id,
            idempotency_key,
        )

    @staticmethod
    def _key(idempotency_key: str | None) -> str:
        return idempotency_key if idempotency_key is not None else f"vnc-{uuid.uuid4().hex}"

    # --- the API -----------------------------------------------------------------------

    async def node(self, user_id: UserId) -> VirtualNode:
        """Create or fetch the user's virtual node (scope: receive)."""
        return await self._call(VirtualNode, "/virtual_node", resend=True, user_id=user_id)

    async def transfer(
        self,
        from_user_id: UserId,
        to_user_id: UserId,
        *,
        amount_msat: int | None = None,
        amount_sats: int | None = None,
        asset_id: str = BTC,
        asset_amount: int | None = None,
        memo: str | None = None,
        idempotency_key: str | None = None,
    ) -> Transfer:
        """Flow 1 (scope: spend). Exactly one amount. Money call: see the module docstring."""
        return await self._call(
            Transfer,
            "/virtual_transfer",
            resend=True,
            idempotency_key=self._key(idempotency_key),
            from_user_id=from_user_id,
            to_user_id=to_user_id,
            asset_id=asset_id,
            amount_msat=amount_msat,
            amount_sats=amount_sats,
            asset_amount=asset_amount,
            memo=memo,
        )

    async def asset_balance(self, user_id: UserId, asset_id: str = BTC) -> UserAssetBalance:
        return await self._call(
            UserAssetBalance,
            "/virtual_assetbalance",
            resend=True,
            user_id=user_id,
            asset_id=asset_id,
        )

    async def balances(self, user_id: UserId) -> Balances:
        return await self._call(Balances, "/virtual_balances", resend=True, user_id=user_id)

    async def history(
        self, user_id: UserId, limit: int = 20, cursor: str | None = None
    ) -> HistoryPage:
        """Newest first; pass `next_cursor` back as `cursor` for the next page."""
        return await self._call(
            HistoryPage,
            "/virtual_history",
            resend=True,
            user_id=user_id,
            limit=limit,
            cursor=cursor,
        )

    async def send_payment(
        self,
        user_id: UserId,
        invoice: str,
        *,
        amt_msat: int | None = None,
        fee_limit_msat: int | None = None,
        idempotency_key: str | None = None,
    ) -> Payment:
        """Flow 2 (scope: spend). Returns status succeeded, failed (refunded) or pending.
        Money call: see the module docstring."""
        return await self._call(
            Payment,
            "/virtual_sendpayment",
            resend=True,
            idempotency_key=self._key(idempotency_key),
            user_id=user_id,
            invoice=invoice,
            amt_msat=amt_msat,
            fee_limit_msat=fee_limit_msat,
        )

    async def decode_invoice(self, invoice: str, *, amt_msat: int | None = None) -> InvoiceQuote:
        """Check an invoice and quote amount and fee reserve (scope: read); moves nothing."""
        return await self._call(
            InvoiceQuote,
            "/virtual_decodeinvoice",
            resend=True,
            invoice=invoice,
            amt_msat=amt_msat,
        )

    async def payment(self, user_id: UserId, payment_hash: str) -> Payment:
        return await self._call(
            Payment,
            "/virtual_payment",
            resend=True,
            user_id=user_id,
            payment_hash=payment_hash,
        )

    async def ln_invoice(
        self,
        user_id: UserId,
        *,
        amt_msat: int | None = None,
        asset_id: str = BTC,
        asset_amount: int | None = None,
        description: str | None = None,
        expiry_sec: int = 3600,
    ) -> LnInvoice:
        return await self._call(
            LnInvoice,
            "/virtual_lninvoice",
            user_id=user_id,
            amt_msat=amt_msat,
            asset_id=asset_id,
            asset_amount=asset_amount,
            description=description,
            expiry_sec=expiry_sec,
        )

    async def rgb_invoice(
        self, user_id: UserId, asset_id: str, duration_seconds: int = 3600
    ) -> RgbInvoice:
        return await self._call(
            RgbInvoice,
            "/virtual_rgbinvoice",
            user_id=user_id,
            asset_id=asset_id,
            duration_seconds=duration_seconds,
        )

    # Lightning Addresses (issue 12, part 2; docs/LNURL.md)
    async def claim_address(self, user_id: UserId, name: str) -> LightningAddress:
        """Claim `name` as the user's Lightning Address (scope receive)."""
        return await self._call(LightningAddress, "/virtual_address", user_id=user_id, name=name)

    async def address(self, user_id: UserId) -> LightningAddress:
        """The user's Lightning Address (scope read); no_address when they have none."""
        return await self._call(
            LightningAddress, "/virtual_address_info", resend=True, user_id=user_id
        )

    async def admin_credit(
        self,
        user_id: UserId,
        *,
        amount_msat: int | None = None,
        asset_id: str = BTC,
        asset_amount: int | None = None,
        reason: str,
        idempotency_key: str | None = None,
    ) -> AdminMove:
        """Operator funding (scope: admin). Money call: see the module docstring."""
        return await self._call(
            AdminMove,
            "/admin/credit",
            resend=True,
            idempotency_key=self._key(idempotency_key),
            user_id=user_id,
            amount_msat=amount_msat,
            asset_id=asset_id,
            asset_amount=asset_amount,
            reason=reason,
        )

    async def admin_debit(
        self,
        user_id: UserId,
        *,
        amount_msat: int | None = None,
        asset_id: str = BTC,
        asset_amount: int | None = None,
        reason: str,
        idempotency_key: str | None = None,
    ) -> AdminMove:
        """Operator correction (scope: admin). Money call: see the module docstring."""
        return await self._call(
            AdminMove,
            "/admin/debit",
            resend=True,
            idempotency_key=self._key(idempotency_key),
            user_id=user_id,
            amount_msat=amount_msat,
            asset_id=asset_id,
            asset_amount=asset_amount,
            reason=reason,
        )

    async def lndhub_account(self, user_id: UserId, scope: str = "spend") -> LndHubAccount:
        """Create or rotate the user's LndHub credentials of `scope` ("spend" or "invoice");
        rotating revokes every token issued before (scope: spend)."""
        return await self._call(
            LndHubAccount, "/virtual_lndhub_account", user_id=user_id, scope=scope
        )

    async def proof_key(self) -> ProofKey:
        """The operator's proof key, x-only hex (no key needed; docs/PROOFS.md)."""
        return await self._call(ProofKey, "/proofs/key", method="GET", resend=True)

    async def proof(
        self, user_id: UserId, asset_id: str = BTC, epoch: int | None = None
    ) -> InclusionProof:
        """The user's inclusion proof in the asset's newest epoch, or `epoch` (scope read)."""
        return await self._call(
            InclusionProof,
            "/virtual_proof",
            resend=True,
            user_id=user_id,
            asset_id=asset_id,
            epoch=epoch,
        )

    async def balance_statement(self, user_id: UserId) -> BalanceStatement:
        """The user's balances signed by the user's node key (scope read)."""
        return await self._call(
            BalanceStatement, "/virtual_statement", resend=True, user_id=user_id
        )

    async def limits(self, user_id: UserId) -> UserLimits:
        """A user's limits: effective, overrides, defaults, usage, headroom (scope: admin)."""
        return await self._call(UserLimits, f"/admin/limits/{user_id}", method="GET", resend=True)

    async def set_limits(self, user_id: UserId, limits: dict[str, int | None]) -> UserLimits:
        """Set a user's limit overrides, msat (scope: admin): None puts the server default
        back; a limit not named stays (docs/LIMITS.md)."""
        body: dict[str, Any] = {"user_id": user_id, **limits}
        return await self._call(UserLimits, "/admin/limits", nulls=tuple(limits), **body)

    async def ready(self) -> Readiness:
        """`/readyz` (with this client's key: the details): a 503 "not ready" answer is
        returned, not raised."""
        return await self._call(Readiness, "/readyz", method="GET", accept=(200, 503))
