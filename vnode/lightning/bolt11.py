"""Strict BOLT 11 invoice reader (decode). Signing and encoding live with the simulated node,
the one program that issues invoices (``vnode_sim/bolt11.py``); the service only decodes.

Written in-house because the PyPI ``bolt11`` package accepts sub-millisatoshi
amounts, invents defaults and ignores unknown required features. Money moves on
what this module returns, so every ambiguity is an error, never a guess:

* bech32 per BIP173 (no 90-char limit, bech32m rejected), mixed case rejected;
* amounts: no leading zeros, no zero, no sub-msat ``p`` precision, <= 21M BTC;
* ``p``/``h``/``s``/``n`` of the wrong length are skipped (BOLT 11 reader rule),
  but a *second* valid copy of a single-valued field is rejected, as LDK does,
  so we can never disagree with the paying node about which one counts;
* exactly one of ``d``/``h``; unknown even feature bits are refused;
* padding bits must be zero (the same strictness as rust-bech32 in LDK);
* the signature must recover (low-S only) and match ``n`` when ``n`` is given.

Unknown tagged fields (e.g. RGB Lightning Node's types 30/31) are kept verbatim
in :attr:`Invoice.extra_fields`.
"""

from __future__ import annotations

import functools
import hashlib
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from coincurve import PublicKey

from vnode.lightning.base import Network

__all__ = [
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
]

DecodeErrorCode = Literal[
    "invalid_bech32",
    "invalid_checksum",
    "invalid_length",
    "unknown_network",
    "invalid_amount",
    "invalid_signature",
    "missing_field",
    "invalid_field",
    "unknown_required_feature",
]

DEFAULT_EXPIRY_S: Final = 3600
DEFAULT_MIN_FINAL_CLTV_EXPIRY_DELTA: Final = 18
# LND's zpay32 limit (largest alphanumeric QR code); bounds the work done on hostile input.
MAX_INVOICE_LENGTH: Final = 7089
# var_onion_optin, payment_secret, basic_mpp, option_payment_metadata (BOLT 9, context "9").
# route_blinding (24/25) is deliberately absent: BOLT 11 has no blinded-path field for it.
KNOWN_FEATURE_BITS: Final = frozenset({8, 9, 14, 15, 16, 17, 48, 49})

_PREFIX_TO_NETWORK: Final[dict[str, Network]] = {
    "bc": Network.BITCOIN,
    "tb": Network.TESTNET,
    "tbs": Network.SIGNET,
    "bcrt": Network.REGTEST,
}
_NETWORK_TO_PREFIX: Final[dict[Network, str]] = {v: k for k, v in _PREFIX_TO_NETWORK.items()}

_MSAT_PER_BTC: Final = 100_000_000_000
_MAX_MSAT: Final = 21_000_000 * _MSAT_PER_BTC
# Multipliers in pico-BTC (1 msat == 10 pico-BTC); largest first for canonical encoding.
_MULTIPLIER_PICO: Final[dict[str, int]] = {
    "": 10**12,
    "m": 10**9,
    "u": 10**6,
    "n": 10**3,
    "p": 1,
}
_PREFIX_RE: Final = re.compile(r"ln([a-z]+)")
# ASCII-only classes on purpose: str.isdigit() would accept other scripts' digits.
_AMOUNT_RE: Final = re.compile(r"([0-9]+)([munp]?)")

_CHARSET: Final = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_CHARSET_REV: Final = {c: i for i, c in enumerate(_CHARSET)}
_BECH32_CONST: Final = 1
_GEN: Final = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)

_CURVE_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_U64_MAX: Final = 2**64 - 1
_TIMESTAMP_WORDS: Final = 7
_SIGNATURE_WORDS: Final = 104
_MAX_FIELD_WORDS: Final = 1023

# Tagged field types (value of the 5-bit type word).
_T_PAYMENT_HASH: Final = 1
_T_ROUTE: Final = 3
_T_FEATURES: Final = 5
_T_EXPIRY: Final = 6
_T_FALLBACK: Final = 9
_T_DESCRIPTION: Final = 13
_T_SECRET: Final = 16
_T_PAYEE: Final = 19
_T_DESCRIPTION_HASH: Final = 23
_T_MIN_CLTV: Final = 24
_T_METADATA: Final = 27
_KNOWN_TYPES: Final = frozenset(
    {
        _T_PAYMENT_HASH,
        _T_ROUTE,
        _T_FEATURES,
        _T_EXPIRY,
        _T_FALLBACK,
        _T_DESCRIPTION,
        _T_SECRET,
        _T_PAYEE,
        _T_DESCRIPTION_HASH,
        _T_MIN_CLTV,
        _T_METADATA,
    }
)
# Fields that may appear at most once (after the wrong-length skip rule).
_SINGLE_TYPES: Final = _KNOWN_TYPES - {_T_ROUTE, _T_FALLBACK}
_HOP_LEN: Final = 51
# BOLT 11: a reader skips p/h/s/n whose data_length is not 52/52/52/53 words.
_FIXED_LEN: Final = {_T_PAYMENT_HASH: 52, _T_DESCRIPTION_HASH: 52, _T_SECRET: 52, _T_PAYEE: 53}


