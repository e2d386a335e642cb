"""The fee-reserve policy: the most an external payment can cost, known before it is sent."""

from __future__ import annotations

# Every RGB Lightning payment carries at least this much BTC with the asset (RLN rgb_htlc_min).
RGB_MIN_HTLC_MSAT = 3_000_000


def fee_reserve_msat(amount_msat: int, *, minimum_msat: int, ppm: int) -> int:
    """max(minimum, amount * ppm / 1e6), rounded up: rounding never favours the user."""
    proportional = -(-amount_msat * ppm // 1_000_000)
    return max(minimum_msat, proportional)
