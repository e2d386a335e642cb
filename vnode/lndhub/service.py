"""The LndHub API's service: accounts and tokens, and each endpoint's answer in LndHub's shape.

Money goes through vnode's own paths only: /payinvoice is `PaymentSender.pay` (the bot's
/virtual_sendpayment), /addinvoice is `InvoiceIssuer.ln_invoice` (/virtual_lninvoice).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from vnode.domain.ids import BTC
from vnode.errors import ApiError
from vnode.keys import Signer
from vnode.ledger.calls import Idempotency
from vnode.ledger.nodes import ensure_node
from vnode.lightning import bolt11
from vnode.lightning.base import LightningBackend
from vnode.lightning.monitor import NodeMonitor
from vnode.limits.rate import RateLimiter
from vnode.lndhub import credentials, store, wire
from vnode.lndhub.store import Account
from vnode.lndhub.wire import LndHubError
from vnode.payments import receive
from vnode.payments.send import PayCommand, PaymentSender, find_payment
from vnode.payments.store import PaymentAnswer
from vnode.settings import Settings

log = logging.getLogger(__name__)

SPEND = "spend"
INVOICE = "invoice"  # point of sale: make invoices and read, never pay
SCOPES = (SPEND, INVOICE)
INVOICE_EXPIRY_S = 86_400  # the original hub's 24 h
MAX_PAGE = 1000
_MAX_INVOICE = 7089  # as /virtual_sendpayment's Invoice field
_MAX_MEMO = 639  # as /virtual_lninvoice's description


@dataclass(frozen=True)
class Credentials:
    login: str
    password: str
    account: Account


@dataclass(frozen=True)
class Reply:
    """An LndHub answer: a JSON document and its HTTP status."""

    body: object
    status: int = 200


class LndHub:
    def __init__(
        self,
        pool: asyncpg.Pool,
        signer: Signer,
        backend: LightningBackend,
        monitor: NodeMonitor,
        settings: Settings,
        sender: PaymentSender,
    ) -> None:
        self.pool = pool
        self.signer = signer
        self.backend = backend
        self.monitor = monitor
        self.settings = settings
        self.sender = sender
        # Rate limits per LndHub account (docs/LIMITS.md); with none set, no query.
        self.rate = RateLimiter.from_settings(pool, settings)
        # /payinvoice answers within lndhub_pay_wait_s; a payment still running then goes on
        # here (never cancelled halfway), so its task is kept until it ends.
        self._running: set[asyncio.Task[PaymentAnswer]] = set()

    # ------------------------------------------------------------ accounts and tokens

    async def issue(self, user_id: int, scope: str) -> Credentials:
        """Create or rotate the user's account of this scope (rotation revokes every token)."""
        await ensure_node(self.pool, self.signer, user_id)
        login, password = credentials.new_login(), credentials.new_password()
        hashed = await asyncio.to_thread(
            credentials.hash_password, password, self.settings.lndhub_scrypt_log2_n
        )
        account = await store.upsert_account(self.pool, user_id, scope, login, hashed)
        return Credentials(login, password, account)

    async def auth(self, body: dict[str, Any], kind: str | None) -> Reply:
        """POST /auth: login and password, or `type=refresh_token` with a refresh token."""
        refresh = wire.text(body.get("refresh_token"), "refresh_token", max_length=200)
        login = wire.text(body.get("login"), "login", max_length=200)
        if kind == "refresh_token" or (refresh is not None and login is None):
            if refresh is None:
                raise wire.bad_auth("refresh_token is required")
            account = await store.use_refresh_token(self.pool, credentials.token_hash(refresh))
            if account is None:
                raise wire.bad_auth("unknown, expired or revoked refresh token")
        else:
            password = wire.text(body.get("password"), "password", max_length=200)
            account = await self._login(login, password)
        return Reply(await self._tokens(account))

    async def _login(self, login: str | None, password: str | None) -> Account:
        found = None if login is None else await store.account_by_login(self.pool, login)
        cost = self.settings.lndhub_scrypt_log2_n
        stored = credentials.dummy_hash(cost) if found is None else found[1]
        matches = await asyncio.to_thread(credentials.verify_password, password or "", stored)
        if found is None or password is None or not matches:
            raise wire.bad_auth()
        return found[0]

    async def _tokens(self, account: Account) -> dict[str, str]:
        access, refresh = credentials.new_token(), credentials.new_token()
        stored = await store.store_tokens(
            self.pool,
            account,
            credentials.token_hash(access),
            self.settings.lndhub_access_token_s,
            credentials.token_hash(refresh),
            self.settings.lndhub_refresh_token_s,
        )
        if not stored:
            raise wire.bad_auth("the credentials were rotated; use the new ones")
        return {"access_token": access, "refresh_token": refresh}

    async def authenticate(self, authorization: str | None, *, spend: bool = False) -> Account:
        token = wire.token_of(authorization)
        if token is None or len(token) > 200:
            raise wire.bad_auth()
        account = await store.account_by_token(self.pool, credentials.token_hash(token), "access")
        if account is None:
            raise wire.bad_auth()
        if spend and account.scope != SPEND:
            # Not code 1: BlueWallet would log in again and loop.
            raise LndHubError(
                403, wire.BAD_ARGUMENTS, "this account can make invoices and read only, not pay"
            )
        await self.rate.check_account(str(account.id))  # RateLimited: a 429 (routes_lndhub)
        return account

    # ------------------------------------------------------------ reads

    async def balance(self, account: Account) -> Reply:
        spendable = await store.spendable_msat(self.pool, account.user_id)
        return Reply({"BTC": {"AvailableBalance": wire.sats_floor(spendable)}})

    async def getinfo(self) -> Reply:
        info = self.monitor.status.info
        if info is None:
            raise LndHubError(503, wire.GENERAL_ERROR, "the master node has not been reached yet")
        return Reply(
            {
                "identity_pubkey": info.pubkey,
                "alias": "vnode",
                "num_active_channels": 0,
                "num_peers": 0,
                "block_height": 0,
                "synced_to_chain": True,
                "testnet": info.network.value != "mainnet",
                "chains": [{"chain": "bitcoin", "network": info.network.value}],
                "uris": [],
                "version": "vnode-lndhub",
            }
        )

    async def gettxs(self, account: Account, limit: object, offset: object) -> Reply:
        size, skip = _page(limit, offset)
        rows = await store.payments_page(self.pool, account.user_id, size, skip)
        return Reply([_tx(row) for row in rows])

    async def getuserinvoices(self, account: Account, limit: object, offset: object) -> Reply:
        size, skip = _page(limit, offset)
        rows = await store.invoices_page(self.pool, account.user_id, size, skip)
        return Reply([_user_invoice(row) for row in rows])

    async def checkpayment(self, account: Account, payment_hash: str) -> Reply:
        payment_hash = payment_hash.lower()
        if len(payment_hash) != 64 or any(c not in "0123456789abcdef" for c in payment_hash):
            raise wire.bad_arguments("the payment hash must be 64 hex characters")
        paid = await store.invoice_paid(self.pool, account.user_id, payment_hash)
        if paid is None:
            raise wire.bad_arguments("no invoice or payment of yours has this hash")
        return Reply({"paid": paid})

    async def decodeinvoice(self, invoice: object) -> Reply:
        return Reply(wire.decoded_invoice(_decode(invoice)))

    # ------------------------------------------------------------ money

    async def addinvoice(self, account: Account, body: dict[str, Any]) -> Reply:
        amount = wire.integer(body.get("amt"), "amt")
        memo = wire.text(body.get("memo"), "memo", max_length=_MAX_MEMO)
        if body.get("description_hash"):
            raise wire.bad_arguments("description_hash is not supported")
        amount_msat = None if not amount else amount * 1000  # 0 or none: an amountless invoice
        issuer = receive.InvoiceIssuer(
            self.pool, self.signer, self.backend, self.monitor, self.settings
        )
        command = receive.InvoiceCommand(
            account.user_id, amount_msat, BTC, None, memo, INVOICE_EXPIRY_S
        )
        try:
            created = await issuer.ln_invoice(command)
        except ApiError as exc:
            raise wire.refusal(exc.code.value, exc.message) from None
        invoice, payment_hash = str(created["invoice"]), str(created["payment_hash"])
        return Reply(
            {
                "r_hash": wire.buffer(payment_hash),
                "payment_request": invoice,
                "pay_req": invoice,
                "add_index": str(_decode(invoice).timestamp),
                "hash": payment_hash,
            }
        )

    async def payinvoice(self, account: Account, body: dict[str, Any]) -> Reply:
        """Pay once per (account, invoice), whatever the client repeats.

        An earlier payment of this invoice by this user that is in flight or succeeded is
        answered as it stands, and nothing is sent again; only after a final failure is a new
        attempt made. Two requests racing past that look-up meet the ledger's own guards (one
        live payment per invoice, an internal invoice settled once), and the one refused is
        answered with the other's payment. Refusals are never 5xx, except the node being
        unavailable before anything was reserved (503, nothing paid)."""
        text = wire.text(body.get("invoice"), "invoice", max_length=_MAX_INVOICE, required=True)
        assert text is not None
        invoice = _decode(text)
        amount_msat = None
        if invoice.amount_msat is None:
            # Amountless: `amount` (sats) names it; clients send it for any invoice, and it is
            # ignored when the invoice has an amount (the original hub and lndhub.go).
            amount = wire.integer(body.get("amount"), "amount")
            if not amount:
                raise wire.bad_arguments("amount is required for an invoice without an amount")
            amount_msat = amount * 1000
        earlier = await self._earlier(account, invoice)
        if earlier is not None:
            return earlier
        command = PayCommand(account.user_id, invoice.text, amount_msat, None)
        # No Idempotency-Key: a stored refusal (insufficient balance) would be replayed after a
        # top-up. The look-up above and the ledger's guards make the repeat safe instead.
        task = asyncio.create_task(
            self.sender.pay(command, Idempotency(f"lndhub:{account.id}", None))
        )
        self._running.add(task)
        task.add_done_callback(self._finished)
        try:
            answer = await asyncio.wait_for(asyncio.shield(task), self.settings.lndhub_pay_wait_s)
        except TimeoutError:
            return await self._earlier(account, invoice) or _in_transit(invoice.payment_hash)
        except ApiError as exc:
            return await self._refused(account, invoice, exc.code.value, exc.message)
        if answer.payment_id is None:
            return await self._refused(account, invoice, answer.code, answer.message)
        return _payment_reply(answer, invoice)

    def _finished(self, task: asyncio.Task[PaymentAnswer]) -> None:
        self._running.discard(task)
        if not task.cancelled() and isinstance(task.exception(), Exception):
            exc = task.exception()
            if not isinstance(exc, ApiError):
                log.error("lndhub payment task failed", exc_info=exc)

    async def _earlier(self, account: Account, invoice: bolt11.Invoice) -> Reply | None:
        """The answer of this user's payment of the invoice if one is in flight or done."""
        found = await find_payment(self.pool, account.user_id, invoice.payment_hash)
        if found is None or found.json().get("status") == "failed":
            return None
        return _payment_reply(found, invoice)

    async def _refused(
        self, account: Account, invoice: bolt11.Invoice, code: str, message: str
    ) -> Reply:
        # "Already paid" or "in progress" because this user's own earlier request got there
        # first: answer that payment, as a repeat is answered.
        earlier = await self._earlier(account, invoice)
        if earlier is not None:
            return earlier
        raise wire.refusal(code, message)


