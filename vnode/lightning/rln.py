"""The RGB Lightning Node (RLN) REST API as a :class:`~vnode.lightning.base.LightningBackend`.

The same adapter talks to the simulated node (``vnode.lightning.sim``), which speaks this API.
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
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, NoReturn

import httpx

from vnode.lightning import bolt11
from vnode.lightning.base import (
    BTC,
    Capabilities,
    CreatedInvoice,
    DuplicatePayment,
    InvoiceRefused,
    Network,
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

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_READ_TIMEOUT_S",
    "DEFAULT_REFRESH_TIMEOUT_S",
    "DEFAULT_TRANSPORT_ENDPOINTS",
    "MALFORMED_ANSWER",
    "RlnBackend",
]

DEFAULT_CONNECT_TIMEOUT_S: Final = 5.0
DEFAULT_READ_TIMEOUT_S: Final = 15.0
# /refreshtransfers with skip_sync=false syncs the wallet with the indexer first: slower.
DEFAULT_REFRESH_TIMEOUT_S: Final = 120.0
DEFAULT_TRANSPORT_ENDPOINTS: Final = ("rpc://127.0.0.1:3000/json-rpc",)

JsonObject = dict[str, Any]

_NETWORKS: Final[dict[str, Network]] = {
    "Mainnet": Network.BITCOIN,
    "Testnet": Network.TESTNET,
    "Testnet4": Network.TESTNET,
    "Signet": Network.SIGNET,
    "SignetCustom": Network.SIGNET,
    "Regtest": Network.REGTEST,
}
_OUTCOMES: Final[dict[str, PaymentOutcome]] = {
    "Pending": PaymentOutcome.PENDING,
    "Succeeded": PaymentOutcome.SUCCEEDED,
    "Failed": PaymentOutcome.FAILED,
}
_LOCKED_NAMES: Final = frozenset({"LockedNode", "ChangingState"})
_NOT_FOUND_NAMES: Final = frozenset({"PaymentNotFound", "UnknownLNInvoice"})
_INCOMING_KINDS: Final = frozenset({"ReceiveBlind", "ReceiveWitness"})
_HASH_RE: Final = re.compile(r"[0-9a-f]{64}")
MALFORMED_ANSWER: Final = "MalformedAnswer"


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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not transport_endpoints:
            raise ValueError("an RGB invoice needs at least one transport endpoint")
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
        self._refresh_timeout = httpx.Timeout(refresh_timeout_s, connect=connect_timeout_s)
        self._transport_endpoints = tuple(transport_endpoints)
        self._simulated = simulated
        self._clock = clock
        # No retries and no redirects: a request that moves money is sent at most once, and
        # whatever the node answers is the answer.
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=self._timeout,
            follow_redirects=False,
            transport=transport,
        )

    # ------------------------------------------------------------------ node

    async def node_info(self) -> NodeInfo:
        info = await self._call("GET", "/nodeinfo")
        network_info = await self._call("GET", "/networkinfo")
        network_name = _req_str(network_info, "network", "/networkinfo")
        network = _NETWORKS.get(network_name)
        if network is None:
            _malformed("/networkinfo", f"unknown network {network_name!r}")
        return NodeInfo(
            pubkey=_req_str(info, "pubkey", "/nodeinfo"),
            network=network,
            simulated=self._simulated,
        )

    async def spendable_balances(self) -> dict[str, int]:
        # Channels only (docs/NODE.md): on-chain RGB coins cannot pay a Lightning invoice, and
        # sends are what this figure is compared against.
        answer = await self._call("GET", "/listchannels")
        balances: dict[str, int] = {BTC: 0}
        for channel in _req_list(answer, "channels", "/listchannels"):
            where = "/listchannels channel"
            chan = _as_obj(channel, where)
            if not _req_bool(chan, "is_usable", where):
                continue
            balances[BTC] += _req_int(chan, "outbound_balance_msat", where)
            asset_id = _opt_str(chan, "asset_id", where)
            if asset_id is not None:
                local = _opt_int(chan, "asset_local_amount", where) or 0
                balances[asset_id] = balances.get(asset_id, 0) + local
        return balances

    # ------------------------------------------------------------------ invoices

    async def decode_invoice(self, invoice: str) -> NodeInvoice:
        answer = await self._call("POST", "/decodelninvoice", {"invoice": invoice})
        where = "/decodelninvoice"
        network = _NETWORKS.get(_req_str(answer, "network", where))
        if network is None:
            _malformed(where, "unknown network")
        node_view = NodeInvoice(
            payment_hash=_req_hash(answer, "payment_hash", where),
            amount_msat=_opt_int(answer, "amt_msat", where),
            asset_id=_opt_str(answer, "asset_id", where),
            asset_amount=_opt_int(answer, "asset_amount", where),
            expiry_s=_req_int(answer, "expiry_sec", where),
            timestamp=_req_int(answer, "timestamp", where),
            network=network,
            payee_pubkey=_opt_str(answer, "payee_pubkey", where),
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
                ("network", local.network, node_view.network.value),
            )
            if ours != theirs
        ]
        if disagreements:
            raise InvoiceRefused(
                f"the node and vnode's decoder disagree on {', '.join(disagreements)}",
                name="DecoderDisagreement",
            )
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
    ) -> CreatedInvoice:
        body = _without_none(
            {
                "amt_msat": amount_msat,
                "expiry_sec": expiry_s,
                "asset_id": asset_id,
                "asset_amount": asset_amount,
                "description": description,
            }
        )
        answer = await self._call("POST", "/lninvoice", body)
        text = _req_str(answer, "invoice", "/lninvoice")
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
        return CreatedInvoice(
            invoice=text, payment_hash=decoded.payment_hash, expires_at=decoded.expires_at
        )

    # ------------------------------------------------------------------ payments

    async def pay_invoice(
        self,
        invoice: str,
        *,
        amount_msat: int | None,
        fee_limit_msat: int,
        asset_id: str | None = None,
        asset_amount: int | None = None,
    ) -> PaymentStatus:
        """Start a payment; the answer is PENDING (poll payment_status) or FAILED (final).

        ``fee_limit_msat`` cannot be passed on: /sendpayment has no such parameter
        (capabilities.takes_fee_limit is False). The payment code has reserved it and charges
        it whole, since the fee actually paid is never reported (docs/NODE.md).
        """
        del fee_limit_msat
        # Refused here, nothing has been sent: our reader is stricter than the node's.
        decoded = _decode_locally(invoice)
        body = _without_none(
            {
                "invoice": invoice,
                "amt_msat": amount_msat,
                "asset_id": asset_id,
                "asset_amount": asset_amount,
            }
        )
        answer = await self._call("POST", "/sendpayment", body)
        # From here on the node may have started the payment: anything unexpected in the
        # answer is ambiguous (NodeUnreachable), never a failure.
        where = "/sendpayment"
        outcome = _req_outcome(answer, "status", where)
        answered_hash = _opt_str(answer, "payment_hash", where)
        if answered_hash is not None and answered_hash.lower() != decoded.payment_hash:
            _malformed(where, "the node answered for another payment hash")
        return PaymentStatus(
            payment_hash=decoded.payment_hash,
            outcome=outcome,
            amount_msat=amount_msat if amount_msat is not None else decoded.amount_msat,
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
        only it knows what a bad preimage means for the ledger.
        """
        if not _HASH_RE.fullmatch(payment_hash):
            raise ValueError("payment_hash must be 64 lowercase hex characters")
        try:
            answer = await self._call("POST", "/getpayment", {"payment_hash": payment_hash})
        except PaymentNotFound:
            return self._unknown(payment_hash)
        where = "/getpayment"
        is_inbound, status = _parse_payment(_req_obj(answer, "payment", where), where)
        if status.payment_hash != payment_hash:
            _malformed(where, "the node answered for another payment hash")
        if is_inbound == inbound:
            return status
        # /getpayment looks at inbound payments first, so a payment in the other direction
        # with the same hash would hide the one asked for; the full list has both.
        for listed_inbound, listed in await self._list_payments():
            if listed_inbound == inbound and listed.payment_hash == payment_hash:
                return listed
        return self._unknown(payment_hash)

    async def inbound_payments(self) -> list[PaymentStatus]:
        return [status for inbound, status in await self._list_payments() if inbound]

    # ------------------------------------------------------------------ RGB on-chain

    async def create_rgb_invoice(
        self, *, asset_id: str | None, duration_s: int, min_confirmations: int
    ) -> RgbInvoice:
        if duration_s <= 0:
            raise ValueError("duration_s must be positive")
        body = _without_none(
            {
                "min_confirmations": min_confirmations,
                "asset_id": asset_id,
                "expiration_timestamp": int(self._clock()) + duration_s,
                "witness": False,  # blinded UTXO: the payer learns no output of ours
                "transport_endpoints": list(self._transport_endpoints),
            }
        )
        answer = await self._call("POST", "/rgbinvoice", body)
        where = "/rgbinvoice"
        return RgbInvoice(
            invoice=_req_str(answer, "invoice", where),
            recipient_id=_req_str(answer, "recipient_id", where),
            expires_at=_req_int(answer, "expiration_timestamp", where),
            batch_transfer_idx=_req_int(answer, "batch_transfer_idx", where),
        )

    async def refresh_transfers(self) -> None:
        # The spec requires `filter` (an empty list refreshes every pending transfer).
        await self._call(
            "POST",
            "/refreshtransfers",
            {"filter": [], "skip_sync": False},
            http_timeout=self._refresh_timeout,
        )

    async def list_transfers(self, asset_id: str) -> list[RgbTransfer]:
        body = {"asset_filter": {"type": "Id", "value": asset_id}}
        answer = await self._call("POST", "/listtransfers", body)
        where = "/listtransfers transfer"
        transfers = []
        for item in _req_list(answer, "transfers", "/listtransfers"):
            transfer = _as_obj(item, where)
            kind = _req_str(transfer, "kind", where)
            transfers.append(
                RgbTransfer(
                    idx=_req_int(transfer, "idx", where),
                    recipient_id=_opt_str(transfer, "recipient_id", where),
                    asset_id=asset_id,
                    status=_req_str(transfer, "status", where),
                    amount=_received_amount(transfer, where),
                    txid=_opt_str(transfer, "txid", where),
                    receive_utxo=_opt_str(transfer, "receive_utxo", where),
                    incoming=kind in _INCOMING_KINDS,
                )
            )
        return transfers

    async def close(self) -> None:
        await self._client.aclose()

    # ------------------------------------------------------------------ plumbing

    def _unknown(self, payment_hash: str) -> PaymentStatus:
        return PaymentStatus(
            payment_hash=payment_hash,
            outcome=PaymentOutcome.UNKNOWN,
            updated_at=int(self._clock()),
        )

    async def _list_payments(self) -> list[tuple[bool, PaymentStatus]]:
        answer = await self._call("GET", "/listpayments")
        return [
            _parse_payment(_as_obj(item, "/listpayments payment"), "/listpayments payment")
            for item in _req_list(answer, "payments", "/listpayments")
        ]

    async def _call(
        self,
        method: str,
        path: str,
        body: JsonObject | None = None,
        *,
        http_timeout: httpx.Timeout | None = None,
    ) -> JsonObject:
        where = f"{method} {path}"
        try:
            response = await self._client.request(
                method, path, json=body, timeout=http_timeout or self._timeout
            )
        except httpx.HTTPError as exc:
            # Timeout, refused or dropped connection, broken HTTP: the request may or may
            # not have reached the node, and may or may not have done its work there.
            kind = type(exc).__name__
            raise NodeUnreachable(f"{where}: {kind}: {exc}", name=kind) from exc
        return _answer(where, response)


