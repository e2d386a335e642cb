"""Checking an invoice before anyone pays it: every rule that has cost others money."""

from __future__ import annotations

import time

from vnode.errors import ApiError, ErrorCode
from vnode.lightning import bolt11
from vnode.lightning.base import Network

# Whatever the configured horizon, no expiry may reach year 10000: no client decodes it.
LAST_EXPIRY_S = 253_402_300_799  # 9999-12-31T23:59:59Z


def check_invoice_text(
    invoice: str, *, network: Network, expiry_horizon_s: int, now: float | None = None
) -> bolt11.Invoice:
    """The rules that hold whatever the amount: a valid invoice, our network, not expired,
    and not expiring further ahead than a node could hold a payment (security review H1)."""
    try:
        decoded = bolt11.decode(invoice.strip())
    except bolt11.InvoiceError as exc:
        raise ApiError(ErrorCode.INVALID_INVOICE, f"{exc.code}: {exc}") from None
    if decoded.network != network.value:
        raise ApiError(
            ErrorCode.WRONG_NETWORK,
            f"the invoice is for {decoded.network}; this node is on {network.value}",
        )
    current = time.time() if now is None else now
    if decoded.is_expired(current):
        raise ApiError(ErrorCode.INVOICE_EXPIRED)
    if decoded.expires_at > min(current + expiry_horizon_s, LAST_EXPIRY_S):
        raise ApiError(
            ErrorCode.INVOICE_EXPIRY_TOO_FAR,
            f"the invoice expires {decoded.expires_at - current:.0f} s from now; "
            f"this service pays invoices expiring within {expiry_horizon_s} s",
        )
    return decoded


def payable_amount(decoded: bolt11.Invoice, amt_msat: int | None, *, max_payment_msat: int) -> int:
    """The amount that will be paid: the invoice's, or the payer's for an amountless one."""
    if decoded.amount_msat is None:
        if amt_msat is None:
            raise ApiError(ErrorCode.AMOUNT_REQUIRED)
        amount = amt_msat
    else:
        if amt_msat is not None and amt_msat != decoded.amount_msat:
            raise ApiError(
                ErrorCode.AMOUNT_MISMATCH,
                f"the invoice asks {decoded.amount_msat} msat, amt_msat is {amt_msat}",
            )
        amount = decoded.amount_msat
    if amount > max_payment_msat:
        raise ApiError(
            ErrorCode.AMOUNT_TOO_LARGE,
            f"{amount} msat is above the per-payment limit of {max_payment_msat}",
        )
    return amount
