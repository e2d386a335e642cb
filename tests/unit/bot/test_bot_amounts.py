"""The bot's amount parser and printer: what people type, and what is refused."""

from __future__ import annotations

import pytest

from vnode.bot.amounts import AmountError, format_msat, parse_msat, parse_units, take_amount


@pytest.mark.parametrize(
    ("text", "msat"),
    [
        ("5000", 5_000_000),
        ("5k", 5_000_000),
        ("5K", 5_000_000),
        ("1.5k", 1_500_000),
        ("2m", 2_000_000_000),
        ("5,000", 5_000_000),
        ("5_000 sats", 5_000_000),
        ("1 sat", 1000),
        ("0.0001 btc", 10_000_000),
        ("0.00000001 BTC", 1000),
        ("2500 msat", 2500),
        ("5 k sats", 5_000_000),
        ("5ksats", 5_000_000),
        (".5k", 500_000),
        ("21000000 btc", 21_000_000 * 10**11),
        ("0.5", 500),
        ("1.5 sats", 1500),
        ("0.000000001 btc", 100),
        ("1.001", 1001),
    ],
)
def test_accepted_forms(text: str, msat: int) -> None:
    assert parse_msat(text) == msat


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0",
        "-5",
        "+5",
        "1e5",
        "nan",
        "inf",
        "abc",
        "5 eur",
        "5k btc",
        "0.0005",
        "0.000000000001 btc",
        "1.5 msat",
        "1,00",
        "1,0000",
        "٣",
        "５",
        "5 mm",
        "1 sat sat",
        "21000001 btc",
        "0x10",
        "5 k k",
        "1.0000000000000000000000000001 sats",
        "1" * 65,
    ],
)
def test_refused_forms(text: str) -> None:
    with pytest.raises(AmountError):
        parse_msat(text)


@pytest.mark.parametrize(
    ("msat", "shown"),
    [
        (1000, "1 sat"),
        (5_000_000, "5,000 sats"),
        (1_234_567_000, "1,234,567 sats"),
        (1500, "1.5 sats"),
        (1, "0.001 sats"),
        (0, "0 sats"),
    ],
)
def test_printed_with_separators(msat: int, shown: str) -> None:
    assert format_msat(msat) == shown


@pytest.mark.parametrize("msat", [1, 999, 1000, 1500, 123_456_789, 21_000_000 * 10**11])
def test_what_is_printed_reads_back(msat: int) -> None:
    assert parse_msat(format_msat(msat)) == msat


def test_units_and_splitting_arguments() -> None:
    assert parse_units("1,000") == 1000 and parse_units("5k") == 5000
    for bad in ("0", "1.5", "-1", "x"):
        with pytest.raises(AmountError):
            parse_units(bad)
    assert take_amount(["0.0001", "btc", "@bob", "hi"]) == ("0.0001 btc", ["@bob", "hi"])
    assert take_amount(["5", "k", "sats", "@bob"]) == ("5 k sats", ["@bob"])
    assert take_amount(["5k", "@bob"]) == ("5k", ["@bob"])
    with pytest.raises(AmountError):
        take_amount([])