# ---------------------------------------------------------------------- answers and errors


def _answer(where: str, response: httpx.Response) -> JsonObject:
    """The JSON object of a 2xx answer, or the exception that the error answer maps to."""
    status = response.status_code
    if status == 401:
        # Checked first: a proxy in front of the node may answer 401 in plain text too.
        raise NodeError(f"{where}: HTTP 401: the node refused vnode's token", "Unauthorized", 401)
    if status >= 500:
        raise NodeUnreachable(_error_text(where, response), _error_name(response), status)
    try:
        payload = response.json()
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both are ValueErrors
        # Not the node speaking (a proxy page, a truncated body): nothing can be concluded.
        raise NodeUnreachable(
            f"{where}: HTTP {status} with a body that is not JSON", MALFORMED_ANSWER, status
        ) from None
    if 200 <= status < 300:
        if not isinstance(payload, dict):
            _malformed(where, "the answer is not a JSON object", status)
        return payload
    name = _error_name(response)
    message = _error_text(where, response)
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


def _error_name(response: httpx.Response) -> str | None:
    try:
        payload = response.json()
    except ValueError:
        return None
    if isinstance(payload, dict) and isinstance(payload.get("name"), str):
        return str(payload["name"])
    return None


def _error_text(where: str, response: httpx.Response) -> str:
    detail = ""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        detail = f" {payload.get('name', '')}: {payload.get('error', '')}"
    return f"{where}: HTTP {response.status_code}{detail}"


