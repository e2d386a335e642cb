"""LndHub's wire rules: bodies, numbers, the token header, Buffers, and the refusal table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vnode.errors import CATALOGUE, ErrorCode
from vnode.lndhub import credentials, wire
from vnode.lndhub.wire import LndHubError


@pytest.mark.parametrize(
    ("raw", "content_type", "expected"),
    [
        (b'{"amt": "100", "memo": "x"}', "application/json", {"amt": "100", "memo": "x"}),
        (b'{"amt": 100}', None, {"amt": 100}),
        (b"amt=100&memo=a+b", "application/x-www-form-urlencoded", {"amt": "100", "memo": "a b"}),
        (
            b"amt=100&memo=",
            "application/x-www-form-urlencoded; charset=utf-8",
            {"amt": "100", "memo": ""},
        ),
        (b"login=a&password=b", None, {"login": "a", "password": "b"}),  # curl -d, no type
        (b"", "application/json", {}),
        (b"  ", None, {}),
    ],
)
def test_bodies_json_or_form(
    raw: bytes, content_type: str | None, expected: dict[str, object]
) -> None:
    assert wire.parse_body(raw, content_type) == expected


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"text"', b"{bad json", b"42"])
def test_bodies_that_are_no_object_are_bad_arguments(raw: bytes) -> None:
    with pytest.raises(LndHubError) as refused:
        wire.parse_body(raw, "application/json")
    assert (refused.value.status, refused.value.code) == (400, wire.BAD_ARGUMENTS)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(100, 100), ("100", 100), (" 7 ", 7), (100.0, 100), (0, 0), ("", None), (None, None)],
)
def test_numbers_as_numbers_or_strings(value: object, expected: int | None) -> None:
    assert wire.integer(value, "amt") == expected


@pytest.mark.parametrize("value", [-1, "-1", "1.5", 1.5, True, "ten", "١٢", 2**53, [1], "1e3"])
def test_numbers_refused(value: object) -> None:
    with pytest.raises(LndHubError) as refused:
        wire.integer(value, "amt")
    assert refused.value.code == wire.BAD_ARGUMENTS and "amt" in refused.value.message


def test_required_number() -> None:
    with pytest.raises(LndHubError):
        wire.integer(None, "amount", required=True)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("abc", "abc"),
        (" Bearer  abc ", "abc"),
        ("Bearer ", None),
        ("", None),
        (None, None),
    ],
)
def test_token_with_or_without_bearer(header: str | None, token: str | None) -> None:
    assert wire.token_of(header) == token


def test_buffer_is_nodes_tojson() -> None:
    assert wire.buffer("00ff10") == {"type": "Buffer", "data": [0, 255, 16]}


def test_sats_rounding() -> None:
    assert (wire.sats_floor(1999), wire.sats_ceil(1999), wire.sats_ceil(2000)) == (1, 2, 2)


def test_every_refusal_maps_to_a_code_clients_know_and_never_to_bad_auth() -> None:
    known = {code.value for code in ErrorCode} | {"limit_exceeded"}
    assert set(wire.REFUSALS) <= known
    for code, (status, lndhub_code) in wire.REFUSALS.items():
        assert lndhub_code in wire.CODE_MEANINGS and lndhub_code != wire.BAD_AUTH, code
        # 5xx only where nothing was done (the node unavailable before anything moved).
        assert status < 500 or code == ErrorCode.NODE_UNAVAILABLE.value, code
    assert wire.refusal("limit_exceeded", "over").code == wire.NOT_ENOUGH_BALANCE
    assert wire.refusal(ErrorCode.INSUFFICIENT_BALANCE.value, "x").code == 2
    assert wire.refusal(ErrorCode.AMOUNT_REQUIRED.value, "x").code == wire.BAD_ARGUMENTS
    assert CATALOGUE[ErrorCode.NODE_UNAVAILABLE].status == 503


def test_passwords_are_salted_scrypt_and_tokens_sha256() -> None:
    password = credentials.new_password()
    first, second = credentials.hash_password(password, 14), credentials.hash_password(password, 14)
    assert first != second and password not in first
    assert first.startswith(f"scrypt${2**14}$8$1$")
    assert credentials.verify_password(password, first)
    # The cost travels with each hash: one made at another cost still checks.
    cheaper = credentials.hash_password(password, 10)
    assert cheaper.startswith(f"scrypt${2**10}$") and credentials.verify_password(password, cheaper)
    assert not credentials.verify_password(password + "0", first)
    assert not credentials.verify_password(password, "scrypt$garbage")
    assert len(credentials.token_hash(credentials.new_token())) == 32
    login = credentials.new_login()
    assert len(login) == 20 and not {":", "@"} & set(login + password)


@given(
    raw=st.binary(max_size=300),
    content_type=st.sampled_from(
        [None, "application/json", "application/x-www-form-urlencoded", "text/plain", ""]
    ),
)
def test_any_body_is_an_object_or_bad_arguments(raw: bytes, content_type: str | None) -> None:
    """No body a client sends can make anything but a 400 code 8 (never a 500)."""
    try:
        parsed = wire.parse_body(raw, content_type)
    except LndHubError as refused:
        assert (refused.status, refused.code) == (400, wire.BAD_ARGUMENTS)
    else:
        assert isinstance(parsed, dict)


@given(value=st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30)))
def test_any_number_field_is_a_number_or_bad_arguments(value: object) -> None:
    try:
        number = wire.integer(value, "amt")
    except LndHubError as refused:
        assert refused.code == wire.BAD_ARGUMENTS
    else:
        assert number is None or 0 <= number < 2**53
