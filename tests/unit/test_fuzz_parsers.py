"""Property tests of every parser money depends on: no crash, and nothing invalid accepted.

The amounts of the API (vnode/domain/amounts.py and the request bodies of api/schemas.py), of
BOLT 11 invoices (the human-readable part's amount, and a whole signed invoice), of the node's
answers (vnode/lightning/rln.py) and of the bot's chat commands (vnode/bot/amounts.py). The CLI's
`vnode admin credit --amount` goes through parse_amount.

`make fuzz` runs this file again with VNODE_FUZZ_EXAMPLES (default 300) examples per test.
"""

from __future__ import annotations

import os
import re
import string
import time
from fractions import Fraction
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.support import examples
from vnode.api.schemas import (
    AdminMoveBody,
    LnInvoiceBody,
    SendPaymentBody,
    TransferBody,
)
from vnode.bot import amounts as bot
from vnode.domain.amounts import (
    MAX_AMOUNT,
    MSAT_PER_SAT,
    msat_to_sats_floor,
    parse_amount,
    sats_to_msat,
)
from vnode.domain.ids import BTC, MAX_USER_ID, parse_asset_id, parse_user_id
from vnode.lightning import bolt11, rln, rln_api
from vnode.lightning.base import NodeUnreachable
from vnode_sim.bolt11 import _sign_words, encode

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)
# 300 each under `make test`, fewer under the fast hypothesis profile (tests/support.examples).
EXAMPLES = int(os.environ.get("VNODE_FUZZ_EXAMPLES", str(examples(300))))
FAST = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Signing an invoice costs about a millisecond: fewer of those.
SIGNING = settings(
    max_examples=max(examples(50), EXAMPLES // 3),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
RGB = "rgb:CJkb4YZw-jRiz2sk-~PARPio-wtVYI1c-XAEYCqO-wTfvRZ8"
# Integers around every boundary that matters (0, 2^63, the sats -> msat overflow), as well as
# anywhere.
AMOUNTS = (
    st.integers()
    | st.integers(min_value=-(2**65), max_value=2**65)
    | st.sampled_from(
        [
            0,
            1,
            MAX_AMOUNT,
            MAX_AMOUNT + 1,
            MAX_AMOUNT // MSAT_PER_SAT,
            MAX_AMOUNT // MSAT_PER_SAT + 1,
            -1,
            2**64,
        ]
    )
)
AMOUNT_VALUES = JSON | AMOUNTS | st.sampled_from([RGB, BTC])


@FAST
@given(JSON)
def test_amount_parser_accepts_only_positive_integers(value: Any) -> None:
    try:
        amount = parse_amount(value, "amount")
    except ValueError:
        return
    assert type(value) is int and amount == value and 0 < amount <= MAX_AMOUNT


@FAST
@given(AMOUNTS)
def test_sats_to_msat_is_exact_or_refused(sats: int) -> None:
    try:
        msat = sats_to_msat(sats)
    except ValueError:
        assert sats * MSAT_PER_SAT > MAX_AMOUNT
        return
    assert msat == sats * MSAT_PER_SAT <= MAX_AMOUNT


@FAST
@given(st.integers(min_value=0, max_value=MAX_AMOUNT))
def test_shown_sats_are_always_spendable(msat: int) -> None:
    sats = msat_to_sats_floor(msat)
    assert sats * MSAT_PER_SAT <= msat < (sats + 1) * MSAT_PER_SAT


@FAST
@given(JSON | st.integers(min_value=-(2**70), max_value=2**70).map(str))
def test_user_id_parser_accepts_only_canonical_ids(value: Any) -> None:
    try:
        user_id = parse_user_id(value)
    except ValueError:
        return
    assert 0 < user_id <= MAX_USER_ID
    # (type checks, not ==: True == 1 and 1.0 == 1 must not pass for an id)
    assert (type(value) is int and value == user_id) or (
        type(value) is str and value in (str(user_id), f"vn_{user_id}")
    )


@FAST
@given(JSON | st.text(alphabet=string.printable, max_size=140).map(lambda t: "rgb:" + t))
def test_asset_id_parser(value: Any) -> None:
    try:
        asset_id = parse_asset_id(value)
    except ValueError:
        return
    assert asset_id == value and (asset_id == BTC or asset_id.startswith("rgb:"))


@FAST
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "from_user_id",
                "to_user_id",
                "amount_sats",
                "amount_msat",
                "asset_amount",
                "asset_id",
                "memo",
                "extra",
            ]
        ),
        AMOUNT_VALUES,
        max_size=6,
    )
)
def test_transfer_body_never_admits_an_invalid_amount(body: dict[str, Any]) -> None:
    try:
        parsed = TransferBody.model_validate_json(orjson.dumps(body))
    except (ValidationError, orjson.JSONEncodeError):
        return
    assert 0 < parsed.amount <= MAX_AMOUNT
    assert parsed.from_user_id > 0 and parsed.to_user_id > 0
    # (null is the same as absent)
    given = [k for k in ("amount_sats", "amount_msat", "asset_amount") if body.get(k) is not None]
    assert len(given) == 1 and type(body[given[0]]) is int
    scale = MSAT_PER_SAT if given[0] == "amount_sats" else 1
    assert parsed.amount == body[given[0]] * scale