def _malformed(where: str, what: str, status: int | None = None) -> NoReturn:
    # An answer we cannot read is as good as no answer: for a payment, it may have been sent.
    raise NodeUnreachable(f"{where}: malformed answer: {what}", MALFORMED_ANSWER, status)


def _decode_locally(invoice: str) -> bolt11.Invoice:
    try:
        return bolt11.decode(invoice)
    except bolt11.InvoiceError as exc:
        raise InvoiceRefused(f"vnode's decoder refuses the invoice: {exc}", exc.code) from exc


def _without_none(body: JsonObject) -> JsonObject:
    # RLN reads a missing optional field as None; omitting them keeps requests minimal.
    return {key: value for key, value in body.items() if value is not None}


def _parse_payment(payment: JsonObject, where: str) -> tuple[bool, PaymentStatus]:
    return _req_bool(payment, "inbound", where), PaymentStatus(
        payment_hash=_req_hash(payment, "payment_hash", where),
        outcome=_req_outcome(payment, "status", where),
        amount_msat=_opt_int(payment, "amt_msat", where),
        asset_id=_opt_str(payment, "asset_id", where),
        asset_amount=_opt_int(payment, "asset_amount", where),
        fee_msat=None,
        # The spec says string, the node sends null until the payment succeeds.
        preimage=_opt_str(payment, "preimage", where),
        updated_at=_req_int(payment, "updated_at", where),
    )


