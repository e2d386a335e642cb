"""BOLT 11 invoices the simulated node (or its outside payee) issues, RGB fields included.

RGB fields travel in two tagged fields BOLT 11 leaves unassigned, as the RGB Lightning Node
does. The sim's encoding (the real node's own byte layout is not something vnode reads: it
asks the node's /decodelninvoice):

* type 30 (``7``): the asset id, its UTF-8 bytes packed into 5-bit words (zero-padded);
* type 31 (``l``): the asset amount, an unsigned 64-bit big-endian integer (8 bytes, 13 words).

Each appears at most once; an amount without an asset id is kept as read (the node refuses to
pay such an invoice).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Final

from vnode.lightning.base import Network
from vnode.lightning.bolt11 import Invoice, RawField
from vnode_sim import bolt11
from vnode_sim.assets import is_asset_id

RGB_ASSET_ID_TAG: Final = 30
RGB_ASSET_AMOUNT_TAG: Final = 31
_AMOUNT_BYTES: Final = 8
# LDK's default for the invoices the RGB Lightning Node creates.
MIN_FINAL_CLTV_EXPIRY_DELTA: Final = 18


class RgbTagError(ValueError):
    """The RGB tagged fields of an invoice are malformed."""


def rgb_tags(asset_id: str | None, asset_amount: int | None) -> tuple[RawField, ...]:
    tags: list[RawField] = []
    if asset_id is not None:
        tags.append(RawField.from_bytes(RGB_ASSET_ID_TAG, asset_id.encode()))
    if asset_amount is not None:
        tags.append(
            RawField.from_bytes(RGB_ASSET_AMOUNT_TAG, asset_amount.to_bytes(_AMOUNT_BYTES, "big"))
        )
    return tuple(tags)


def read_rgb_tags(invoice: Invoice) -> tuple[str | None, int | None]:
    """(asset_id, asset_amount) of a decoded invoice; RgbTagError when they are malformed."""
    ids = invoice.extra_fields_of_type(RGB_ASSET_ID_TAG)
    amounts = invoice.extra_fields_of_type(RGB_ASSET_AMOUNT_TAG)
    if len(ids) > 1 or len(amounts) > 1:
        raise RgbTagError("duplicate RGB field")
    asset_id: str | None = None
    asset_amount: int | None = None
    if ids:
        try:
            asset_id = ids[0].data_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise RgbTagError("RGB asset id is not UTF-8") from None
        if not is_asset_id(asset_id):
            raise RgbTagError("RGB asset id is malformed")
    if amounts:
        raw = amounts[0].data_bytes()
        if len(raw) != _AMOUNT_BYTES or len(amounts[0].data) != 13:
            raise RgbTagError("RGB amount must be 8 bytes")
        asset_amount = int.from_bytes(raw, "big")
    return asset_id, asset_amount


@dataclass(frozen=True)
class IssuedInvoice:
    """An invoice together with the secrets only its issuer knows."""

    text: str
    payment_hash: str
    preimage: str
    payment_secret: str
    amount_msat: int | None
    asset_id: str | None
    asset_amount: int | None
    description: str | None
    description_hash: str | None
    timestamp: int
    expiry_s: int
    payee_pubkey: str

    @property
    def expires_at(self) -> int:
        return self.timestamp + self.expiry_s


def issue_invoice(
    *,
    private_key: bytes,
    payee_pubkey: str,
    network: Network,
    now: int,
    amount_msat: int | None,
    expiry_s: int,
    description: str | None,
    description_hash: str | None = None,
    asset_id: str | None = None,
    asset_amount: int | None = None,
) -> IssuedInvoice:
    """Sign a fresh invoice with a random preimage and payment secret.

    Like LDK, the payee key is not written as an ``n`` field: readers recover it from the
    signature. An absent description becomes an empty one, as the node does.
    """
    preimage = secrets.token_bytes(32)
    payment_hash = hashlib.sha256(preimage).hexdigest()
    payment_secret = secrets.token_bytes(32).hex()
    if description is None and description_hash is None:
        description = ""
    text = bolt11.encode(
        network=network,
        amount_msat=amount_msat,
        payment_hash=payment_hash,
        payment_secret=payment_secret,
        timestamp=now,
        private_key=private_key,
        description=description,
        description_hash=description_hash,
        expiry_s=expiry_s,
        min_final_cltv_expiry_delta=MIN_FINAL_CLTV_EXPIRY_DELTA,
        extra_tags=rgb_tags(asset_id, asset_amount),
    )
    return IssuedInvoice(
        text=text,
        payment_hash=payment_hash,
        preimage=preimage.hex(),
        payment_secret=payment_secret,
        amount_msat=amount_msat,
        asset_id=asset_id,
        asset_amount=asset_amount,
        description=description,
        description_hash=description_hash,
        timestamp=now,
        expiry_s=expiry_s,
        payee_pubkey=payee_pubkey,
    )
