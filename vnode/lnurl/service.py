"""Lightning Addresses: claiming a name, and the LNURL-pay conversation a payer's wallet has
with vnode for it (docs/LNURL.md).

Payments to an address are ordinary invoices of its user, made by the receive path
(payments/receive.InvoiceIssuer) and credited once by its workers; this module only decides
what to ask for (the amount range, the metadata's hash, the comment) and answers in the LUDs'
words. Refusals of the LNURL conversation are `LnurlRefusal`s, rendered as
`{"status": "ERROR", "reason"}` by the routes.
"""

from __future__ import annotations

import hashlib
import logging
import re

import asyncpg

from vnode.domain.ids import BTC
from vnode.errors import ApiError, ErrorCode
from vnode.ledger.calls import LedgerAnswer
from vnode.lightning.base import LightningBackend, NodeError, PaymentOutcome
from vnode.limits.rate import RateLimited, RateLimiter
from vnode.limits.store import user_limits
from vnode.lnurl import store
from vnode.lnurl.links import AddressLinks, verify_url
from vnode.lnurl.names import NameRefused, canonical_name
from vnode.lnurl.wire import PayAction, PayRequest, Verify
from vnode.payments.receive import InvoiceCommand, InvoiceIssuer
from vnode.settings import Settings

log = logging.getLogger(__name__)

_AMOUNT = re.compile(r"[1-9][0-9]{0,18}")
_HASH = re.compile(r"[0-9a-f]{64}")
# C0, DEL and C1 controls: a comment becomes a history memo, where they are refused too.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
NOT_FOUND = "Not found"  # LUD-21's reason for an unknown invoice


