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
`idempotency_key`, so a retry is always possible. A 5xx answer (`internal_error`) on a money
call is ambiguous in the same way and carries the key too.

The API key goes only into the Authorization header of requests to `base_url`; it is not
kept as an attribute, never logged and absent from `repr()`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

UserId = int | str
"""A Telegram user id (int), a decimal string, or a `vn_` node id."""

BTC = "BTC"
UNEXPECTED_RESPONSE = "unexpected_response"
TRANSPORT_ERROR = "transport_error"


class VNodeError(Exception):
    """An error answer of the service (or, for the subclass, no answer at all)."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None,
                 idempotency_key: str | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.idempotency_key = idempotency_key
        super().__init__(f"{status} {code}: {message}"
                         + (f" (request {request_id})" if request_id else ""))


class VNodeUnavailable(VNodeError):
    """No answer from the service: connection failed, timed out or broke mid-answer.

    On a money call the outcome is unknown: retry with `idempotency_key`, never without.
    """

    def __init__(self, message: str, idempotency_key: str | None = None) -> None:
        super().__init__(0, TRANSPORT_ERROR, message, None, idempotency_key)


class _Model(BaseModel):
    # Frozen; fields the service adds later are ignored rather than refused.
    model_config = ConfigDict(frozen=True, extra="ignore")


class VirtualNode(_Model):
    user_id: int
    node_id: str
    pubkey: str
    created_at: datetime


class BalanceAfter(_Model):
    """A balance after a move: msat/sats for BTC, `asset_amount` (units) for an RGB asset."""

    balance_msat: int | None = None
    balance_sats: int | None = None
    asset_amount: int | None = None


class Transfer(_Model):
    transfer_id: int
    status: str
    from_user_id: int
    from_node_id: str
    to_user_id: int
    to_node_id: str
    asset_id: str
    amount_msat: int | None = None
    amount_sats: int | None = None
    asset_amount: int | None = None
    fee_msat: int
    memo: str | None = None
    created_at: datetime
    sender_balance: BalanceAfter


class AdminMove(_Model):
    transaction_id: int
    kind: str
    user_id: int
    node_id: str
    asset_id: str
    amount_msat: int | None = None
    amount_sats: int | None = None
    asset_amount: int | None = None
    reason: str
    created_at: datetime
    balance: BalanceAfter


class AssetBalance(_Model):
    """One asset's balance. BTC fills the `_msat`/`_sats` fields; an RGB asset fills
    `balance`/`pending`/`spendable` in its own units."""

    asset_id: str
    balance_msat: int | None = None
    pending_msat: int | None = None
    spendable_msat: int | None = None
    balance_sats: int | None = None
    pending_sats: int | None = None
    spendable_sats: int | None = None
    balance: int | None = None
    pending: int | None = None
    spendable: int | None = None

    @property
    def spendable_base_units(self) -> int:
        """What can be sent now, in the asset's base unit (msat for BTC)."""
        value = self.spendable_msat if self.asset_id == BTC else self.spendable
        return value or 0

    @property
    def settled_base_units(self) -> int:
        """Settled balance (spendable plus pending), in the asset's base unit (msat for BTC)."""
        value = self.balance_msat if self.asset_id == BTC else self.balance
        return value or 0


class UserAssetBalance(AssetBalance):
    user_id: int
    node_id: str


class Balances(_Model):
    user_id: int
    node_id: str
    balances: tuple[AssetBalance, ...]

    def get(self, asset_id: str = BTC) -> AssetBalance | None:
        return next((b for b in self.balances if b.asset_id == asset_id), None)


class HistoryEntry(_Model):
    id: int
    transaction_id: int
    kind: str
    direction: Literal["in", "out"]
    asset_id: str
    amount_msat: int | None = None
    amount_sats: int | None = None
    asset_amount: int | None = None
    counterparty: str
    memo: str | None = None
    status: str
    created_at: datetime


class HistoryPage(_Model):
    user_id: int
    node_id: str
    transactions: tuple[HistoryEntry, ...]
    next_cursor: str | None = None


class Payment(_Model):
    """An outgoing payment. `pending` keeps amount plus fee reserve held; follow it with
    `payment()` or the events. `failed` was refunded."""

    payment_id: int
    payment_hash: str
    status: Literal["pending", "succeeded", "failed"]
    kind: str
    user_id: int
    node_id: str
    amount_msat: int
    amount_sats: int
    asset_id: str
    asset_amount: int | None = None
    fee_reserve_msat: int
    fee_msat: int | None = None
    preimage: str | None = None
    failure_reason: str | None = None
    created_at: datetime
    finished_at: datetime | None = None


