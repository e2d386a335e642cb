"""Tests for vnode.lightning.bolt11 (the reader) and vnode_sim.bolt11 (the writer): spec vectors,
strictness, encode/decode round trips."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from coincurve import PrivateKey
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.support import examples
from tests.unit.lightning.bolt11_vectors import (
    CURRENT_INVALID,
    CURRENT_VALID,
    LEGACY_INVALID,
    LEGACY_VALID,
    LONG_DESC,
    PROPOSED_INVALID,
    SPEC_HASH,
    SPEC_PRIVKEY,
    SPEC_PUBKEY,
    SPEC_SECRET,
    TS,
)
from vnode.lightning import bolt11
from vnode.lightning.bolt11 import (
    FallbackAddress,
    Invoice,
    InvoiceError,
    RawField,
    RouteHintHop,
    decode,
)
from vnode_sim.bolt11 import _sign_words, encode

OTHER_PRIVKEY = bytes.fromhex("11" * 32)
CURVE_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _observed(inv: Invoice) -> dict[str, Any]:
    return {
        "network": inv.network,
        "amount_msat": inv.amount_msat,
        "timestamp": inv.timestamp,
        "payment_hash": inv.payment_hash,
        "payment_secret": inv.payment_secret,
        "description": inv.description,
        "description_hash": inv.description_hash,
        "expiry_s": inv.expiry_s,
        "expiry_given": inv.expiry_given,
        "min_final_cltv_expiry_delta": inv.min_final_cltv_expiry_delta,
        "payee_pubkey": inv.payee_pubkey,
        "features": inv.features,
        "fallbacks": tuple((f.version, f.program.hex()) for f in inv.fallbacks),
        "route_hints": tuple(
            tuple(
                (
                    h.pubkey,
                    h.short_channel_id,
                    h.fee_base_msat,
                    h.fee_proportional_millionths,
                    h.cltv_expiry_delta,
                )
                for h in route
            )
            for route in inv.route_hints
        ),
        "metadata": inv.metadata,
        "extra_field_count": len(inv.extra_fields),
    }


def _craft(
    fields: list[list[int]],
    *,
    hrp: str = "lnbc",
    key: bytes = SPEC_PRIVKEY,
    timestamp: int = TS,
) -> str:
    """Sign arbitrary tagged fields, so a test isolates exactly one rule."""
    words = [(timestamp >> 5 * (6 - i)) & 31 for i in range(7)]
    for f in fields:
        words += f
    return _sign_words(hrp, words, key)


def _bytes_field(type_: int, data: bytes) -> list[int]:
    return bolt11._field(type_, bolt11._bytes_to_words(data))


P_FIELD = _bytes_field(1, bytes.fromhex(SPEC_HASH))
S_FIELD = _bytes_field(16, bytes.fromhex(SPEC_SECRET))
D_FIELD = _bytes_field(13, b"coffee")
H_FIELD = _bytes_field(23, hashlib.sha256(b"coffee").digest())


def _features_field(*bits: int) -> list[int]:
    return bolt11._field(5, bolt11._int_to_words(sum(1 << b for b in bits)))


def _code(invoice: str, **kwargs: Any) -> str:
    with pytest.raises(InvoiceError) as info:
        decode(invoice, **kwargs)
    return info.value.code


# ------------------------------------------------------------------ spec vectors


@pytest.mark.parametrize(
    ("invoice", "expected"),
    [pytest.param(inv, exp, id=name) for name, inv, exp in CURRENT_VALID + LEGACY_VALID],
)
def test_spec_valid_vectors(invoice: str, expected: dict[str, Any]) -> None:
    assert _observed(decode(invoice)) == expected


@pytest.mark.parametrize(
    ("invoice", "code"),
    [
        pytest.param(inv, code, id=name)
        for name, inv, code in CURRENT_INVALID + LEGACY_INVALID + PROPOSED_INVALID
    ],
)
def test_spec_invalid_vectors(invoice: str, code: str) -> None:
    assert _code(invoice) == code


def test_vector_counts() -> None:
    assert (len(CURRENT_VALID), len(LEGACY_VALID)) == (14, 13)
    assert (len(CURRENT_INVALID), len(LEGACY_INVALID), len(PROPOSED_INVALID)) == (8, 4, 2)


def test_description_hash_check_and_expiry() -> None:
    hashed = decode(CURRENT_VALID[3][1])
    assert hashed.matches_description(LONG_DESC)
    assert not hashed.matches_description(LONG_DESC + " ")
    coffee = decode(CURRENT_VALID[1][1])
    assert coffee.expires_at == TS + 60
    assert coffee.is_expired(now=TS + 60)
    assert not coffee.is_expired(now=TS + 59)
    assert not coffee.matches_description("1 cup coffee")  # no h field to check against


def test_route_hint_scid_formatting() -> None:
    pico = decode(CURRENT_VALID[9][1])
    assert pico.route_hints[0][0].short_channel_id_str == "589390x3312x1"


def test_require_payment_secret_rejects_legacy() -> None:
    legacy = LEGACY_VALID[0][1]
    assert decode(legacy).payment_secret is None
    assert _code(legacy, require_payment_secret=True) == "missing_field"
    assert decode(CURRENT_VALID[0][1], require_payment_secret=True).payment_secret == SPEC_SECRET


# ------------------------------------------------------------- bech32 / checksum


@given(pos=st.integers(min_value=5, max_value=300), repl=st.sampled_from(bolt11._CHARSET))
@settings(max_examples=examples(100))
def test_tampered_character_fails_checksum(pos: int, repl: str) -> None:
    invoice = CURRENT_VALID[0][1]
    pos = invoice.index("1") + 1 + pos % (len(invoice) - invoice.index("1") - 1)
    if invoice[pos] == repl:
        repl = "q" if repl != "q" else "p"
    assert _code(invoice[:pos] + repl + invoice[pos + 1 :]) == "invalid_checksum"


def test_bech32m_checksum_rejected() -> None:
    hrp, words = bolt11._bech32_decode(CURRENT_VALID[0][1])
    poly = bolt11._polymod([*bolt11._hrp_expand(hrp), *words, 0, 0, 0, 0, 0, 0]) ^ 0x2BC830A3
    checksum = "".join(bolt11._CHARSET[(poly >> 5 * (5 - i)) & 31] for i in range(6))
    bech32m = hrp + "1" + "".join(bolt11._CHARSET[w] for w in words) + checksum
    assert _code(bech32m) == "invalid_checksum"


@pytest.mark.parametrize(
    ("invoice", "code"),
    [
        ("", "invalid_bech32"),
        ("lnbc1qqqqqq", "invalid_checksum"),
        (" " + CURRENT_VALID[0][1], "invalid_bech32"),
        (CURRENT_VALID[0][1] + "\n", "invalid_bech32"),
        (CURRENT_VALID[0][1].replace("qqqsyq", "qqqsbq", 1), "invalid_bech32"),  # 'b' not in set
        ("lightning:" + CURRENT_VALID[0][1], "invalid_checksum"),
        ("lnbc1" + "q" * 8000, "invalid_length"),
    ],
)
def test_malformed_strings(invoice: str, code: str) -> None:
    assert _code(invoice) == code


def test_non_string_rejected() -> None:
    with pytest.raises(InvoiceError) as info:
        decode(b"lnbc1")  # type: ignore[arg-type]
    assert info.value.code == "invalid_bech32"


# ---------------------------------------------------------------------- amounts


@pytest.mark.parametrize(
    ("hrp", "msat"),
    [
        ("lnbc10p", 1),
        ("lnbc9990p", 999),
        ("lnbc10n", 1000),
        ("lnbc10010p", 1001),
        ("lnbc1m", 100_000_000),
        ("lnbc25000u", 2_500_000_000),  # non-shortest multiplier: spec says parse it
        ("lnbc21000000", 21_000_000 * 10**11),
        ("lnbc", None),
    ],
)
def test_amounts_accepted(hrp: str, msat: int | None) -> None:
    assert decode(_craft([P_FIELD, S_FIELD, D_FIELD], hrp=hrp)).amount_msat == msat


@pytest.mark.parametrize(
    "hrp",
    [
        "lnbc1p",  # 0.1 msat
        "lnbc2500000001p",
        "lnbc0",
        "lnbc0p",
        "lnbc025m",
        "lnbc00",
        "lnbc25mm",
        "lnbc25m0",
        "lnbc21000001",  # more than 21M BTC
        "lnbc" + "9" * 40,
        "lnbc\u0661m",  # Arabic-Indic digit: must not pass as a digit
    ],
)
def test_amounts_rejected(hrp: str) -> None:
    invoice = _craft([P_FIELD, S_FIELD, D_FIELD], hrp=hrp)
    # a non-ASCII hrp never reaches amount parsing: bech32 only allows US-ASCII
    assert _code(invoice) == ("invalid_amount" if hrp.isascii() else "invalid_bech32")


@pytest.mark.parametrize(
    ("hrp", "network"),
    [("lnbc", "bitcoin"), ("lntb", "testnet"), ("lntbs", "signet"), ("lnbcrt", "regtest")],
)
def test_networks(hrp: str, network: str) -> None:
    assert decode(_craft([P_FIELD, S_FIELD, D_FIELD], hrp=hrp + "10n")).network == network


@pytest.mark.parametrize("hrp", ["lnxy10n", "lnsb", "bc10n", "lnbcrtx", "ln10n", "lnbcx"])
def test_unknown_network(hrp: str) -> None:
    assert _code(_craft([P_FIELD, S_FIELD, D_FIELD], hrp=hrp)) == "unknown_network"


# ------------------------------------------------------------------- signatures


def test_n_field_of_other_key_fails() -> None:
    other_pub = PrivateKey(OTHER_PRIVKEY).public_key.format()
    invoice = _craft([P_FIELD, S_FIELD, D_FIELD, _bytes_field(19, other_pub)])
    assert _code(invoice) == "invalid_signature"


def test_n_field_of_signing_key_ok() -> None:
    own_pub = PrivateKey(SPEC_PRIVKEY).public_key.format()
    inv = decode(_craft([P_FIELD, S_FIELD, D_FIELD, _bytes_field(19, own_pub)]))
    assert inv.payee_pubkey == SPEC_PUBKEY
    assert inv.payee_pubkey_given


def test_n_field_not_a_point_fails() -> None:
    invoice = _craft([P_FIELD, S_FIELD, D_FIELD, _bytes_field(19, b"\x02" + b"\xff" * 32)])
    assert _code(invoice) == "invalid_field"


def test_high_s_signature_rejected() -> None:
    hrp, words = bolt11._bech32_decode(CURRENT_VALID[0][1])
    sig = bolt11._words_to_bytes(words[-104:])
    s = int.from_bytes(sig[32:64], "big")
    # (r, n-s) with the flipped parity recovers the same key: only the low-S rule stops it.
    malleated = sig[:32] + (CURVE_N - s).to_bytes(32, "big") + bytes([sig[64] ^ 1])
    invoice = bolt11._bech32_encode(hrp, words[:-104] + bolt11._bytes_to_words(malleated))
    assert _code(invoice) == "invalid_signature"


def test_recovery_id_out_of_range() -> None:
    hrp, words = bolt11._bech32_decode(CURRENT_VALID[0][1])
    sig = bolt11._words_to_bytes(words[-104:])
    invoice = bolt11._bech32_encode(
        hrp, words[:-104] + bolt11._bytes_to_words(sig[:64] + bytes([4]))
    )
    assert _code(invoice) == "invalid_signature"


def test_signature_covers_hrp() -> None:
    hrp, words = bolt11._bech32_decode(CURRENT_VALID[1][1])
    # Re-checksum with a bigger amount: checksum is fine, the signature must not be.
    inflated = bolt11._bech32_encode(hrp.replace("2500u", "2500m"), words)
    inv = decode(inflated)
    assert inv.payee_pubkey != SPEC_PUBKEY  # recovery yields some unrelated key
    own_pub = PrivateKey(SPEC_PRIVKEY).public_key.format()
    pinned = _craft([P_FIELD, S_FIELD, D_FIELD, _bytes_field(19, own_pub)], hrp="lnbc2500u")
    _, words2 = bolt11._bech32_decode(pinned)
    assert _code(bolt11._bech32_encode("lnbc2500m", words2)) == "invalid_signature"


# --------------------------------------------------------------- tagged fields


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ([S_FIELD, D_FIELD], "missing_field"),
        ([P_FIELD, S_FIELD], "missing_field"),
        ([P_FIELD, S_FIELD, D_FIELD, H_FIELD], "invalid_field"),
        ([P_FIELD, P_FIELD, S_FIELD, D_FIELD], "invalid_field"),
        ([P_FIELD, S_FIELD, S_FIELD, D_FIELD], "invalid_field"),
        ([P_FIELD, S_FIELD, D_FIELD, D_FIELD], "invalid_field"),
        ([P_FIELD, S_FIELD, H_FIELD, H_FIELD], "invalid_field"),
        (
            [P_FIELD, S_FIELD, D_FIELD, bolt11._field(6, [1]), bolt11._field(6, [2])],
            "invalid_field",
        ),
        # p of 51 words is skipped, so the invoice has no payment hash at all
        ([bolt11._field(1, [0] * 51), S_FIELD, D_FIELD], "missing_field"),
        ([P_FIELD, S_FIELD, D_FIELD, _features_field(24, 14, 8)], "unknown_required_feature"),
        ([P_FIELD, S_FIELD, D_FIELD, _features_field(16)], "invalid_field"),  # mpp w/o secret
        ([P_FIELD, D_FIELD, _features_field(8, 14)], "missing_field"),  # secret required, no s
        ([P_FIELD, S_FIELD, _bytes_field(13, b"\xff\xfe")], "invalid_field"),
        ([P_FIELD, S_FIELD, D_FIELD, bolt11._field(6, [31] * 13)], "invalid_field"),  # > u64
        ([P_FIELD, S_FIELD, D_FIELD, bolt11._field(24, [31] * 13)], "invalid_field"),
        ([P_FIELD, S_FIELD, D_FIELD, bolt11._field(3, [0] * 10)], "invalid_field"),  # bad r
        ([P_FIELD, S_FIELD, D_FIELD, bolt11._field(3, [])], "invalid_field"),
        ([P_FIELD, S_FIELD, D_FIELD, bolt11._field(9, [])], "invalid_field"),  # empty f
        ([P_FIELD, S_FIELD, D_FIELD, bolt11._field(9, [17, 0, 0])], "invalid_field"),
        ([P_FIELD, S_FIELD, D_FIELD, [1, 0]], "invalid_field"),  # truncated header
    ],
)
def test_field_rules(fields: list[list[int]], code: str) -> None:
    assert _code(_craft(fields)) == code


def test_nonzero_padding_rejected() -> None:
    p_words = P_FIELD[3:]
    assert p_words[-1] & 0b1111 == 0
    bad_p = bolt11._field(1, [*p_words[:-1], p_words[-1] | 1])
    assert _code(_craft([bad_p, S_FIELD, D_FIELD])) == "invalid_field"
    # d with a whole spare word of padding is not canonical either
    assert _code(_craft([P_FIELD, S_FIELD, bolt11._field(13, [*D_FIELD[3:], 0])])) == (
        "invalid_field"
    )


def test_skipped_and_unknown_fields_are_kept() -> None:
    unknown_fallback = bolt11._field(9, [19, 1, 2, 3])
    short_hash = bolt11._field(23, [0] * 51)
    invoice = _craft([P_FIELD, S_FIELD, D_FIELD, unknown_fallback, short_hash])
    inv = decode(invoice)
    assert [(f.type, f.tag) for f in inv.extra_fields] == [(9, "f"), (23, "h")]
    assert inv.fallbacks == ()
    assert inv.description_hash is None


def test_unknown_odd_feature_ignored_and_empty_expiry() -> None:
    inv = decode(_craft([P_FIELD, S_FIELD, D_FIELD, _features_field(8, 14, 17, 25, 101)]))
    assert inv.features == frozenset({8, 14, 17, 25, 101})
    zero_expiry = decode(_craft([P_FIELD, S_FIELD, D_FIELD, bolt11._field(6, [])]))
    assert (zero_expiry.expiry_s, zero_expiry.expiry_given) == (0, True)


# ------------------------------------------------------------------------ encode

KNOWN_OK_FEATURES = st.sets(st.sampled_from([8, 9, 15, 16, 17, 48, 49, 99, 101])).map(
    lambda s: frozenset(s | {14})
)


@given(
    amount=st.one_of(st.none(), st.integers(min_value=1, max_value=2**40)),
    network=st.sampled_from(list(bolt11.Network)),
    expiry=st.one_of(st.none(), st.integers(min_value=0, max_value=2**64 - 1)),
    cltv=st.integers(min_value=0, max_value=2**16),
    timestamp=st.integers(min_value=0, max_value=2**35 - 1),
    secret_key=st.integers(min_value=1, max_value=CURVE_N - 1),
    description=st.one_of(st.text(max_size=100), st.none()),
    payment_hash=st.binary(min_size=32, max_size=32),
    features=KNOWN_OK_FEATURES,
    with_n=st.booleans(),
)
@example(
    amount=1,
    network=bolt11.Network.BITCOIN,
    expiry=None,
    cltv=18,
    timestamp=TS,
    secret_key=1,
    description="",
    payment_hash=b"\0" * 32,
    features=frozenset({14}),
    with_n=False,
)
@example(
    amount=999,
    network=bolt11.Network.TESTNET,
    expiry=0,
    cltv=0,
    timestamp=0,
    secret_key=2,
    description=None,
    payment_hash=b"\1" * 32,
    features=frozenset({14}),
    with_n=True,
)
@example(
    amount=1000,
    network=bolt11.Network.SIGNET,
    expiry=3600,
    cltv=144,
    timestamp=2**35 - 1,
    secret_key=CURVE_N - 1,
    description="x",
    payment_hash=b"\2" * 32,
    features=frozenset({8, 14, 17}),
    with_n=False,
)
@example(
    amount=1001,
    network=bolt11.Network.REGTEST,
    expiry=60,
    cltv=40,
    timestamp=TS,
    secret_key=3,
    description="ナンセンス 1杯",
    payment_hash=b"\3" * 32,
    features=frozenset({14}),
    with_n=False,
)
@settings(max_examples=examples(150), deadline=None)
def test_encode_decode_round_trip(
    amount: int | None,
    network: bolt11.Network,
    expiry: int | None,
    cltv: int,
    timestamp: int,
    secret_key: int,
    description: str | None,
    payment_hash: bytes,
    features: frozenset[int],
    with_n: bool,
) -> None:
    key = secret_key.to_bytes(32, "big")
    desc_hash = None if description is not None else hashlib.sha256(b"terms").hexdigest()
    invoice = encode(
        network=network,
        amount_msat=amount,
        payment_hash=payment_hash,
        payment_secret=SPEC_SECRET,
        description=description,
        description_hash=desc_hash,
        expiry_s=expiry,
        min_final_cltv_expiry_delta=cltv,
        timestamp=timestamp,
        private_key=key,
        features=features,
        include_payee_pubkey=with_n,
    )
    inv = decode(invoice, require_payment_secret=True)
    assert inv.network == network
    assert inv.amount_msat == amount
    assert inv.timestamp == timestamp
    assert inv.payment_hash == payment_hash.hex()
    assert inv.payment_secret == SPEC_SECRET
    assert (inv.description, inv.description_hash) == (description, desc_hash)
    assert inv.expiry_s == (3600 if expiry is None else expiry)
    assert inv.expiry_given is (expiry is not None)
    assert inv.min_final_cltv_expiry_delta == cltv
    assert inv.features == features
    assert inv.payee_pubkey == PrivateKey(key).public_key.format().hex()
    assert inv.payee_pubkey_given is with_n
    assert decode(invoice.upper()) == inv  # BIP173: upper case is the same invoice


@pytest.mark.parametrize(
    ("msat", "hrp"),
    [
        (1, "lnbc10p"),
        (999, "lnbc9990p"),
        (1000, "lnbc10n"),
        (1001, "lnbc10010p"),
        (100, "lnbc1n"),
        (100_000, "lnbc1u"),
        (250_000_000, "lnbc2500u"),
        (2_000_000_000, "lnbc20m"),
        (10**11, "lnbc1"),
        (2**40, "lnbc10995116277760p"),
    ],
)
def test_encode_uses_shortest_multiplier(msat: int, hrp: str) -> None:
    invoice = encode(
        network=bolt11.Network.BITCOIN,
        amount_msat=msat,
        payment_hash=SPEC_HASH,
        payment_secret=SPEC_SECRET,
        description="x",
        timestamp=TS,
        private_key=SPEC_PRIVKEY,
    )
    assert invoice[: invoice.rindex("1")] == hrp
    assert decode(invoice).amount_msat == msat


def test_encode_rgb_extra_tags_route_fallback_metadata() -> None:
    rgb_amount = RawField.from_bytes(30, (42).to_bytes(8, "big"))
    rgb_contract = RawField.from_bytes(31, b"rgb:contract-id-bytes")
    hop = RouteHintHop(SPEC_PUBKEY, (700000 << 40) | (1 << 16) | 2, 1000, 1, 144)
    invoice = encode(
        network=bolt11.Network.REGTEST,
        amount_msat=3_000_000,
        payment_hash=SPEC_HASH,
        payment_secret=SPEC_SECRET,
        description_hash=hashlib.sha256(b"terms").digest(),
        timestamp=TS,
        private_key=SPEC_PRIVKEY,
        route_hints=[[hop, hop]],
        fallbacks=[FallbackAddress(1, b"\x07" * 32)],
        metadata=b"\x01\xfa",
        extra_tags=[rgb_amount, rgb_contract],
    )
    inv = decode(invoice)
    assert inv.extra_fields == (rgb_amount, rgb_contract)
    assert inv.extra_fields_of_type(30)[0].data_bytes() == (42).to_bytes(8, "big")
    assert inv.extra_fields_of_type(31)[0].tag == "l"
    assert inv.route_hints == ((hop, hop),)
    assert inv.route_hints[0][0].short_channel_id_str == "700000x1x2"
    assert inv.fallbacks == (FallbackAddress(1, b"\x07" * 32),)
    assert inv.metadata == b"\x01\xfa"
    assert inv.features == frozenset({8, 14, 49})  # 49 added because metadata is present
    assert inv.matches_description("terms")


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"amount_msat": 0}, "invalid_amount"),
        ({"amount_msat": 21_000_001 * 10**11}, "invalid_amount"),
        ({"description_hash": "00" * 32}, "invalid_field"),  # both d and h
        ({"description": None}, "invalid_field"),  # neither
        ({"features": {8, 14, 100}}, "unknown_required_feature"),
        ({"extra_tags": [RawField(1, (0,))]}, "invalid_field"),  # would shadow p
        ({"extra_tags": [RawField(30, (32,))]}, "invalid_field"),
        ({"payment_hash": "00" * 31}, "invalid_field"),
        ({"payment_hash": "zz" * 32}, "invalid_field"),
        ({"timestamp": 2**35}, "invalid_field"),
        ({"expiry_s": -1}, "invalid_field"),
        ({"private_key": b"\0" * 32}, "invalid_field"),
        ({"description": "x" * 640}, "invalid_field"),  # > 1023 words
        ({"fallbacks": [FallbackAddress(0, b"\0" * 21)]}, "invalid_field"),
        ({"network": "litecoin"}, "unknown_network"),
    ],
)
def test_encode_refuses_invalid_input(overrides: dict[str, Any], code: str) -> None:
    args: dict[str, Any] = {
        "network": "bitcoin",
        "amount_msat": 1000,
        "payment_hash": SPEC_HASH,
        "payment_secret": SPEC_SECRET,
        "description": "x",
        "timestamp": TS,
        "private_key": SPEC_PRIVKEY,
    }
    args.update(overrides)
    with pytest.raises(InvoiceError) as info:
        encode(**args)
    assert info.value.code == code


def test_encode_max_description_fits() -> None:
    invoice = encode(
        network=bolt11.Network.BITCOIN,
        amount_msat=None,
        payment_hash=SPEC_HASH,
        payment_secret=SPEC_SECRET,
        description="x" * 639,
        timestamp=TS,
        private_key=SPEC_PRIVKEY,
    )
    assert decode(invoice).description == "x" * 639


def test_error_is_value_error_with_stable_code() -> None:
    err = InvoiceError("invalid_amount", "boom")
    assert isinstance(err, ValueError)
    assert (err.code, err.message, str(err)) == ("invalid_amount", "boom", "invalid_amount: boom")
