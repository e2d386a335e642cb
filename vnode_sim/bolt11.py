"""BOLT 11 signing and encoding: the simulated node is the one program that issues invoices.

The service only reads invoices (``vnode.lightning.bolt11``, the strict reader); this writer
builds on the reader's bech32 and field primitives and checks every invoice it signs against
that reader. The reader's public names are re-exported, so ``from vnode_sim import bolt11``
gives tests both halves (``bolt11.encode`` and ``bolt11.decode``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from coincurve import PrivateKey

from vnode.lightning.bolt11 import (
    _KNOWN_TYPES,
    _MAX_MSAT,
    _NETWORK_TO_PREFIX,
    _T_DESCRIPTION,
    _T_DESCRIPTION_HASH,
    _T_EXPIRY,
    _T_FALLBACK,
    _T_FEATURES,
    _T_METADATA,
    _T_MIN_CLTV,
    _T_PAYEE,
    _T_PAYMENT_HASH,
    _T_ROUTE,
    _T_SECRET,
    _TIMESTAMP_WORDS,
    _U64_MAX,
    DEFAULT_EXPIRY_S,
    DEFAULT_MIN_FINAL_CLTV_EXPIRY_DELTA,
    KNOWN_FEATURE_BITS,
    MAX_INVOICE_LENGTH,
    DecodeErrorCode,
    FallbackAddress,
    Invoice,
    InvoiceError,
    Network,
    RawField,
    RouteHintHop,
    _bech32_encode,
    _bytes_to_words,
    _check_fallback,
    _encode_amount,
    _field,
    _int_to_words,
    _signing_digest,
    decode,
)

__all__ = [
    "DEFAULT_ENCODE_FEATURES",
    "DEFAULT_EXPIRY_S",
    "DEFAULT_MIN_FINAL_CLTV_EXPIRY_DELTA",
    "KNOWN_FEATURE_BITS",
    "MAX_INVOICE_LENGTH",
    "DecodeErrorCode",
    "FallbackAddress",
    "Invoice",
    "InvoiceError",
    "Network",
    "RawField",
    "RouteHintHop",
    "decode",
    "encode",
]

DEFAULT_ENCODE_FEATURES: Final = frozenset({8, 14})


def _as_bytes(name: str, value: str | bytes, size: int) -> bytes:
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else bytes(value)
    except ValueError:
        raise InvoiceError("invalid_field", f"{name} is not hex") from None
    if len(raw) != size:
        raise InvoiceError("invalid_field", f"{name} must be {size} bytes")
    return raw


def _sign_words(hrp: str, words: Sequence[int], private_key: bytes) -> str:
    """Sign timestamp+fields ``words`` under ``hrp`` and return the bech32 invoice."""
    try:
        key = PrivateKey(private_key)
    except (ValueError, TypeError):
        raise InvoiceError("invalid_field", "private_key is not a valid secp256k1 key") from None
    sig = key.sign_recoverable(_signing_digest(hrp, words), hasher=None)
    return _bech32_encode(hrp, [*words, *_bytes_to_words(sig)])


def encode(
    *,
    network: Network,
    amount_msat: int | None,
    payment_hash: str | bytes,
    payment_secret: str | bytes,
    timestamp: int,
    private_key: bytes,
    description: str | None = None,
    description_hash: str | bytes | None = None,
    expiry_s: int | None = None,
    min_final_cltv_expiry_delta: int = DEFAULT_MIN_FINAL_CLTV_EXPIRY_DELTA,
    features: Iterable[int] = DEFAULT_ENCODE_FEATURES,
    route_hints: Sequence[Sequence[RouteHintHop]] = (),
    fallbacks: Sequence[FallbackAddress] = (),
    metadata: bytes | None = None,
    include_payee_pubkey: bool = False,
    extra_tags: Sequence[RawField] = (),
) -> str:
    """Build and sign an invoice that :func:`decode` accepts (checked before returning).

    ``expiry_s=None`` omits ``x`` (reader default 3600). ``metadata`` adds the
    optional payment_metadata feature (49) unless 48/49 is already requested.
    """
    if network not in _NETWORK_TO_PREFIX:
        raise InvoiceError("unknown_network", f"unknown network {network!r}")
    hrp = "ln" + _NETWORK_TO_PREFIX[network]
    if amount_msat is not None:
        if not 0 < amount_msat <= _MAX_MSAT:
            raise InvoiceError("invalid_amount", "amount_msat must be in 1..21e6 BTC")
        hrp += _encode_amount(amount_msat)
    if not 0 <= timestamp < 2**35:
        raise InvoiceError("invalid_field", "timestamp must fit in 35 bits")
    if (description is None) == (description_hash is None):
        raise InvoiceError("invalid_field", "give exactly one of description, description_hash")

    feats = set(features)
    if metadata is not None and not feats & {48, 49}:
        feats.add(49)
    bad = sorted(b for b in feats if b < 0 or (b % 2 == 0 and b not in KNOWN_FEATURE_BITS))
    if bad:
        raise InvoiceError("unknown_required_feature", f"cannot require feature bits {bad}")
    for tag in extra_tags:
        if not 0 <= tag.type < 32 or tag.type in _KNOWN_TYPES:
            raise InvoiceError("invalid_field", f"extra tag type {tag.type} is reserved")
        if any(not 0 <= w < 32 for w in tag.data):
            raise InvoiceError("invalid_field", "extra tag data must be 5-bit words")

    words = [(timestamp >> 5 * (6 - i)) & 31 for i in range(_TIMESTAMP_WORDS)]
    words += _field(_T_PAYMENT_HASH, _bytes_to_words(_as_bytes("payment_hash", payment_hash, 32)))
    words += _field(_T_SECRET, _bytes_to_words(_as_bytes("payment_secret", payment_secret, 32)))
    if description is not None:
        words += _field(_T_DESCRIPTION, _bytes_to_words(description.encode("utf-8")))
    else:
        assert description_hash is not None
        dh = _as_bytes("description_hash", description_hash, 32)
        words += _field(_T_DESCRIPTION_HASH, _bytes_to_words(dh))
    if expiry_s is not None:
        if not 0 <= expiry_s <= _U64_MAX:
            raise InvoiceError("invalid_field", "expiry_s out of range")
        words += _field(_T_EXPIRY, _int_to_words(expiry_s))
    if not 0 <= min_final_cltv_expiry_delta <= _U64_MAX:
        raise InvoiceError("invalid_field", "min_final_cltv_expiry_delta out of range")
    words += _field(_T_MIN_CLTV, _int_to_words(min_final_cltv_expiry_delta))
    if include_payee_pubkey:
        try:
            pub = PrivateKey(private_key).public_key.format(compressed=True)
        except (ValueError, TypeError):
            raise InvoiceError("invalid_field", "private_key is not a valid key") from None
        words += _field(_T_PAYEE, _bytes_to_words(pub))
    for fb in fallbacks:
        _check_fallback(fb.version, fb.program)
        words += _field(_T_FALLBACK, [fb.version, *_bytes_to_words(fb.program)])
    for route in route_hints:
        if not route:
            raise InvoiceError("invalid_field", "empty route hint")
        raw = b"".join(
            _as_bytes("hop pubkey", h.pubkey, 33)
            + h.short_channel_id.to_bytes(8, "big")
            + h.fee_base_msat.to_bytes(4, "big")
            + h.fee_proportional_millionths.to_bytes(4, "big")
            + h.cltv_expiry_delta.to_bytes(2, "big")
            for h in route
        )
        words += _field(_T_ROUTE, _bytes_to_words(raw))
    if metadata is not None:
        words += _field(_T_METADATA, _bytes_to_words(metadata))
    if feats:
        words += _field(_T_FEATURES, _int_to_words(sum(1 << b for b in feats)))
    for tag in extra_tags:
        words += _field(tag.type, tag.data)

    result = _sign_words(hrp, words, private_key)
    decode(result)  # never hand out an invoice our own reader would refuse
    return result
