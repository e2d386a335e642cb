"""The RGB Lightning Node (RLN) REST API as a :class:`~vnode.lightning.base.LightningBackend`.

The same adapter talks to the simulated node (``vnode_sim``), which speaks this API.
Behaviour the OpenAPI spec does not state (``shared/specs/README.md``) and the full error
mapping are written down in ``docs/NODE.md``; the short version:

* A refusal the node gives *before* it starts a payment maps to an exception that says nothing
  was sent (``InvoiceRefused``, ``NodeLocked``, ``DuplicatePayment``). Anything whose outcome we
  cannot know (timeout, refused or dropped connection, any 5xx, a body that is not JSON or not
  the documented shape) is ``NodeUnreachable``: the caller must treat a payment as maybe sent.
* An unknown payment is 403 ``PaymentNotFound``; ``payment_status`` turns it into outcome
  ``UNKNOWN``, never into something that looks like a failure.
* RLN takes no fee limit and reports no fee: the payment code reserves a fee and charges it
  whole (the fee-reserve policy in docs/NODE.md).
* The HTTP client is aiohttp (node_http.py, docs/adr/0028): a request is sent at most once,
  and every transport failure keeps httpx's name (``ReadTimeout``, ``ConnectError``...).
* Every answer is read as hostile until proved otherwise, through the shared models of
  ``rln_api.py`` (the simulated node checks its answers against the same ones). An answer
  that is not the node's documented shape raises :class:`NodeProtocolError` (a
  ``NodeUnreachable``: for a request that may have moved money, an unreadable answer proves
  nothing). That includes a missing or mistyped field, an unknown state, any amount or count
  outside 0..2**63-1 (what the ledger's bigint holds), a preimage that is not 64 lower-case
  hex digits (never repaired: a success whose proof had to be rewritten is not a valid
  success) and text with control characters.
  In a listing (/listpayments, /listtransfers, /listchannels) a bad item is skipped and logged
  once with its hash; the good items are returned. Only ``ValueError`` for a malformed
  argument of ours ever escapes otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, NoReturn, TypeVar

from pydantic import BaseModel, ValidationError

from vnode.domain.ids import BTC
from vnode.lightning import bolt11
from vnode.lightning import rln_api as api
from vnode.lightning.base import (
    Capabilities,
    CreatedInvoice,
    DuplicatePayment,
    InvoiceRefused,
    NodeError,
    NodeInfo,
    NodeInvoice,
    NodeLocked,
    NodeUnreachable,
    PaymentNotFound,
    PaymentOutcome,
    PaymentStatus,
    RgbInvoice,
    RgbTransfer,
)
from vnode.lightning.node_http import Answer, NodeHttp, TransportFailure

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_READ_TIMEOUT_S",
    "DEFAULT_REFRESH_TIMEOUT_S",
    "DEFAULT_TRANSPORT_ENDPOINTS",
    "I64_MAX",
    "MALFORMED_ANSWER",
    "NodeProtocolError",
    "RlnBackend",
]

log = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT_S: Final = 5.0
DEFAULT_READ_TIMEOUT_S: Final = 15.0
# /refreshtransfers with skip_sync=false syncs the wallet with the indexer first: slower.
DEFAULT_REFRESH_TIMEOUT_S: Final = 120.0
DEFAULT_TRANSPORT_ENDPOINTS: Final = ("rpc://127.0.0.1:3000/json-rpc",)

JsonObject = dict[str, Any]

_OUTCOMES: Final[dict[api.HtlcStatus, PaymentOutcome]] = {
    api.HtlcStatus.PENDING: PaymentOutcome.PENDING,
    api.HtlcStatus.SUCCEEDED: PaymentOutcome.SUCCEEDED,
    api.HtlcStatus.FAILED: PaymentOutcome.FAILED,
}
_LOCKED_NAMES: Final = frozenset({"LockedNode", "ChangingState"})
_NOT_FOUND_NAMES: Final = frozenset({"PaymentNotFound", "UnknownLNInvoice"})
_HASH_RE: Final = re.compile(r"[0-9a-f]{64}")
_ANY_CASE_HASH_RE: Final = re.compile(r"[0-9a-fA-F]{64}")
# For the texts of error answers, which are read leniently (only shortened and cleaned).
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")
I64_MAX: Final = api.I64_MAX
# Skipped items are logged once each (the watchers poll every second); the memory is bounded.
_REPORTED_MAX: Final = 4096
MALFORMED_ANSWER: Final = "MalformedAnswer"

M = TypeVar("M", bound=BaseModel)


class NodeProtocolError(NodeUnreachable):
    """The node answered something that is not its documented shape: nothing in that answer
    (or, in a listing, that item) is trusted. A NodeUnreachable, so that a payment whose
    answer is unreadable stays pending, as after a timeout."""


class RlnBackend:
    """One RLN node over HTTP. Every method is one or two REST calls; nothing is cached."""

    name: str = "rln"
    capabilities: Capabilities = Capabilities(
        takes_fee_limit=False,  # /sendpayment has no fee-limit parameter
        reports_fee=False,  # neither /sendpayment nor /getpayment tells the fee paid
        pushes_inbound=False,  # no webhook or stream: vnode polls /listpayments
        rgb=True,
    )

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
        refresh_timeout_s: float = DEFAULT_REFRESH_TIMEOUT_S,
        transport_endpoints: Sequence[str] = DEFAULT_TRANSPORT_ENDPOINTS,
        simulated: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not transport_endpoints:
            raise ValueError("an RGB invoice needs at least one transport endpoint")
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._refresh_timeout_s = refresh_timeout_s
        self._transport_endpoints = tuple(transport_endpoints)
        self._simulated = simulated
        self._clock = clock
        self._reported: set[tuple[str, str | None, str]] = set()
        # No retries and no redirects: a request that moves money is sent at most once, and
        # whatever the node answers is the answer.
        self._http = NodeHttp(
            base_url,
            headers=headers,
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
        )

    # ------------------------------------------------------------------ node

    async def node_info(self) -> NodeInfo:
        info = await self._call("GET", "/nodeinfo")
        network_info = await self._call("GET", "/networkinfo")
        network = _read(api.NetworkInfoResponse, network_info, "/networkinfo").network
        return NodeInfo(
            pubkey=_read(api.NodeInfoResponse, info, "/nodeinfo").pubkey,
            network=api.NETWORK_OF[network],
            simulated=self._simulated,
        )

    async def spendable_balances(self) -> dict[str, int]:
        # Channels only (docs/NODE.md): on-chain RGB coins cannot pay a Lightning invoice, and
        # sends are what this figure is compared against.
        # A channel the node describes badly is left out: less to spend is the safe side.
        answer = await self._call("GET", "/listchannels")
        where = "/listchannels channel"
        balances: dict[str, int] = {BTC: 0}
        items = _listing(answer, "channels", "/listchannels")
        for channel in self._each_item(items, where, "channel_id", api.Channel):
            if not channel.is_usable:
                continue
            balances[BTC] += channel.outbound_balance_msat
            if channel.asset_id is not None:
                held = channel.asset_local_amount or 0
                balances[channel.asset_id] = balances.get(channel.asset_id, 0) + held
        return balances

    # ------------------------------------------------------------------ invoices

    async def decode_invoice(self, invoice: str) -> NodeInvoice:
        request = api.DecodeLNInvoiceRequest.model_construct(invoice=invoice)
        answer = await self._call("POST", "/decodelninvoice", api.request_body(request))
        # The numbers come from the invoice, whose fields are u64: the model reads them whole,
        # and the invoice (not the node) is refused below when vnode cannot hold one.
        decoded = _read(api.DecodeLNInvoiceResponse, answer, "/decodelninvoice")
        node_view = NodeInvoice(
            payment_hash=decoded.payment_hash,
            amount_msat=decoded.amt_msat,
            asset_id=decoded.asset_id,
            asset_amount=decoded.asset_amount,
            expiry_s=decoded.expiry_sec,
            timestamp=decoded.timestamp,
            network=api.NETWORK_OF[decoded.network],
            payee_pubkey=decoded.payee_pubkey,
        )
        # Money moves on what our strict reader sees, so the node and it must agree on every
        # field both read; the node adds the RGB fields, which only it can decode.
        local = _decode_locally(invoice)
        disagreements = [
            field
            for field, ours, theirs in (
                ("payment_hash", local.payment_hash, node_view.payment_hash),
                ("amount_msat", local.amount_msat, node_view.amount_msat),
                ("timestamp", local.timestamp, node_view.timestamp),
                ("expiry_s", local.expiry_s, node_view.expiry_s),
                ("network", local.network, node_view.network),
                # Only an explicit `n` is reported, and our decoder holds it to the signature.
                ("payee_pubkey", local.payee_pubkey, node_view.payee_pubkey or local.payee_pubkey),
            )
            if ours != theirs
        ]
        if disagreements:
            raise InvoiceRefused(
                f"the node and vnode's decoder disagree on {', '.join(disagreements)}",
                name="DecoderDisagreement",
            )
        beyond = [
            name
            for name, value in (
                ("expiry_sec", node_view.expiry_s),
                ("timestamp", node_view.timestamp),
                ("asset_amount", node_view.asset_amount),
            )
            if value is not None and value > I64_MAX
        ]
        if beyond:
            raise InvoiceRefused(
                f"the invoice's {', '.join(beyond)} is beyond 2^63-1, which vnode cannot hold",
                name="OutOfRange",
            )
        if node_view.asset_id is not None and not api.is_rgb_asset_id(node_view.asset_id):
            raise InvoiceRefused(
                "the node reads an RGB asset id vnode cannot use", name="InvalidAssetID"
            )
        if node_view.asset_amount == 0:
            # Nothing to pay or book (the ledger holds positive asset amounts only).
            raise InvoiceRefused("the invoice asks 0 units of its asset", name="InvalidAmount")
        if node_view.payee_pubkey is None:
            # RLN reports only an explicit `n` field; the key recovered from the signature is
            # the payee all the same, and the payment code needs it to spot our own invoices.
            node_view = dataclasses.replace(node_view, payee_pubkey=local.payee_pubkey)
        return node_view

    async def create_invoice(
        self,
        *,
        amount_msat: int | None,
        expiry_s: int,
        description: str | None,
        asset_id: str | None = None,
        asset_amount: int | None = None,
        description_hash: str | None = None,
    ) -> CreatedInvoice:
        request = api.LNInvoiceRequest.model_construct(
            amt_msat=amount_msat,
            expiry_sec=expiry_s,
            asset_id=asset_id,
            asset_amount=asset_amount,
            description=description,
            description_hash=description_hash,
        )
        answer = await self._call("POST", "/lninvoice", api.request_body(request))
        text = _read(api.LNInvoiceResponse, answer, "/lninvoice").invoice
        # /lninvoice answers only the invoice: hash and expiry come from reading it ourselves.
        try:
            decoded = bolt11.decode(text)
        except bolt11.InvoiceError as exc:
            raise NodeError(
                f"/lninvoice made an invoice vnode's decoder refuses: {exc}",
                name="UnreadableInvoice",
            ) from exc
        if decoded.amount_msat != amount_msat:
            # Handing out an invoice for another amount would credit the wrong sum.
            raise NodeError(
                f"/lninvoice made an invoice for {decoded.amount_msat} msat, asked {amount_msat}",
                name="InvoiceMismatch",
            )
        if description_hash is not None and decoded.description_hash != description_hash.lower():
            # An LNURL wallet refuses an invoice whose `h` is not the metadata's hash (LUD-06).
            raise NodeError(
                f"/lninvoice made an invoice committing to {decoded.description_hash}, "
                f"asked {description_hash}",
                name="InvoiceMismatch",
            )
        return CreatedInvoice(
            invoice=text, payment_hash=decoded.payment_hash, expires_at=decoded.expires_at
        )

    # ------------------------------------------------------------------ payments

    async def pay_invoice(
        self,
        invoice: bolt11.Invoice,
        *,
        amount_msat: int | None,
        fee_limit_msat: int,
        asset_id: str | None = None,
        asset_amount: int | None = None,
    ) -> PaymentStatus:
        """Start a payment; the answer is PENDING (poll payment_status) or FAILED (final).

        ``invoice`` was read once, by the payment path's strict reader (payments/send.py), which
        refuses what the node might accept; its ``text`` is what the node is sent.

        ``fee_limit_msat`` cannot be passed on: /sendpayment has no such parameter
        (capabilities.takes_fee_limit is False). The payment code has reserved it and charges
        it whole, since the fee actually paid is never reported (docs/NODE.md).
        """
        del fee_limit_msat
        request = api.SendPaymentRequest.model_construct(
            invoice=invoice.text, amt_msat=amount_msat, asset_id=asset_id, asset_amount=asset_amount
        )
        answer = await self._call("POST", "/sendpayment", api.request_body(request))
        # From here on the node may have started the payment: anything unexpected in the
        # answer is ambiguous (NodeUnreachable), never a failure.
        where = "/sendpayment"
        sent = _read(api.SendPaymentResponse, answer, where)
        if sent.payment_hash is not None and sent.payment_hash.lower() != invoice.payment_hash:
            _malformed(where, "the node answered for another payment hash")
        return PaymentStatus(
            payment_hash=invoice.payment_hash,
            outcome=_OUTCOMES[sent.status],
            amount_msat=amount_msat if amount_msat is not None else invoice.amount_msat,
            asset_id=asset_id,
            asset_amount=asset_amount,
            fee_msat=None,
            preimage=None,  # /sendpayment never carries one: poll payment_status
            updated_at=int(self._clock()),
        )

    async def payment_status(self, payment_hash: str, *, inbound: bool = False) -> PaymentStatus:
        """The node's view of one payment; UNKNOWN when the node has none with this hash.

        A SUCCEEDED status carries the node's preimage as given, even when it is missing or
        does not hash to the payment hash: the payment code checks it (and alerts), because
        only it knows what a bad preimage means for the ledger. A preimage that is not 64
        lower-case hex digits makes the record malformed (NodeProtocolError), never repaired.
        """
        if not _HASH_RE.fullmatch(payment_hash):
            raise ValueError("payment_hash must be 64 lowercase hex characters")
        request = api.GetPaymentRequest.model_construct(payment_hash=payment_hash)
        try:
            answer = await self._call("POST", "/getpayment", api.request_body(request))
        except PaymentNotFound:
            return self._unknown(payment_hash)
        where = "/getpayment"
        try:
            payment = _read(api.GetPaymentResponse, answer, where).payment
        except NodeProtocolError as exc:
            self._report(where, payment_hash, exc, answer.get("payment"))
            raise
        if payment.payment_hash != payment_hash:
            _malformed(where, "the node answered for another payment hash")
        if payment.inbound == inbound:
            return _payment_status(payment)
        # /getpayment looks at inbound payments first, so a payment in the other direction
        # with the same hash would hide the one asked for; the full list has both.
        listed, unreadable = await self._list_payments()
        for found in listed:
            if found.inbound == inbound and found.payment_hash == payment_hash:
                return _payment_status(found)
        if payment_hash in unreadable or None in unreadable:
            # The node may well have it, in an item we could not read: not known to be absent
            # (UNKNOWN would let an expired invoice's payment be refunded).
            _malformed("/listpayments", f"the record of {payment_hash} cannot be read")
        return self._unknown(payment_hash)

    async def inbound_payments(self) -> list[PaymentStatus]:
        listed, _ = await self._list_payments()
        return [_payment_status(payment) for payment in listed if payment.inbound]

    # ------------------------------------------------------------------ RGB on-chain

    async def create_rgb_invoice(
        self, *, asset_id: str | None, duration_s: int, min_confirmations: int
    ) -> RgbInvoice:
        if duration_s <= 0:
            raise ValueError("duration_s must be positive")
        request = api.RgbInvoiceRequest.model_construct(
            min_confirmations=min_confirmations,
            asset_id=asset_id,
            expiration_timestamp=int(self._clock()) + duration_s,
            witness=False,  # blinded UTXO: the payer learns no output of ours
            transport_endpoints=list(self._transport_endpoints),
        )
        answer = await self._call("POST", "/rgbinvoice", api.request_body(request))
        made = _read(api.RgbInvoiceResponse, answer, "/rgbinvoice")
        return RgbInvoice(
            invoice=made.invoice,
            recipient_id=made.recipient_id,
            expires_at=made.expiration_timestamp,
            batch_transfer_idx=made.batch_transfer_idx,
        )

    async def refresh_transfers(self) -> None:
        # The spec requires `filter` (an empty list refreshes every pending transfer).
        request = api.RefreshRequest.model_construct(filter=[], skip_sync=False)
        await self._call(
            "POST",
            "/refreshtransfers",
            api.request_body(request),
            read_timeout_s=self._refresh_timeout_s,
        )

    async def list_transfers(self, asset_id: str) -> list[RgbTransfer]:
        request = api.ListTransfersRequest.model_construct(
            asset_filter=api.AssetFilter.model_construct(type="Id", value=asset_id)
        )
        answer = await self._call("POST", "/listtransfers", api.request_body(request))
        # A transfer we cannot read is not credited now; the next poll reads it again.
        items = _listing(answer, "transfers", "/listtransfers")
        transfers = self._each_item(items, "/listtransfers transfer", "recipient_id", api.Transfer)
        return [
            RgbTransfer(
                idx=transfer.idx,
                recipient_id=transfer.recipient_id,
                asset_id=asset_id,
                status=transfer.status.value,
                amount=transfer.received,
                txid=transfer.txid,
                receive_utxo=transfer.receive_utxo,
                incoming=transfer.incoming,
            )
            for transfer in transfers
        ]

    async def close(self) -> None:
        await self._http.close()

    # ------------------------------------------------------------------ plumbing

    def _unknown(self, payment_hash: str) -> PaymentStatus:
        return PaymentStatus(
            payment_hash=payment_hash,
            outcome=PaymentOutcome.UNKNOWN,
            updated_at=int(self._clock()),
        )

    async def _list_payments(self) -> tuple[list[api.Payment], set[str | None]]:
        """The payments we can read, and the hashes of those we cannot (None: unreadable)."""
        answer = await self._call("GET", "/listpayments")
        unreadable: set[str | None] = set()
        items = _listing(answer, "payments", "/listpayments")
        where = "/listpayments payment"
        listed = self._each_item(items, where, "payment_hash", api.Payment, unreadable)
        # An id that is not a hash could be a mangled copy of any: count it as unreadable.
        return listed, {h if h is not None and _HASH_RE.fullmatch(h) else None for h in unreadable}

    def _each_item(
        self,
        items: list[object],
        where: str,
        id_key: str,
        model: type[M],
        skipped: set[str | None] | None = None,
    ) -> list[M]:
        """Every item read as ``model``; the ones it refuses are logged and left out (their
        ids added to ``skipped``), so that one bad item does not hide the others."""
        parsed = []
        for item in items:
            try:
                parsed.append(_read(model, item, where))
            except NodeProtocolError as exc:
                item_id = _item_id(item, id_key)
                self._report(where, item_id, exc, item)
                if skipped is not None:
                    skipped.add(item_id)
        return parsed

    def _report(
        self, where: str, item_id: str | None, exc: NodeProtocolError, item: object = None
    ) -> None:
        """Log a malformed answer once per item and problem (the same bad item comes back at
        every poll), at warning level; repeats at debug level."""
        key = (where, item_id, str(exc))
        repeat = key in self._reported
        if not repeat:
            if len(self._reported) >= _REPORTED_MAX:
                self._reported.clear()
            self._reported.add(key)
        log.log(
            logging.DEBUG if repeat else logging.WARNING,
            "the node answered a malformed item; it is not used",
            # The excerpt identifies an item whose id is what is missing.
            extra={"where": where, "item": item_id, "error": str(exc), "excerpt": _short(item)},
        )

    async def _call(
        self,
        method: str,
        path: str,
        body: JsonObject | None = None,
        *,
        read_timeout_s: float | None = None,
    ) -> JsonObject:
        where = f"{method} {path}"
        try:
            response = await self._http.request(method, path, body, read_timeout_s=read_timeout_s)
        except TransportFailure as exc:
            # Timeout, refused or dropped connection, broken HTTP: the request may or may
            # not have reached the node, and may or may not have done its work there.
            raise NodeUnreachable(f"{where}: {exc}", name=exc.name) from exc
        return _answer(where, response)


# ---------------------------------------------------------------------- answers and errors


def _answer(where: str, response: Answer) -> JsonObject:
    """The JSON object of a 2xx answer, or the exception that the error answer maps to."""
    status = response.status
    if status == 401:
        # Checked first: a proxy in front of the node may answer 401 in plain text too.
        raise NodeError(f"{where}: HTTP 401: the node refused vnode's token", "Unauthorized", 401)
    is_json, payload = _json_of(response)
    if status >= 500:
        raise NodeUnreachable(_error_text(where, status, payload), _error_name(payload), status)
    if not is_json:
        # Not the node speaking (a proxy page, a truncated body): nothing can be concluded.
        raise NodeProtocolError(
            f"{where}: HTTP {status} with a body that is not JSON", MALFORMED_ANSWER, status
        )
    if 200 <= status < 300:
        if not isinstance(payload, dict):
            _malformed(where, "the answer is not a JSON object", status)
        return payload
    name = _error_name(payload)
    message = _error_text(where, status, payload)
    if status == 400:
        # Validation (InvalidInvoice, InvalidAmount, InvalidAssetID, IncompleteRGBInfo,
        # InvalidRequest...): the node refused before doing anything.
        raise InvoiceRefused(message, name, status)
    if status == 403:
        if name in _LOCKED_NAMES:
            raise NodeLocked(message, name, status)
        if name == "DuplicatePayment":
            raise DuplicatePayment(message, name, status)
        if name in _NOT_FOUND_NAMES:
            raise PaymentNotFound(message, name, status)
    # Other 403 business errors (InsufficientAssets, NoRoute, Forbidden...), 404, 405...:
    # a plain NodeError, which the payment code treats as "not known to have failed".
    raise NodeError(message, name, status)


def _json_of(response: Answer) -> tuple[bool, object]:
    """(True, the parsed body), or (False, None) when the body is not JSON."""
    try:
        # As httpx's Response.json(): the encoding (UTF-8, -16 or -32) is detected.
        return True, json.loads(response.body)
    # JSONDecodeError, UnicodeDecodeError and the int-digits limit are ValueErrors; a deeply
    # nested body overflows the parser's stack.
    except (ValueError, RecursionError):
        return False, None


def _error_name(payload: object) -> str | None:
    if isinstance(payload, dict):
        name = payload.get("name")
        if isinstance(name, str) and len(name) <= 100 and not _CONTROL_RE.search(name):
            return name
    return None


def _error_text(where: str, status: int, payload: object) -> str:
    detail = ""
    if isinstance(payload, dict):
        # Shortened and without control characters: the node's text may hold anything, and
        # it ends up in logs and in vnode's own error answers.
        name, error = payload.get("name", ""), payload.get("error", "")
        detail = f" {_short(name)}: {_short(error)}"
    return f"{where}: HTTP {status}{detail}"


def _short(value: object, limit: int = 300) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = _CONTROL_RE.sub("?", text)
    return text if len(text) <= limit else text[:limit] + "..."


def _malformed(where: str, what: str, status: int | None = None) -> NoReturn:
    # An answer we cannot read is as good as no answer: for a payment, it may have been sent.
    raise NodeProtocolError(f"{where}: malformed answer: {what}", MALFORMED_ANSWER, status)


def _item_id(item: object, key: str) -> str | None:
    """The id of a listed item, for the log and for "is it the one asked for" (None when it
    cannot be read: then it could be any)."""
    if not isinstance(item, dict):
        return None
    value = item.get(key)
    if isinstance(value, str) and _ANY_CASE_HASH_RE.fullmatch(value):
        return value.lower()
    if isinstance(value, str | int) and not isinstance(value, bool):
        return _short(str(value), 120)
    return None


def _decode_locally(invoice: str) -> bolt11.Invoice:
    try:
        return bolt11.decode(invoice)
    except bolt11.InvoiceError as exc:
        raise InvoiceRefused(f"vnode's decoder refuses the invoice: {exc}", exc.code) from exc


def _read(model: type[M], value: object, where: str) -> M:
    """``value`` as the shared model of that answer; any rule it breaks makes it malformed."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'answer'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)[:3]
        )
        _malformed(where, _short(problems))


def _listing(answer: JsonObject, key: str, where: str) -> list[object]:
    """The items of a listing, each validated on its own (one bad item must not hide the
    others)."""
    items = answer.get(key)
    if not isinstance(items, list):
        _malformed(where, f"{key} is not a list")
    return items


def _payment_status(payment: api.Payment) -> PaymentStatus:
    return PaymentStatus(
        payment_hash=payment.payment_hash,
        outcome=_OUTCOMES[payment.status],
        amount_msat=payment.amt_msat,
        asset_id=payment.asset_id,
        asset_amount=payment.asset_amount,
        fee_msat=None,
        preimage=payment.preimage,
        updated_at=payment.updated_at,
    )