@FAST
@given(
    st.dictionaries(
        st.sampled_from(
            ["user_id", "amount_msat", "amount_sats", "asset_amount", "asset_id", "reason"]
        ),
        AMOUNT_VALUES,
        max_size=6,
    )
)
def test_admin_body_never_admits_an_invalid_amount(body: dict[str, Any]) -> None:
    try:
        parsed = AdminMoveBody.model_validate_json(orjson.dumps(body))
    except (ValidationError, orjson.JSONEncodeError):
        return
    assert "amount_sats" not in body  # not a field of the admin API: refused as unknown
    amounts = [k for k in ("amount_msat", "asset_amount") if body.get(k) is not None]
    assert len(amounts) == 1 and type(body[amounts[0]]) is int
    assert parsed.amount == body[amounts[0]] and 0 < parsed.amount <= MAX_AMOUNT
    assert (amounts[0] == "asset_amount") == (parsed.asset_id != BTC)


@FAST
@given(
    st.dictionaries(
        st.sampled_from(
            ["user_id", "amt_msat", "asset_id", "asset_amount", "description", "expiry_sec"]
        ),
        AMOUNT_VALUES,
        max_size=6,
    )
)
def test_lninvoice_body_amounts(body: dict[str, Any]) -> None:
    try:
        parsed = LnInvoiceBody.model_validate_json(orjson.dumps(body))
    except (ValidationError, orjson.JSONEncodeError):
        return
    for name in ("amt_msat", "asset_amount"):
        value = getattr(parsed, name)
        assert value is None or (type(body[name]) is int and 0 < value <= MAX_AMOUNT)
    assert parsed.asset_amount is None or parsed.asset_id != BTC
    assert type(parsed.expiry_sec) is int and parsed.expiry_sec >= 1


@FAST
@given(
    st.dictionaries(
        st.sampled_from(["user_id", "invoice", "amt_msat", "fee_limit_msat"]),
        AMOUNT_VALUES,
        max_size=4,
    )
)
def test_sendpayment_body(body: dict[str, Any]) -> None:
    try:
        parsed = SendPaymentBody.model_validate_json(orjson.dumps(body))
    except (ValidationError, orjson.JSONEncodeError):
        return
    assert parsed.user_id > 0
    assert parsed.amt_msat is None or 0 < parsed.amt_msat <= MAX_AMOUNT
    assert parsed.fee_limit_msat is None or parsed.fee_limit_msat >= 0


VALID = encode(
    network=bolt11.Network.REGTEST,
    amount_msat=123_456,
    payment_hash=bytes(range(32)),
    payment_secret=bytes(32),
    timestamp=int(time.time()),
    private_key=bytes([9] * 32),
    description="fuzz",
)


@FAST
@given(st.text(max_size=200))
def test_decoder_on_arbitrary_text(text: str) -> None:
    try:
        bolt11.decode(text)
    except bolt11.InvoiceError:
        return
    pytest.fail(f"decoded arbitrary text {text!r}")