class InvoiceQuote(_Model):
    """`/virtual_decodeinvoice`: what paying an invoice would cost. `internal` invoices are
    settled inside vnode without a fee. Amount fields are null for an amountless invoice
    quoted without `amt_msat`."""

    payment_hash: str
    network: str
    invoice_amount_msat: int | None = None
    amount_msat: int | None = None
    description: str | None = None
    expires_at: datetime
    payee_pubkey: str
    internal: bool
    fee_reserve_msat: int | None = None
    fee_reserve_rule: str | None = None
    total_msat: int | None = None
    asset_id: str | None = None
    asset_amount: int | None = None


class LnInvoice(_Model):
    invoice: str
    payment_hash: str
    expires_at: datetime
    user_id: int
    node_id: str
    asset_id: str
    amount_msat: int | None = None
    asset_amount: int | None = None
    description: str | None = None


class RgbInvoice(_Model):
    """`kind` "bolt11" (BTC: an amountless Lightning invoice, with `payment_hash`) or
    "rgb_onchain" (an RGB asset: with `recipient_id` and `batch_transfer_idx`)."""

    kind: Literal["bolt11", "rgb_onchain"]
    invoice: str
    expires_at: datetime
    user_id: int
    node_id: str
    asset_id: str
    payment_hash: str | None = None
    recipient_id: str | None = None
    batch_transfer_idx: int | None = None


class Readiness(_Model):
    """`/readyz`: answered for 200 (ready, degraded) and 503 (not ready) alike, never raised.
    Only `status` is there for everyone; the rest needs a read key."""

    status: str
    checks: dict[str, str] | None = None
    node: dict[str, Any] | None = None
    workers: dict[str, Any] | None = None
    warning: str | None = None
    solvency: dict[str, Any] | None = None

    @property
    def ready(self) -> bool:
        """Serving: a degraded service (a money worker behind) still answers requests."""
        return self.status in ("ready", "degraded")


_M = TypeVar("_M", bound=_Model)