class InvoiceError(ValueError):
    """Invoice rejected; ``code`` is stable for callers, ``message`` is for humans."""

    def __init__(self, code: DecodeErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code: DecodeErrorCode = code
        self.message = message


@dataclass(frozen=True, slots=True)
class RouteHintHop:
    pubkey: str
    short_channel_id: int
    fee_base_msat: int
    fee_proportional_millionths: int
    cltv_expiry_delta: int

    @property
    def short_channel_id_str(self) -> str:
        scid = self.short_channel_id
        return f"{scid >> 40}x{(scid >> 16) & 0xFFFFFF}x{scid & 0xFFFF}"


@dataclass(frozen=True, slots=True)
class FallbackAddress:
    """On-chain fallback kept raw: witness version 0-16, 17 (P2PKH) or 18 (P2SH)."""

    version: int
    program: bytes


@dataclass(frozen=True, slots=True)
class RawField:
    """A tagged field we did not interpret (unknown type, or skipped per BOLT 11)."""

    type: int
    data: tuple[int, ...]

    @property
    def tag(self) -> str:
        return _CHARSET[self.type]

    def data_bytes(self) -> bytes:
        """Data packed 5->8 bits, trailing pad bits dropped (caller defines semantics)."""
        return _words_to_bytes(self.data, mode="drop")

    @classmethod
    def from_bytes(cls, type_: int, data: bytes) -> RawField:
        return cls(type_, tuple(_bytes_to_words(data)))


@dataclass(frozen=True, slots=True)
class Invoice:
    network: Network
    amount_msat: int | None
    timestamp: int
    payment_hash: str
    payment_secret: str | None
    description: str | None
    description_hash: str | None
    expiry_s: int
    expiry_given: bool
    min_final_cltv_expiry_delta: int
    min_final_cltv_expiry_given: bool
    payee_pubkey: str
    payee_pubkey_given: bool
    features: frozenset[int]
    route_hints: tuple[tuple[RouteHintHop, ...], ...]
    fallbacks: tuple[FallbackAddress, ...]
    metadata: bytes | None
    extra_fields: tuple[RawField, ...]
    signature: str
    # The invoice as it was read: what is sent to the node, so nothing reads it a second time.
    # Not part of equality: the same invoice in upper case (BIP 173) is the same invoice.
    text: str = field(compare=False)

    @property
    def expires_at(self) -> int:
        return self.timestamp + self.expiry_s

    def is_expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at

    def matches_description(self, description: str | bytes) -> bool:
        """BOLT 11: a reader MUST check ``h`` against the out-of-band description."""
        if self.description_hash is None:
            return False
        raw = description.encode() if isinstance(description, str) else description
        return hashlib.sha256(raw).hexdigest() == self.description_hash

    def extra_fields_of_type(self, type_: int) -> tuple[RawField, ...]:
        return tuple(f for f in self.extra_fields if f.type == type_)


# --------------------------------------------------------------------------- bech32


def _gen_xor(top: int) -> int:
    out = 0
    for i in range(5):
        if (top >> i) & 1:
            out ^= _GEN[i]
    return out


# The generators' XOR for each value of the top five bits: one lookup per word instead of five
# tests (the checksum was a tenth of the simulated node's CPU per payment; bench/payments.py).
_GEN_TABLE: tuple[int, ...] = tuple(_gen_xor(top) for top in range(32))


def _polymod(values: Iterable[int]) -> int:
    chk = 1
    table = _GEN_TABLE
    for v in values:
        chk = (chk & 0x1FFFFFF) << 5 ^ v ^ table[chk >> 25]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _bech32_decode(text: str) -> tuple[str, list[int]]:
    if any(not 33 <= ord(c) <= 126 for c in text):
        raise InvoiceError("invalid_bech32", "character outside printable US-ASCII")
    if text.lower() != text and text.upper() != text:
        raise InvoiceError("invalid_bech32", "mixed case")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1:
        raise InvoiceError("invalid_bech32", "missing separator or empty human-readable part")
    if len(text) - pos - 1 < 6:
        raise InvoiceError("invalid_bech32", "data part shorter than the checksum")
    hrp, data_chars = text[:pos], text[pos + 1 :]
    try:
        words = [_CHARSET_REV[c] for c in data_chars]
    except KeyError as exc:
        raise InvoiceError("invalid_bech32", f"invalid data character {exc.args[0]!r}") from None
    check = _polymod(_hrp_expand(hrp) + words)
    if check != _BECH32_CONST:
        # bech32m is a valid encoding for addresses, but never for invoices.
        raise InvoiceError("invalid_checksum", "bech32 checksum mismatch")
    return hrp, words[:-6]


def _bech32_encode(hrp: str, words: Sequence[int]) -> str:
    poly = _polymod([*_hrp_expand(hrp), *words, 0, 0, 0, 0, 0, 0]) ^ _BECH32_CONST
    checksum = [(poly >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[w] for w in (*words, *checksum))


# ---------------------------------------------------------------- 5-bit helpers


def _words_to_int(words: Sequence[int]) -> int:
    value = 0
    for w in words:
        value = value << 5 | w
    return value


def _int_to_words(value: int) -> list[int]:
    """Minimal big-endian 5-bit encoding (0 -> no words), as BOLT 11 asks of writers."""
    words: list[int] = []
    while value:
        words.append(value & 31)
        value >>= 5
    return words[::-1]


def _words_to_bytes(
    words: Sequence[int], *, mode: Literal["strict", "drop", "pad"] = "strict"
) -> bytes:
    """Pack 5-bit words into bytes.

    strict: BIP173 convertbits(pad=False), i.e. < 5 leftover bits, all zero (as LDK);
    drop: discard leftover bits; pad: zero-fill to a byte boundary (signing preimage).
    """
    acc = bits = 0
    out = bytearray()
    for w in words:
        acc = (acc << 5 | w) & 0xFFF
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    if mode == "strict" and (bits >= 5 or acc & ((1 << bits) - 1)):
        raise InvoiceError("invalid_field", "non-zero or excess padding bits")
    if mode == "pad" and bits:
        out.append((acc << (8 - bits)) & 0xFF)
    return bytes(out)


def _bytes_to_words(data: bytes) -> list[int]:
    acc = bits = 0
    words: list[int] = []
    for b in data:
        acc = (acc << 8 | b) & 0xFFF
        bits += 8
        while bits >= 5:
            bits -= 5
            words.append((acc >> bits) & 31)
    if bits:
        words.append((acc << (5 - bits)) & 31)
    return words


def _signing_digest(hrp: str, words: Sequence[int]) -> bytes:
    return hashlib.sha256(hrp.encode("utf-8") + _words_to_bytes(words, mode="pad")).digest()


# ---------------------------------------------------------------------- amounts


def _parse_hrp(hrp: str) -> tuple[Network, int | None]:
    m = _PREFIX_RE.match(hrp)
    if m is None or m.group(1) not in _PREFIX_TO_NETWORK:
        raise InvoiceError("unknown_network", f"unknown invoice prefix in {hrp!r}")
    network = _PREFIX_TO_NETWORK[m.group(1)]
    rest = hrp[m.end() :]
    if not rest:
        return network, None
    a = _AMOUNT_RE.fullmatch(rest)
    if a is None:
        raise InvoiceError("invalid_amount", f"malformed amount or multiplier {rest!r}")
    digits, multiplier = a.groups()
    if digits[0] == "0":
        raise InvoiceError("invalid_amount", "amount must be positive without leading zeros")
    if len(digits) > 30:  # also keeps int() clear of huge-string parsing
        raise InvoiceError("invalid_amount", "amount too large")
    pico = int(digits) * _MULTIPLIER_PICO[multiplier]
    if pico % 10:
        raise InvoiceError("invalid_amount", "sub-millisatoshi precision")
    msat = pico // 10
    if msat > _MAX_MSAT:
        raise InvoiceError("invalid_amount", "amount exceeds 21 million BTC")
    return network, msat


def _encode_amount(amount_msat: int) -> str:
    pico = amount_msat * 10
    for letter, mult in _MULTIPLIER_PICO.items():
        if pico % mult == 0:
            return f"{pico // mult}{letter}"
    raise AssertionError("unreachable: pico multiplier divides everything")


# ----------------------------------------------------------------------- decode


def _parse_fallback(words: Sequence[int]) -> FallbackAddress | None:
    if not words:
        raise InvoiceError("invalid_field", "empty fallback field")
    version = words[0]
    if version > 18:
        return None  # BOLT 11: skip unknown fallback versions
    program = _words_to_bytes(words[1:])
    _check_fallback(version, program)
    return FallbackAddress(version, program)


def _check_fallback(version: int, program: bytes) -> None:
    n = len(program)
    if version in (17, 18):
        ok = n == 20
    elif version == 0:
        ok = n in (20, 32)
    else:
        ok = 0 < version <= 16 and 2 <= n <= 40  # BIP141 program bounds
    if not ok:
        raise InvoiceError("invalid_field", f"fallback v{version} with {n}-byte program")


def _parse_route(words: Sequence[int]) -> tuple[RouteHintHop, ...]:
    raw = _words_to_bytes(words)
    if not raw or len(raw) % _HOP_LEN:
        raise InvoiceError("invalid_field", "route hint length is not a multiple of 51 bytes")
    hops = []
    for i in range(0, len(raw), _HOP_LEN):
        h = raw[i : i + _HOP_LEN]
        hops.append(
            RouteHintHop(
                pubkey=h[:33].hex(),
                short_channel_id=int.from_bytes(h[33:41], "big"),
                fee_base_msat=int.from_bytes(h[41:45], "big"),
                fee_proportional_millionths=int.from_bytes(h[45:49], "big"),
                cltv_expiry_delta=int.from_bytes(h[49:51], "big"),
            )
        )
    return tuple(hops)


def _parse_u64(words: Sequence[int], name: str) -> int:
    value = _words_to_int(words)
    if value > _U64_MAX:
        raise InvoiceError("invalid_field", f"{name} does not fit in 64 bits")
    return value


def _recover_payee(hrp: str, words: Sequence[int], sig: bytes) -> bytes:
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:64], "big")
    if sig[64] > 3:
        raise InvoiceError("invalid_signature", "recovery id out of range")
    # libsecp256k1 (and so LDK, our paying node) only verifies low-S signatures.
    if not (0 < r < _CURVE_N and 0 < s <= _CURVE_N // 2):
        raise InvoiceError("invalid_signature", "signature scalars out of range or high-S")
    try:
        key = PublicKey.from_signature_and_message(sig, _signing_digest(hrp, words), hasher=None)
    except ValueError:
        raise InvoiceError("invalid_signature", "signature is not recoverable") from None
    return key.format(compressed=True)


def decode(invoice: str, *, require_payment_secret: bool = False) -> Invoice:
    """Decode and fully validate a BOLT 11 invoice, or raise :class:`InvoiceError`.

    ``require_payment_secret`` applies lightning/bolts PR #1242 (reader must fail
    without ``s``); the merged spec still lets readers accept such invoices.

    An external payment reads its invoice once (payments/send.py), and the node adapter sends
    the decoded invoice's ``text``; a quote and its payment, or a retried request, read the same
    text again, and the result is a pure function of the text and immutable, so successful
    decodes are remembered (bounded). Refusals are not cached.
    """
    if not isinstance(invoice, str):
        raise InvoiceError("invalid_bech32", "invoice must be a string")
    return _decode_cached(invoice, require_payment_secret)


@functools.lru_cache(maxsize=4096)
def _decode_cached(invoice: str, require_payment_secret: bool) -> Invoice:
    return _decode(invoice, require_payment_secret=require_payment_secret)


def _decode(invoice: str, *, require_payment_secret: bool) -> Invoice:
    if len(invoice) > MAX_INVOICE_LENGTH:
        raise InvoiceError("invalid_length", f"invoice longer than {MAX_INVOICE_LENGTH} chars")
    hrp, data = _bech32_decode(invoice)
    network, amount_msat = _parse_hrp(hrp)
    if len(data) < _TIMESTAMP_WORDS + _SIGNATURE_WORDS:
        raise InvoiceError("invalid_length", "data part too short for timestamp and signature")

    signed, sig_words = data[:-_SIGNATURE_WORDS], data[-_SIGNATURE_WORDS:]
    timestamp = _words_to_int(signed[:_TIMESTAMP_WORDS])

    seen: set[int] = set()
    payment_hash: str | None = None
    payment_secret: str | None = None
    description: str | None = None
    description_hash: str | None = None
    payee: bytes | None = None
    expiry: int | None = None
    min_cltv: int | None = None
    features: frozenset[int] = frozenset()
    metadata: bytes | None = None
    routes: list[tuple[RouteHintHop, ...]] = []
    fallbacks: list[FallbackAddress] = []
    extra: list[RawField] = []

    pos = _TIMESTAMP_WORDS
    while pos < len(signed):
        if len(signed) - pos < 3:
            raise InvoiceError("invalid_field", "truncated tagged field header")
        type_ = signed[pos]
        length = signed[pos + 1] << 5 | signed[pos + 2]
        body = signed[pos + 3 : pos + 3 + length]
        if len(body) != length:
            raise InvoiceError("invalid_field", f"tagged field {_CHARSET[type_]!r} overruns data")
        pos += 3 + length

        expected = _FIXED_LEN.get(type_)
        if type_ not in _KNOWN_TYPES or (expected is not None and length != expected):
            extra.append(RawField(type_, tuple(body)))
            continue
        if type_ in _SINGLE_TYPES:
            if type_ in seen:
                raise InvoiceError("invalid_field", f"duplicate {_CHARSET[type_]!r} field")
            seen.add(type_)

        if type_ == _T_PAYMENT_HASH:
            payment_hash = _words_to_bytes(body).hex()
        elif type_ == _T_SECRET:
            payment_secret = _words_to_bytes(body).hex()
        elif type_ == _T_DESCRIPTION_HASH:
            description_hash = _words_to_bytes(body).hex()
        elif type_ == _T_PAYEE:
            payee = _words_to_bytes(body)
            try:
                PublicKey(payee)
            except ValueError:
                raise InvoiceError("invalid_field", "n is not a valid public key") from None
        elif type_ == _T_DESCRIPTION:
            try:
                description = _words_to_bytes(body).decode("utf-8")
            except UnicodeDecodeError:
                raise InvoiceError("invalid_field", "description is not valid UTF-8") from None
        elif type_ == _T_EXPIRY:
            expiry = _parse_u64(body, "expiry")
        elif type_ == _T_MIN_CLTV:
            min_cltv = _parse_u64(body, "min_final_cltv_expiry_delta")
        elif type_ == _T_FEATURES:
            bits = _words_to_int(body)
            features = frozenset(i for i in range(bits.bit_length()) if bits >> i & 1)
        elif type_ == _T_METADATA:
            metadata = _words_to_bytes(body)
        elif type_ == _T_ROUTE:
            routes.append(_parse_route(body))
        else:  # _T_FALLBACK
            fb = _parse_fallback(body)
            if fb is None:
                extra.append(RawField(type_, tuple(body)))
            else:
                fallbacks.append(fb)

    sig = _words_to_bytes(sig_words)
    recovered = _recover_payee(hrp, signed, sig)
    if payee is not None and payee != recovered:
        raise InvoiceError("invalid_signature", "signature does not match the n field")

    if payment_hash is None:
        raise InvoiceError("missing_field", "no valid payment hash (p)")
    if description is None and description_hash is None:
        raise InvoiceError("missing_field", "neither description (d) nor description hash (h)")
    if description is not None and description_hash is not None:
        raise InvoiceError("invalid_field", "both description (d) and description hash (h)")
    unknown_even = sorted(b for b in features if b % 2 == 0 and b not in KNOWN_FEATURE_BITS)
    if unknown_even:
        raise InvoiceError(
            "unknown_required_feature", f"unknown required feature bits {unknown_even}"
        )
    if features & {16, 17} and not features & {14, 15}:
        raise InvoiceError("invalid_field", "basic_mpp set without its payment_secret dependency")
    if payment_secret is None and (require_payment_secret or 14 in features):
        raise InvoiceError("missing_field", "no valid payment secret (s)")

    return Invoice(
        network=network,
        amount_msat=amount_msat,
        timestamp=timestamp,
        payment_hash=payment_hash,
        payment_secret=payment_secret,
        description=description,
        description_hash=description_hash,
        expiry_s=DEFAULT_EXPIRY_S if expiry is None else expiry,
        expiry_given=expiry is not None,
        min_final_cltv_expiry_delta=(
            DEFAULT_MIN_FINAL_CLTV_EXPIRY_DELTA if min_cltv is None else min_cltv
        ),
        min_final_cltv_expiry_given=min_cltv is not None,
        payee_pubkey=recovered.hex(),
        payee_pubkey_given=payee is not None,
        features=features,
        route_hints=tuple(routes),
        fallbacks=tuple(fallbacks),
        metadata=metadata,
        extra_fields=tuple(extra),
        signature=sig.hex(),
        text=invoice,
    )


# ------------------------------------------------------------- writing primitives
# Used by the sim's encoder (vnode_sim/bolt11.py) and by tests that craft hostile invoices.


def _field(type_: int, words: Sequence[int]) -> list[int]:
    if len(words) > _MAX_FIELD_WORDS:
        raise InvoiceError("invalid_field", f"field {_CHARSET[type_]!r} longer than 1023 words")
    return [type_, len(words) >> 5, len(words) & 31, *words]