@settings(max_examples=max(examples(500), EXAMPLES), deadline=None)
@given(
    st.integers(min_value=0, max_value=len(VALID) - 1),
    st.sampled_from("qpzry9x8gf2tvdw0s3jn54khce6mua7l"),
)
def test_decoder_refuses_every_single_character_change(position: int, char: str) -> None:
    """Bech32's checksum catches any one changed character: a mutated invoice never decodes
    to something else (and the decoder raises only InvoiceError)."""
    mutated = VALID[:position] + char + VALID[position + 1 :]
    if mutated == VALID:
        return
    with pytest.raises(bolt11.InvoiceError):
        bolt11.decode(mutated)


# ------------------------------------------------------------------ BOLT 11 amounts

_HRP_MULTIPLIER_PICO = {"": 10**12, "m": 10**9, "u": 10**6, "n": 10**3, "p": 1}
_MAX_INVOICE_MSAT = 21_000_000 * 100_000_000 * 1000


def _hrp_amount_oracle(text: str) -> int | None:
    """BOLT 11's amount, written from the spec: digits without a leading zero, an optional
    multiplier, a whole number of millisatoshis, at most 21 million BTC. None: refused."""
    found = re.fullmatch(r"([1-9][0-9]*)([munp]?)", text)
    if found is None:
        return None
    pico = int(found.group(1)) * _HRP_MULTIPLIER_PICO[found.group(2)]
    if pico % 10 or not 0 < pico // 10 <= _MAX_INVOICE_MSAT:
        return None
    return pico // 10


AMOUNT_TEXT = (
    st.text(alphabet="0123456789munpxb", max_size=40)
    | st.from_regex(r"[0-9]{1,25}[munp]?", fullmatch=True)
    | st.text(max_size=12)
)


@FAST
@given(AMOUNT_TEXT)
def test_invoice_amount_parser_matches_the_spec(text: str) -> None:
    # Directly: through decode() random text never gets past the checksum and the signature.
    expected = _hrp_amount_oracle(text)
    try:
        network, amount = bolt11._parse_hrp("lnbcrt" + text)
    except bolt11.InvoiceError:
        assert expected is None or text == "", text
        return
    assert network == "regtest"
    assert amount == expected or (text == "" and amount is None), text


@FAST
@given(st.integers(min_value=1, max_value=_MAX_INVOICE_MSAT))
def test_invoice_amount_round_trip(msat: int) -> None:
    assert bolt11._parse_hrp("lnbc" + bolt11._encode_amount(msat)) == ("bitcoin", msat)


_SIGNED_WORDS = bolt11._bech32_decode(VALID)[1][:-104]  # the data part without its signature


@SIGNING
@given(AMOUNT_TEXT)
def test_signed_invoice_of_any_amount_decodes_to_that_amount_or_nothing(text: str) -> None:
    """A correctly signed invoice whose amount is any text: decode() gives the spec's amount
    or raises InvoiceError, nothing else."""
    invoice = _sign_words("lnbcrt" + text, _SIGNED_WORDS, bytes([9] * 32))
    expected = _hrp_amount_oracle(text)
    try:
        decoded = bolt11.decode(invoice)
    except bolt11.InvoiceError:
        assert expected is None and text != "", text
        return
    assert decoded.amount_msat == expected, text


# ------------------------------------------------------------------ the node's answers


@FAST
@given(JSON | AMOUNTS)
def test_node_answer_amounts_are_non_negative_integers(value: Any) -> None:
    channel = {"is_usable": True, "outbound_balance_msat": 0, "asset_local_amount": value}
    try:
        parsed = rln._read(rln_api.Channel, channel, "fuzz").asset_local_amount
    except NodeUnreachable:  # a malformed answer: the payment stays pending, nothing moves
        assert not (type(value) is int and 0 <= value <= 2**63 - 1) and value is not None
        return
    assert parsed == value and (value is None or (type(value) is int and 0 <= value <= 2**63 - 1))


@FAST
@given(
    st.lists(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["Fungible", "Other"]) | JSON, "value": JSON | AMOUNTS}
        ),
        max_size=4,
    )
    | JSON
)
def test_received_rgb_amount(assignments: Any) -> None:
    try:
        transfer = {
            "idx": 1,
            "status": "Settled",
            "kind": "ReceiveBlind",
            "assignments": assignments,
        }
        total = rln._read(rln_api.Transfer, transfer, "fuzz").received
    except NodeUnreachable:
        return
    fungible = [a["value"] for a in assignments if a["type"] == "Fungible"]
    assert all(type(v) is int and v >= 0 for v in fungible)
    assert total == sum(fungible)