def _decode(invoice: object) -> bolt11.Invoice:
    value = wire.text(invoice, "invoice", max_length=_MAX_INVOICE, required=True)
    assert value is not None
    try:
        return bolt11.decode(value.strip())
    except bolt11.InvoiceError as exc:
        raise LndHubError(400, wire.NOT_A_VALID_INVOICE, f"not a valid invoice: {exc}") from None


def _payment_reply(answer: PaymentAnswer, invoice: bolt11.Invoice) -> Reply:
    payment = answer.json()
    status = payment.get("status")
    if status == "succeeded":
        return Reply(wire.paid_answer(payment, invoice))
    if status == "failed":
        reason = payment.get("failure_reason") or "the payment failed"
        raise LndHubError(400, wire.PAYMENT_FAILED, f"payment failed (nothing was spent): {reason}")
    return _in_transit(invoice.payment_hash)


def _in_transit(payment_hash: str) -> Reply:
    return Reply(
        {
            "error": True,
            "code": wire.IN_TRANSIT,
            "message": "the payment is in flight: it has not failed, do not pay again; "
            "its outcome shows in /gettxs",
            "payment_error": "in transit",
            "payment_hash": wire.buffer(payment_hash),
        },
        202,
    )


def _page(limit: object, offset: object) -> tuple[int, int]:
    size = wire.integer(limit, "limit")
    skip = wire.integer(offset, "offset") or 0
    return (MAX_PAGE if not size else min(size, MAX_PAGE)), skip