def _received_amount(transfer: JsonObject, where: str) -> int:
    """Asset units the transfer's assignments hold (what arrived, not what was requested)."""
    total = 0
    for item in _req_list(transfer, "assignments", where):
        assignment = _as_obj(item, f"{where} assignment")
        if _req_str(assignment, "type", where) == "Fungible":
            total += _req_int(assignment, "value", where)
    return total


# Readers: a wrong type is a malformed answer (bool is refused where an int is expected,
# since Python's bool is an int).


def _as_obj(value: object, where: str) -> JsonObject:
    if not isinstance(value, dict):
        _malformed(where, "expected an object")
    return value


def _req_obj(obj: JsonObject, key: str, where: str) -> JsonObject:
    return _as_obj(obj.get(key), f"{where}.{key}")


def _req_list(obj: JsonObject, key: str, where: str) -> list[object]:
    value = obj.get(key)
    if not isinstance(value, list):
        _malformed(where, f"{key} is not a list")
    return value


def _opt_str(obj: JsonObject, key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        _malformed(where, f"{key} is not a string")
    return value


def _req_str(obj: JsonObject, key: str, where: str) -> str:
    value = _opt_str(obj, key, where)
    if value is None:
        _malformed(where, f"{key} is missing")
    return value


def _req_hash(obj: JsonObject, key: str, where: str) -> str:
    value = _req_str(obj, key, where).lower()
    if not _HASH_RE.fullmatch(value):
        _malformed(where, f"{key} is not a 32-byte hex hash")
    return value


def _opt_int(obj: JsonObject, key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        _malformed(where, f"{key} is not a non-negative integer")
    return value


def _req_int(obj: JsonObject, key: str, where: str) -> int:
    value = _opt_int(obj, key, where)
    if value is None:
        _malformed(where, f"{key} is missing")
    return value


def _req_bool(obj: JsonObject, key: str, where: str) -> bool:
    value = obj.get(key)
    if not isinstance(value, bool):
        _malformed(where, f"{key} is not a boolean")
    return value


def _req_outcome(obj: JsonObject, key: str, where: str) -> PaymentOutcome:
    outcome = _OUTCOMES.get(_req_str(obj, key, where))
    if outcome is None:
        _malformed(where, f"unknown {key} {obj.get(key)!r}")
    return outcome
