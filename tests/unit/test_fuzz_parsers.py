"""Property tests of every parser money depends on: no crash, and nothing invalid accepted."""

from __future__ import annotations

import string
import time
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from vnode.api.schemas import SendPaymentBody, TransferBody
from vnode.domain.amounts import MAX_AMOUNT, parse_amount
from vnode.domain.ids import BTC, MAX_USER_ID, parse_asset_id, parse_user_id
from vnode.lightning import bolt11

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=8,
)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(JSON)
def test_amount_parser_accepts_only_positive_integers(value: Any) -> None:
    try:
        amount = parse_amount(value, "amount")
    except ValueError:
        return
    assert type(value) is int and amount == value and 0 < amount <= MAX_AMOUNT


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
        type(value) is str and value in (str(user_id), f"vn_{user_id}"))


@FAST
@given(JSON | st.text(alphabet=string.printable, max_size=140).map(lambda t: "rgb:" + t))
def test_asset_id_parser(value: Any) -> None:
    try:
        asset_id = parse_asset_id(value)
    except ValueError:
        return
    assert asset_id == value and (asset_id == BTC or asset_id.startswith("rgb:"))


@FAST
@given(st.dictionaries(st.sampled_from(
    ["from_user_id", "to_user_id", "amount_sats", "amount_msat", "asset_amount", "asset_id",
     "memo", "extra"]), JSON | st.integers(), max_size=6))
def test_transfer_body_never_admits_an_invalid_amount(body: dict[str, Any]) -> None:
    try:
        parsed = TransferBody.model_validate_json(orjson.dumps(body))
    except (ValidationError, orjson.JSONEncodeError):
        return
    assert 0 < parsed.amount <= MAX_AMOUNT
    assert parsed.from_user_id > 0 and parsed.to_user_id > 0
    given_amounts = [k for k in ("amount_sats", "amount_msat", "asset_amount") if k in body]
    assert len(given_amounts) == 1


@FAST
@given(st.dictionaries(st.sampled_from(["user_id", "invoice", "amt_msat", "fee_limit_msat"]),
                       JSON | st.integers(), max_size=4))
def test_sendpayment_body(body: dict[str, Any]) -> None:
    try:
        parsed = SendPaymentBody.model_validate_json(orjson.dumps(body))
    except (ValidationError, orjson.JSONEncodeError):
        return
    assert parsed.user_id > 0
    assert parsed.amt_msat is None or 0 < parsed.amt_msat <= MAX_AMOUNT
    assert parsed.fee_limit_msat is None or parsed.fee_limit_msat >= 0


VALID = bolt11.encode(network="regtest", amount_msat=123_456, payment_hash=bytes(range(32)),
                      payment_secret=bytes(32), timestamp=int(time.time()),
                      private_key=bytes([9] * 32), description="fuzz")


@FAST
@given(st.text(max_size=200))
def test_decoder_on_arbitrary_text(text: str) -> None:
    try:
        bolt11.decode(text)
    except bolt11.InvoiceError:
        return
    pytest.fail(f"decoded arbitrary text {text!r}")


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=0, max_value=len(VALID) - 1),
       st.sampled_from("qpzry9x8gf2tvdw0s3jn54khce6mua7l"))
def test_decoder_refuses_every_single_character_change(position: int, char: str) -> None:
    """Bech32's checksum catches any one changed character: a mutated invoice never decodes
    to something else (and the decoder raises only InvoiceError)."""
    mutated = VALID[:position] + char + VALID[position + 1:]
    if mutated == VALID:
        return
    with pytest.raises(bolt11.InvoiceError):
        bolt11.decode(mutated)