def _read_invoice(invoice_text: str) -> bolt11.Invoice | None:
    try:
        return bolt11.decode(invoice_text)
    except bolt11.InvoiceError:
        return None


def _memo(invoice_text: str) -> str:
    decoded = _read_invoice(invoice_text)
    return "" if decoded is None else decoded.description or ""


def _tx(row: asyncpg.Record) -> dict[str, object]:
    if row["status"] == "pending":
        # As the original hub lists a locked payment: what it holds, amount and fee reserve.
        held = row["amount_msat"] + row["fee_reserve_msat"]
        return {
            "type": "paid_invoice",
            "value": wire.sats_ceil(held),
            "fee": wire.sats_ceil(row["fee_reserve_msat"]),
            "timestamp": row["created_s"],
            "memo": "Payment in transition",
            "payment_hash": wire.buffer(row["payment_hash"]),
        }
    fee = row["fee_msat"] or 0
    return {
        "type": "paid_invoice",
        "value": wire.sats_ceil(row["amount_msat"] + fee),  # includes the fee (BlueWallet)
        "fee": wire.sats_ceil(fee),
        "timestamp": row["created_s"],
        "memo": _memo(row["invoice"]),
        "payment_preimage": row["preimage"] or "",
        "payment_hash": wire.buffer(row["payment_hash"]),
        "pay_req": row["invoice"],
    }


def _user_invoice(row: asyncpg.Record) -> dict[str, object]:
    amount_msat = row["amount_msat"] or row["received_msat"] or 0
    # The invoice's own timestamp and expiry, so `timestamp + expire_time` (what BlueWallet
    # computes) is exactly when the invoice expires.
    decoded = _read_invoice(row["invoice"])
    timestamp = row["created_s"] if decoded is None else decoded.timestamp
    expiry = row["expires_s"] - timestamp if decoded is None else decoded.expiry_s
    return {
        "r_hash": wire.buffer(row["payment_hash"]),
        "payment_hash": row["payment_hash"],
        "payment_request": row["invoice"],
        "pay_req": row["invoice"],
        "description": row["description"] or "",
        "amt": wire.sats_floor(int(amount_msat)),
        "ispaid": row["status"] == "paid",
        "expire_time": max(0, expiry),  # relative seconds, as clients read it
        "timestamp": timestamp,
        "type": "user_invoice",
        "add_index": str(timestamp),
    }


def dumps(reply: Reply) -> bytes:
    return orjson.dumps(reply.body)
