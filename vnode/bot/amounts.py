"""Amounts as people type them in a chat, and as the bot prints them.

`5000`, `5k`, `1.5m`, `5,000 sats`, `0.0001 btc`, `2500 msat`, `1.5 sats` all parse to
millisatoshis, exactly (rational arithmetic: nothing is rounded, in either direction).
Whatever is ambiguous or odd is refused rather than guessed: fractions of a millisatoshi,
exponents, signs, non-ASCII digits, more than 21 million BTC. `format_msat` prints what
`parse_msat` reads back.
"""

from __future__ import annotations

import re
from fractions import Fraction

MSAT_PER_SAT = 1000
SATS_PER_BTC = 100_000_000
MAX_MSAT = 21_000_000 * SATS_PER_BTC * MSAT_PER_SAT
_MAX_TEXT = 64  # no real amount is longer; bounds the work on hostile input

_UNITS_MSAT = {
    "msat": 1,
    "msats": 1,
    "millisat": 1,
    "millisats": 1,
    "sat": MSAT_PER_SAT,
    "sats": MSAT_PER_SAT,
    "satoshi": MSAT_PER_SAT,
    "satoshis": MSAT_PER_SAT,
    "btc": SATS_PER_BTC * MSAT_PER_SAT,
}
_SUFFIXES = {"k": 1000, "m": 1_000_000}
# Digits with optional thousands separators (1,000,000 or 1_000_000), then a fraction.
_NUMBER = r"(?P<number>(?:[0-9]{1,3}(?:[,_][0-9]{3})+|[0-9]+)(?:\.[0-9]+)?|\.[0-9]+)"
_AMOUNT = re.compile(_NUMBER + r"\s*(?P<rest>[a-z]*(?:\s+[a-z]+)?)", re.ASCII)
_COUNT = re.compile(r"(?P<number>[0-9]{1,3}(?:[,_][0-9]{3})+|[0-9]+)\s*(?P<suffix>[km])?", re.ASCII)


class AmountError(ValueError):
    """An amount the bot will not guess at; the message is meant for the user."""


def parse_msat(text: str) -> int:
    """A Bitcoin amount in msat; a bare number means satoshis."""
    match = _AMOUNT.fullmatch(text.strip().lower()) if len(text) <= _MAX_TEXT else None
    if match is None:
        raise AmountError(f"'{_short(text)}' is not an amount. Try 5000, 5k or 0.0001 btc.")
    suffix, unit = _suffix_and_unit(match["rest"])
    value = Fraction(match["number"].replace(",", "").replace("_", ""))
    value *= _SUFFIXES.get(suffix, 1) * _UNITS_MSAT[unit]
    if value.denominator != 1:
        raise AmountError(
            "That is a fraction of a millisatoshi (0.001 sat), the smallest amount there is."
        )
    return _in_range(int(value), MAX_MSAT)


def _suffix_and_unit(rest: str) -> tuple[str, str]:
    """`sats` -> ("", "sats"); `k sats`, `ksats`, `k` -> ("k", ...). A whole word that is a
    unit wins, so `2500 msat` is millisatoshis and not 2500 mega-sat."""
    words = rest.split()
    if not words:
        return "", "sats"
    if len(words) == 1 and words[0] in _UNITS_MSAT:
        return "", words[0]
    joined = "".join(words)
    suffix, unit = joined[:1], joined[1:] or "sats"
    if suffix not in _SUFFIXES or unit not in _UNITS_MSAT:
        raise AmountError(f"Unknown unit '{_short(rest)}': use sats, msat or btc (5k = 5,000).")
    if unit == "btc":
        raise AmountError("Use either k/m or btc, not both.")
    return suffix, unit


def parse_units(text: str, max_units: int = 2**63 - 1) -> int:
    """A whole number of an RGB asset's units: `250`, `1,000`, `5k`."""
    match = _COUNT.fullmatch(text.strip().lower()) if len(text) <= _MAX_TEXT else None
    if match is None:
        raise AmountError(f"'{_short(text)}' is not a whole number of units.")
    units = int(match["number"].replace(",", "").replace("_", ""))
    return _in_range(units * _SUFFIXES.get(match["suffix"] or "", 1), max_units)


def _in_range(value: int, maximum: int) -> int:
    if value <= 0:
        raise AmountError("The amount must be more than zero.")
    if value > maximum:
        raise AmountError("That amount is larger than all the bitcoin there will ever be.")
    return value


def format_msat(msat: int) -> str:
    """`5,000 sats`, `1 sat`, `1,234.5 sats` (exact: msat are never rounded away)."""
    sats, rest = divmod(msat, MSAT_PER_SAT)
    if rest:
        fraction = f"{rest:03d}".rstrip("0")
        return f"{sats:,}.{fraction} sats"
    return f"{sats:,} sat" if sats == 1 else f"{sats:,} sats"


def format_units(units: int, asset_label: str) -> str:
    return f"{units:,} {asset_label}"


def _short(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def take_amount(words: list[str]) -> tuple[str, list[str]]:
    """Split command arguments into the amount's text and the rest: the amount is the first
    word, plus the second when that is a unit (`0.0001 btc @bob`, `5 k @bob`)."""
    if not words:
        raise AmountError("Give an amount, like 5000, 5k or 0.0001 btc.")
    if len(words) >= 2 and (words[1].lower() in _UNITS_MSAT or words[1].lower() in _SUFFIXES):
        if len(words) >= 3 and words[1].lower() in _SUFFIXES and words[2].lower() in _UNITS_MSAT:
            return " ".join(words[:3]), words[3:]
        return " ".join(words[:2]), words[2:]
    return words[0], words[1:]