def _drop_none(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


class VNodeClient:
    """Async client of one vnode service. Use as `async with`, or call `close()`."""

    def __init__(self, base_url: str, api_key: str, *, timeout_s: float = 15,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        if not api_key:
            raise ValueError("api_key is empty")
        self._base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self._base_url, timeout=timeout_s, transport=transport,
            headers={"Authorization": f"Bearer {api_key}"}, follow_redirects=False)

    def __repr__(self) -> str:
        return f"VNodeClient(base_url={self._base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    # --- plumbing ----------------------------------------------------------------------

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None,
                       idempotency_key: str | None = None,
                       *, accept: tuple[int, ...] = (200, 202)) -> tuple[int, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
        try:
            response = await self._http.request(method, path, json=body, headers=headers)
        except httpx.TransportError as exc:
            raise VNodeUnavailable(f"{type(exc).__name__}: {exc}", idempotency_key) from exc
        try:
            decoded = response.json()
        except ValueError:
            decoded = None
        if (response.status_code in accept and isinstance(decoded, dict)
                and "error" not in decoded):
            return response.status_code, decoded
        request_id = response.headers.get("x-request-id")
        if isinstance(decoded, dict) and isinstance(decoded.get("error"), dict):
            error = decoded["error"]
            code, message = error.get("code"), error.get("message")
            if isinstance(code, str):
                rid = decoded.get("request_id")
                raise VNodeError(response.status_code, code,
                                 message if isinstance(message, str) else "",
                                 rid if isinstance(rid, str) else request_id, idempotency_key)
        raise VNodeError(response.status_code, UNEXPECTED_RESPONSE,
                         f"unexpected answer ({response.headers.get('content-type', '?')}, "
                         f"{len(response.content)} bytes)", request_id, idempotency_key)

    async def _call(self, model: type[_M], path: str, body: dict[str, Any],
                    idempotency_key: str | None = None) -> _M:
        status, decoded = await self._request("POST", path, body, idempotency_key)
        return self._parse(model, status, decoded, idempotency_key)

    @staticmethod
    def _parse(model: type[_M], status: int, decoded: Any,
               idempotency_key: str | None = None) -> _M:
        try:
            return model.model_validate(decoded)
        except ValidationError as exc:
            raise VNodeError(status, UNEXPECTED_RESPONSE,
                             f"answer does not fit {model.__name__}: {exc.error_count()} errors",
                             None, idempotency_key) from None

    @staticmethod
    def _key(idempotency_key: str | None) -> str:
        return idempotency_key if idempotency_key is not None else f"vnc-{uuid.uuid4().hex}"

    # --- the API -----------------------------------------------------------------------

    async def node(self, user_id: UserId) -> VirtualNode:
        """Create or fetch the user's virtual node (scope: receive)."""
        return await self._call(VirtualNode, "/virtual_node", {"user_id": user_id})

    async def transfer(self, from_user_id: UserId, to_user_id: UserId, *,
                       amount_msat: int | None = None, amount_sats: int | None = None,
                       asset_id: str = BTC, asset_amount: int | None = None,
                       memo: str | None = None, idempotency_key: str | None = None) -> Transfer:
        """Flow 1 (scope: spend). Exactly one amount. Money call: see the module docstring."""
        body = _drop_none({"from_user_id": from_user_id, "to_user_id": to_user_id,
                           "asset_id": asset_id, "amount_msat": amount_msat,
                           "amount_sats": amount_sats, "asset_amount": asset_amount,
                           "memo": memo})
        return await self._call(Transfer, "/virtual_transfer", body, self._key(idempotency_key))

    async def asset_balance(self, user_id: UserId, asset_id: str = BTC) -> UserAssetBalance:
        return await self._call(UserAssetBalance, "/virtual_assetbalance",
                                {"user_id": user_id, "asset_id": asset_id})

    async def balances(self, user_id: UserId) -> Balances:
        return await self._call(Balances, "/virtual_balances", {"user_id": user_id})

    async def history(self, user_id: UserId, limit: int = 20,
                      cursor: str | None = None) -> HistoryPage:
        """Newest first; pass `next_cursor` back as `cursor` for the next page."""
        return await self._call(HistoryPage, "/virtual_history",
                                _drop_none({"user_id": user_id, "limit": limit,
                                            "cursor": cursor}))

    async def send_payment(self, user_id: UserId, invoice: str, *, amt_msat: int | None = None,
                           fee_limit_msat: int | None = None,
                           idempotency_key: str | None = None) -> Payment:
        """Flow 2 (scope: spend). Returns status succeeded, failed (refunded) or pending.
        Money call: see the module docstring."""
        body = _drop_none({"user_id": user_id, "invoice": invoice, "amt_msat": amt_msat,
                           "fee_limit_msat": fee_limit_msat})
        return await self._call(Payment, "/virtual_sendpayment", body,
                                self._key(idempotency_key))

    async def decode_invoice(self, invoice: str, *,
                             amt_msat: int | None = None) -> InvoiceQuote:
        """Check an invoice and quote amount and fee reserve (scope: read); moves nothing."""
        return await self._call(InvoiceQuote, "/virtual_decodeinvoice",
                                _drop_none({"invoice": invoice, "amt_msat": amt_msat}))

    async def payment(self, user_id: UserId, payment_hash: str) -> Payment:
        return await self._call(Payment, "/virtual_payment",
                                {"user_id": user_id, "payment_hash": payment_hash})

    async def ln_invoice(self, user_id: UserId, *, amt_msat: int | None = None,
                         asset_id: str = BTC, asset_amount: int | None = None,
                         description: str | None = None, expiry_sec: int = 3600) -> LnInvoice:
        body = _drop_none({"user_id": user_id, "amt_msat": amt_msat, "asset_id": asset_id,
                           "asset_amount": asset_amount, "description": description,
                           "expiry_sec": expiry_sec})
        return await self._call(LnInvoice, "/virtual_lninvoice", body)

    async def rgb_invoice(self, user_id: UserId, asset_id: str,
                          duration_seconds: int = 3600) -> RgbInvoice:
        return await self._call(RgbInvoice, "/virtual_rgbinvoice",
                                {"user_id": user_id, "asset_id": asset_id,
                                 "duration_seconds": duration_seconds})

    async def admin_credit(self, user_id: UserId, *, amount_msat: int | None = None,
                           asset_id: str = BTC, asset_amount: int | None = None,
                           reason: str, idempotency_key: str | None = None) -> AdminMove:
        """Operator funding (scope: admin). Money call: see the module docstring."""
        return await self._admin("/admin/credit", user_id, amount_msat, asset_id, asset_amount,
                                 reason, idempotency_key)

    async def admin_debit(self, user_id: UserId, *, amount_msat: int | None = None,
                          asset_id: str = BTC, asset_amount: int | None = None,
                          reason: str, idempotency_key: str | None = None) -> AdminMove:
        """Operator correction (scope: admin). Money call: see the module docstring."""
        return await self._admin("/admin/debit", user_id, amount_msat, asset_id, asset_amount,
                                 reason, idempotency_key)

    async def _admin(self, path: str, user_id: UserId, amount_msat: int | None, asset_id: str,
                     asset_amount: int | None, reason: str,
                     idempotency_key: str | None) -> AdminMove:
        body = _drop_none({"user_id": user_id, "amount_msat": amount_msat, "asset_id": asset_id,
                           "asset_amount": asset_amount, "reason": reason})
        return await self._call(AdminMove, path, body, self._key(idempotency_key))

    async def ready(self) -> Readiness:
        """`/readyz` (with this client's key: the details): a 503 "not ready" answer is
        returned, not raised."""
        status, decoded = await self._request("GET", "/readyz", accept=(200, 503))
        return self._parse(Readiness, status, decoded)