class LnurlRefusal(Exception):
    """An LNURL refusal: `reason` for the payer's wallet, `status` the HTTP status (200 for the
    payer's mistakes, as wallets read the reason only from a 2xx answer)."""

    def __init__(self, reason: str, status: int = 200, retry_after_s: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after_s = retry_after_s  # a 429's Retry-After


async def sendable_range(pool: asyncpg.Pool, settings: Settings, user_id: int) -> tuple[int, int]:
    """What an address of `user_id` takes now, msat: (minSendable, maxSendable). The one place
    the range is decided: the settings' range, its top lowered to what the user's receive
    limits leave room for (docs/LIMITS.md). A top below the bottom means nothing fits now."""
    low, high = settings.lnurl_min_sendable_msat, settings.lnurl_max_sendable_msat
    room = (await user_limits(pool, user_id)).receive_headroom_msat()
    return low, high if room is None else min(high, room)


NO_ROOM = "This address cannot receive now: its user's receive limits leave no room"


def _public_url(settings: Settings) -> str:
    if settings.public_url is None:
        raise ApiError(
            ErrorCode.NOT_CONFIGURED,
            "Lightning Addresses are off: set VNODE_PUBLIC_URL (docs/LNURL.md)",
        )
    return settings.public_url


def address_document(settings: Settings, row: dict[str, object]) -> dict[str, object]:
    """The API's LightningAddress: the database's row plus what the public URL makes of it."""
    links = AddressLinks(_public_url(settings), str(row["name"]))
    return {
        **row,
        "address": links.address,
        "lnurl": links.lnurl,
        "url": links.well_known_url,
    }


class Addresses:
    """Names: claim (one current per user; the old one held for them) and read."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings

    async def claim(self, user_id: int, name: str) -> LedgerAnswer:
        """Claim `name` for `user_id`; a refusal is a code of the answer or an ApiError."""
        _public_url(self.settings)
        try:
            canonical = canonical_name(name)
        except NameRefused as exc:
            code = ErrorCode.ADDRESS_RESERVED if exc.reserved else ErrorCode.INVALID_ADDRESS_NAME
            raise ApiError(code, str(exc)) from None
        # The user's node must exist (unknown_user otherwise): a refused claim creates nothing.
        return await store.claim(self.pool, user_id, canonical, self.settings.address_hold_s)

    async def show(self, user_id: int) -> dict[str, object]:
        _public_url(self.settings)
        row = await store.current_address(self.pool, user_id)
        if row is None:
            raise ApiError(ErrorCode.NO_ADDRESS)
        return address_document(self.settings, row)


class LnurlPay:
    """LUD-06/12/16/21 for the addresses: payRequest, callback, verify."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        issuer: InvoiceIssuer,
        backend: LightningBackend,
        settings: Settings,
        rate: RateLimiter | None = None,
    ) -> None:
        self.pool = pool
        self.issuer = issuer
        self.backend = backend
        self.settings = settings
        self.rate = rate

    def _public_url(self) -> str:
        if self.settings.public_url is None:
            raise LnurlRefusal("Lightning Addresses are not enabled on this service", 404)
        return self.settings.public_url

    async def _resolve(self, name: str) -> tuple[AddressLinks, store.Resolved]:
        public_url = self._public_url()
        try:
            canonical = canonical_name(name)
        except NameRefused:
            raise LnurlRefusal("Lightning address not found") from None
        resolved = await store.resolve(self.pool, canonical)
        if resolved is None:
            raise LnurlRefusal("Lightning address not found")
        return AddressLinks(public_url, canonical), resolved

    async def pay_request(self, name: str) -> PayRequest:
        links, resolved = await self._resolve(name)
        low, high = await sendable_range(self.pool, self.settings, resolved.user_id)
        if high < low:
            raise LnurlRefusal(NO_ROOM)
        comment_chars = self.settings.lnurl_comment_max_chars
        return PayRequest(
            callback=links.callback_url,
            minSendable=low,
            maxSendable=high,
            metadata=links.metadata,
            commentAllowed=comment_chars or None,
        )

    async def callback(self, name: str, amount: str | None, comment: str | None) -> PayAction:
        links, resolved = await self._resolve(name)
        if self.rate is not None:
            try:
                await self.rate.check_address(links.name)
            except RateLimited as exc:
                raise LnurlRefusal(exc.message, 429, exc.retry_after_s) from None
        if amount is None or not _AMOUNT.fullmatch(amount):
            raise LnurlRefusal("amount must be a whole number of millisatoshis")
        amount_msat = int(amount)
        low, high = await sendable_range(self.pool, self.settings, resolved.user_id)
        if high < low:
            raise LnurlRefusal(NO_ROOM)
        if not low <= amount_msat <= high:
            raise LnurlRefusal(f"Amount {amount_msat} msat is not between {low} and {high} msat")
        comment = comment or None  # LUD-12: an empty comment is no comment
        if comment is not None:
            allowed = self.settings.lnurl_comment_max_chars
            if len(comment) > allowed:
                raise LnurlRefusal(
                    f"Got a comment with {len(comment)} characters, but can only accept {allowed}"
                )
            if _CONTROL.search(comment):
                raise LnurlRefusal("the comment contains control characters")
        command = InvoiceCommand(
            user_id=resolved.user_id,
            amount_msat=amount_msat,
            asset_id=BTC,
            asset_amount=None,
            description=links.description,
            expiry_s=self.settings.lnurl_invoice_expiry_s,
            description_hash=links.description_hash,
            address_id=resolved.address_id,
            comment=comment,
        )
        try:
            created = await self.issuer.ln_invoice(command)
        except ApiError as exc:
            # The node unavailable: nothing was made, the payer may try again (503). Any other
            # refusal of the receive rules is the payer's to read.
            raise LnurlRefusal(exc.message, 503 if exc.status == 503 else 200) from None
        invoice = str(created["invoice"])
        payment_hash = str(created["payment_hash"])
        return PayAction(pr=invoice, verify=verify_url(links.public_url, payment_hash))

    async def verify(self, payment_hash: str) -> Verify:
        self._public_url()
        if not _HASH.fullmatch(payment_hash):
            raise LnurlRefusal(NOT_FOUND)
        found = await store.address_invoice(self.pool, payment_hash)
        if found is None:
            raise LnurlRefusal(NOT_FOUND)
        preimage = None
        if found.paid and found.paid_through_node:
            # Paid by another vnode user inside the ledger, no preimage was revealed to anyone:
            # only a payment through the node has one to report.
            preimage = await self._preimage(payment_hash)
        return Verify(settled=found.paid, preimage=preimage, pr=found.invoice)

    async def _preimage(self, payment_hash: str) -> str | None:
        """The node's preimage of a payment it received, if it hashes to the hash; None when
        the node cannot say now (verify still answers: settled is the ledger's word)."""
        try:
            status = await self.backend.payment_status(payment_hash, inbound=True)
        except NodeError as exc:
            log.warning(
                "verify: the node did not give the preimage",
                extra={"payment_hash": payment_hash, "error": str(exc)},
            )
            return None
        preimage = status.preimage
        if (
            status.outcome is not PaymentOutcome.SUCCEEDED
            or preimage is None
            or hashlib.sha256(bytes.fromhex(preimage)).hexdigest() != payment_hash
        ):
            return None
        return preimage
