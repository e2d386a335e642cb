"""The fee-reserve policy: the most an external payment can cost, known before it is sent."""

from __future__ import annotations

from vnode.settings import Settings

# Every RGB Lightning payment carries at least this much BTC with the asset (RLN rgb_htlc_min).
RGB_MIN_HTLC_MSAT = 3_000_000


def fee_reserve_msat(amount_msat: int, *, base_msat: int, ppm: int, minimum_msat: int = 0) -> int:
    """max(minimum, base + amount * ppm / 1e6), rounded up: rounding never favours the user.
    With the defaults (50 sat + 1%) it covers LDK's default routing-fee cap (M4)."""
    proportional = -(-amount_msat * ppm // 1_000_000)
    return max(minimum_msat, base_msat + proportional)


def settings_reserve_msat(settings: Settings, amount_msat: int) -> int:
    """The reserve the settings ask for (`Settings.model_construct()`: the defaults)."""
    return fee_reserve_msat(
        amount_msat,
        base_msat=settings.fee_reserve_base_msat,
        ppm=settings.fee_reserve_ppm,
        minimum_msat=settings.fee_reserve_min_msat,
    )