# ------------------------------------------------------------------ the bot's chat amounts

_NUMBER = re.compile(r"\s*([0-9][0-9,_]*(?:\.[0-9]+)?|\.[0-9]+)")
# What one typed unit can be worth in msat: msat, sat, k msat, m msat / k sat, m sat, btc.
_SCALES = {1, 10**3, 10**6, 10**9, 10**11}
_UNIT_WORDS = [
    "",
    "sat",
    "sats",
    "msat",
    "msats",
    "btc",
    "k",
    "m",
    "k sats",
    "ksat",
    "m msat",
    "satoshis",
    "millisats",
    "BTC",
    "Sats",
    "kk",
    "x",
    "k btc",
    "e3",
    "bits",
]
CHAT_AMOUNT = (
    st.builds(
        lambda n, sep, u: f"{n}{sep}{u}",
        st.from_regex(
            r"(0|[1-9][0-9]{0,30}|[0-9]{1,3}([,_][0-9]{3}){1,6})(\.[0-9]{1,40})?"
            r"|\.[0-9]{1,20}",
            fullmatch=True,
        ),
        st.sampled_from(["", " ", "  "]),
        st.sampled_from(_UNIT_WORDS),
    )
    # A tiny fraction far down: 28 significant digits is where decimal arithmetic rounds.
    | st.builds(
        lambda whole, zeros, digit, u: f"{whole}.{'0' * zeros}{digit} {u}",
        st.integers(0, 10**6),
        st.integers(0, 40),
        st.integers(1, 9),
        st.sampled_from(["sats", "msat", "btc", "k sats", ""]),
    )
    | st.text(max_size=30)
    | st.text(alphabet="0123456789.,_ kmsatbcKM-+e", max_size=30)
)


def _typed_number(text: str) -> Fraction:
    found = _NUMBER.match(text)
    assert found is not None, text
    return Fraction(found.group(1).replace(",", "").replace("_", ""))


@FAST
@given(CHAT_AMOUNT)
def test_chat_amount_is_exactly_what_was_typed_or_refused(text: str) -> None:
    try:
        msat = bot.parse_msat(text)
    except bot.AmountError:
        return
    assert type(msat) is int and 0 < msat <= bot.MAX_MSAT, text
    # Nothing rounded: the typed number times its unit is exactly the result.
    assert msat / _typed_number(text) in _SCALES, (text, msat)


@FAST
@given(st.integers(min_value=1, max_value=bot.MAX_MSAT // 1000))
def test_chat_amount_round_trip_whole_sats(sats: int) -> None:
    msat = sats * 1000
    assert bot.parse_msat(bot.format_msat(msat)) == msat


@FAST
@given(CHAT_AMOUNT | st.from_regex(r"[0-9]{1,25}\s?[kmKM]?", fullmatch=True))
def test_chat_units_are_whole_and_exact(text: str) -> None:
    try:
        units = bot.parse_units(text)
    except bot.AmountError:
        return
    assert type(units) is int and 0 < units <= 2**63 - 1, text
    assert units / _typed_number(text) in {1, 10**3, 10**6}, (text, units)


@FAST
@given(st.integers(min_value=1, max_value=2**63 - 1))
def test_chat_units_round_trip(units: int) -> None:
    assert bot.parse_units(f"{units:,}") == units


@FAST
@given(
    st.lists(
        st.sampled_from(
            ["sat", "sats", "msat", "btc", "k", "m", "K", "5", "0.5", "@bob", "5k", "tip"]
        )
        | st.text(max_size=8).filter(lambda w: w and not any(c.isspace() for c in w)),
        max_size=5,
    )
)
def test_take_amount_splits_without_losing_words(words: list[str]) -> None:
    """(Words come from str.split(): no spaces inside.)"""
    try:
        amount, rest = bot.take_amount(words)
    except bot.AmountError:
        assert not words
        return
    taken = len(words) - len(rest)
    assert 1 <= taken <= 3 and rest == words[taken:] and amount == " ".join(words[:taken])
