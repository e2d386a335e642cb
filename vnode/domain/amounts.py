"""Amounts are integers with their unit in the name; these checks refuse everything else."""

from __future__ import annotations

MAX_AMOUNT = 2**63 - 1
MSAT_PER_SAT = 1000


def parse_amount(value: object, unit: str) -> int:
    """A positive JSON integer below 2^63. Booleans, floats (even 5.0) and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{unit} must be a JSON integer")
    if value <= 0:
        raise ValueError(f"{unit} must be positive")
    if value > MAX_AMOUNT:
        raise ValueError(f"{unit} must be below 2^63")
    return value


def sats_to_msat(amount_sats: int) -> int:
    amount_msat = amount_sats * MSAT_PER_SAT
    if amount_msat > MAX_AMOUNT:
        raise ValueError("amount_sats is too large once expressed in msat")
    return amount_msat


def msat_to_sats_floor(amount_msat: int) -> int:
    """Whole sats for display; rounds down so a shown balance is always spendable."""
    return amount_msat // MSAT_PER_SAT
