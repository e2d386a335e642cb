"""The payment decision rules as tables (issue 11, step 2): each row reads like a row of
docs/NODE.md ("Unknown outcomes", "Fee-reserve policy", "Invoice expiry")."""

from __future__ import annotations

import hashlib
import os
import time
from typing import cast

import asyncpg
import pytest

from vnode.errors import ApiError, ErrorCode
from vnode.keys import Signer
from vnode.lightning.base import LightningBackend, Network, PaymentOutcome, PaymentStatus
from vnode.lightning.monitor import NodeMonitor
from vnode.payments.checks import check_invoice_text
from vnode.payments.policy import RGB_MIN_HTLC_MSAT, fee_reserve_msat
from vnode.payments.receive import AssetInvoiceCommand, InvoiceCommand, InvoiceIssuer
from vnode.payments.resolve import PendingPayment, Verdict, decide
from vnode.settings import Settings
from vnode_sim import bolt11

SKEW_S = 30
NOW = 1_800_000_000.0
STARTED = NOW - 600  # the attempt started ten minutes ago
PREIMAGE = "ab" * 32
HASH = hashlib.sha256(bytes.fromhex(PREIMAGE)).hexdigest()

NOT_EXPIRED = NOW + 3600
EXPIRED = NOW - 3600
JUST_EXPIRED = NOW - SKEW_S + 1  # within the clock allowance: not yet expired

FRESH = STARTED + 5  # the node's record was updated during this attempt
STALE = STARTED - SKEW_S - 60  # an earlier attempt's record


def node_says(
    outcome: PaymentOutcome, *, preimage: str | None = None, updated_at: int = 0
) -> PaymentStatus:
    return PaymentStatus(HASH, outcome, preimage=preimage, updated_at=updated_at)


# node answer, invoice expires at -> verdict (docs/NODE.md, "Unknown outcomes")
DECISIONS = [
    (
        "succeeded, valid preimage",
        node_says(PaymentOutcome.SUCCEEDED, preimage=PREIMAGE),
        NOT_EXPIRED,
        Verdict.SUCCEEDED,
    ),
    (
        "succeeded, valid preimage, expired",
        node_says(PaymentOutcome.SUCCEEDED, preimage=PREIMAGE),
        EXPIRED,
        Verdict.SUCCEEDED,
    ),
    (
        "succeeded, upper-case preimage",
        node_says(PaymentOutcome.SUCCEEDED, preimage=PREIMAGE.upper()),
        NOT_EXPIRED,
        Verdict.SUCCEEDED,
    ),
    (
        "succeeded, no preimage",
        node_says(PaymentOutcome.SUCCEEDED),
        NOT_EXPIRED,
        Verdict.INVALID_PREIMAGE,
    ),
    (
        "succeeded, wrong preimage",
        node_says(PaymentOutcome.SUCCEEDED, preimage="00" * 32),
        EXPIRED,
        Verdict.INVALID_PREIMAGE,
    ),
    (
        "succeeded, short preimage",
        node_says(PaymentOutcome.SUCCEEDED, preimage=PREIMAGE[:62]),
        NOT_EXPIRED,
        Verdict.INVALID_PREIMAGE,
    ),
    (
        "failed during this attempt",
        node_says(PaymentOutcome.FAILED, updated_at=int(FRESH)),
        NOT_EXPIRED,
        Verdict.FAILED,
    ),
    ("failed, no date", node_says(PaymentOutcome.FAILED), NOT_EXPIRED, Verdict.FAILED),
    (
        "failed during this attempt, expired",
        node_says(PaymentOutcome.FAILED, updated_at=int(FRESH)),
        EXPIRED,
        Verdict.FAILED,
    ),
    (
        "stale failed",
        node_says(PaymentOutcome.FAILED, updated_at=int(STALE)),
        NOT_EXPIRED,
        Verdict.PENDING,
    ),
    (
        "stale failed, just expired",
        node_says(PaymentOutcome.FAILED, updated_at=int(STALE)),
        JUST_EXPIRED,
        Verdict.PENDING,
    ),
    (
        "stale failed, expired (M5)",
        node_says(PaymentOutcome.FAILED, updated_at=int(STALE)),
        EXPIRED,
        Verdict.FAILED,
    ),
    ("pending", node_says(PaymentOutcome.PENDING), NOT_EXPIRED, Verdict.PENDING),
    (
        "pending, expired: the HTLC is still out",
        node_says(PaymentOutcome.PENDING),
        EXPIRED,
        Verdict.PENDING,
    ),
    ("unknown to the node", node_says(PaymentOutcome.UNKNOWN), NOT_EXPIRED, Verdict.PENDING),
    (
        "unknown to the node, just expired",
        node_says(PaymentOutcome.UNKNOWN),
        JUST_EXPIRED,
        Verdict.PENDING,
    ),
    ("unknown to the node, expired", node_says(PaymentOutcome.UNKNOWN), EXPIRED, Verdict.FAILED),
]


@pytest.mark.parametrize(
    ("status", "expires_at", "verdict"),
    [row[1:] for row in DECISIONS],
    ids=[row[0] for row in DECISIONS],
)
def test_node_answer_and_invoice_state_decide_the_payment(
    status: PaymentStatus, expires_at: float, verdict: Verdict
) -> None:
    payment = PendingPayment(1, HASH, expires_at, STARTED)
    decision = decide(payment, status, stale_skew_s=SKEW_S, now=NOW)
    assert decision.verdict is verdict
    if verdict is Verdict.SUCCEEDED:
        assert decision.preimage == PREIMAGE  # stored in canonical lower-case form
    if verdict is Verdict.FAILED:
        assert decision.reason


# amount, base, ppm, minimum -> reserve (docs/NODE.md, "Fee-reserve policy")
RESERVES = [
    (1_000, 50_000, 10_000, 0, 50_010),  # the defaults: 50 sat + 1 %
    (100_000, 50_000, 10_000, 0, 51_000),
    (10_000_000, 50_000, 10_000, 0, 150_000),
    (1, 50_000, 10_000, 0, 50_001),  # 1 % of 1 msat rounds up, never in the user's favour
    (0, 50_000, 10_000, 0, 50_000),
    (1_000, 0, 10_000, 10_000, 10_000),  # the old policy: max(10 sat, 1 %)
    (2_000_000, 0, 10_000, 10_000, 20_000),
    (1_000, 0, 0, 0, 0),
]


@pytest.mark.parametrize(("amount", "base", "ppm", "minimum", "reserve"), RESERVES)
def test_fee_reserve(amount: int, base: int, ppm: int, minimum: int, reserve: int) -> None:
    assert fee_reserve_msat(amount, base_msat=base, ppm=ppm, minimum_msat=minimum) == reserve


@pytest.mark.parametrize("amount", [1, 999, 1_000, 123_456_789, 10**11])
def test_default_reserve_covers_ldk_fee_cap(amount: int) -> None:
    ldk_cap = -(-amount // 100) + 50_000
    assert fee_reserve_msat(amount, base_msat=50_000, ppm=10_000) >= ldk_cap


HORIZON_S = 2016 * 600


def invoice(
    *, expiry_s: int, network: bolt11.Network = Network.REGTEST, timestamp: int | None = None
) -> str:
    return bolt11.encode(
        network=network,
        amount_msat=1000,
        payment_hash=os.urandom(32).hex(),
        payment_secret=os.urandom(32).hex(),
        timestamp=int(time.time()) if timestamp is None else timestamp,
        private_key=os.urandom(32),
        description="t",
        expiry_s=expiry_s,
    )


# expiry, network -> refusal code or None (docs/NODE.md, "Invoice expiry")
CHECKS = [
    ("an hour", 3600, "regtest", None),
    ("just inside the horizon", HORIZON_S - 60, "regtest", None),
    ("just past the horizon", HORIZON_S + 60, "regtest", ErrorCode.INVOICE_EXPIRY_TOO_FAR),
    ("a million years", 10**12, "regtest", ErrorCode.INVOICE_EXPIRY_TOO_FAR),
    ("2^40 s", 2**40, "regtest", ErrorCode.INVOICE_EXPIRY_TOO_FAR),
    ("another network", 3600, "bitcoin", ErrorCode.WRONG_NETWORK),
]


@pytest.mark.parametrize(
    ("expiry_s", "network", "code"), [row[1:] for row in CHECKS], ids=[row[0] for row in CHECKS]
)
def test_invoice_checks(expiry_s: int, network: bolt11.Network, code: ErrorCode | None) -> None:
    text = invoice(expiry_s=expiry_s, network=network)
    if code is None:
        assert (
            check_invoice_text(text, network=Network.REGTEST, expiry_horizon_s=HORIZON_S).expiry_s
            == expiry_s
        )
        return
    with pytest.raises(ApiError) as refused:
        check_invoice_text(text, network=Network.REGTEST, expiry_horizon_s=HORIZON_S)
    assert refused.value.code is code


def test_expired_invoice_refused() -> None:
    text = invoice(expiry_s=60, timestamp=int(time.time()) - 3600)
    with pytest.raises(ApiError) as refused:
        check_invoice_text(text, network=Network.REGTEST, expiry_horizon_s=HORIZON_S)
    assert refused.value.code is ErrorCode.INVOICE_EXPIRED


def test_no_horizon_reaches_year_10000() -> None:
    text = invoice(expiry_s=10**12)
    with pytest.raises(ApiError) as refused:
        check_invoice_text(text, network=Network.REGTEST, expiry_horizon_s=10**13)
    assert refused.value.code is ErrorCode.INVOICE_EXPIRY_TOO_FAR


# Receiving (docs/API.md, /virtual_lninvoice and /virtual_rgbinvoice): the rules the service
# applies before it asks the node. A command that passes them reaches the node check.
ASSET = "rgb:2dkSTbr-jFhznbPmo-TQafzswCN-av4gTsJjX-ttx6CNou5-M98k8Zd"
WEEK_S = 7 * 86400  # Settings.invoice_expiry_max_s by default


class _Reached(Exception):
    """The rules passed: the service went on to check the node."""


class _Monitor:
    def require_ready(self) -> None:
        raise _Reached


def issuer() -> InvoiceIssuer:
    # Nothing past the rules is reached: no pool, signer or node is needed.
    return InvoiceIssuer(
        cast(asyncpg.Pool, None),
        cast(Signer, None),
        cast(LightningBackend, None),
        cast(NodeMonitor, _Monitor()),
        Settings.model_construct(),
    )


# asset, BTC carried, expiry -> refusal code or None
LN_INVOICES = [
    ("BTC, amountless", "BTC", None, 3600, None),
    ("BTC, 1 msat", "BTC", 1, 3600, None),
    ("RGB, BTC defaults to the node's minimum", ASSET, None, 3600, None),
    ("RGB, the minimum BTC", ASSET, RGB_MIN_HTLC_MSAT, 3600, None),
    ("RGB, below the minimum BTC", ASSET, RGB_MIN_HTLC_MSAT - 1, 3600, ErrorCode.AMOUNT_MISMATCH),
    ("a week", "BTC", None, WEEK_S, None),
    ("past a week", "BTC", None, WEEK_S + 1, ErrorCode.INVALID_EXPIRY),
    (
        "RGB below the minimum and past a week: the amount first",
        ASSET,
        1,
        WEEK_S + 1,
        ErrorCode.AMOUNT_MISMATCH,
    ),
]


@pytest.mark.parametrize(
    ("asset_id", "amount_msat", "expiry_s", "code"),
    [row[1:] for row in LN_INVOICES],
    ids=[row[0] for row in LN_INVOICES],
)
async def test_ln_invoice_rules(
    asset_id: str, amount_msat: int | None, expiry_s: int, code: ErrorCode | None
) -> None:
    command = InvoiceCommand(
        1, amount_msat, asset_id, None if asset_id == "BTC" else 10, None, expiry_s
    )
    expected: type[Exception] = _Reached if code is None else ApiError
    with pytest.raises(expected) as refused:
        await issuer().ln_invoice(command)
    if isinstance(refused.value, ApiError):
        assert refused.value.code is code


# asset, duration -> refusal code or None
ASSET_INVOICES = [
    ("BTC, a day", "BTC", 86_400, None),
    ("RGB, a week", ASSET, WEEK_S, None),
    ("RGB, past a week", ASSET, WEEK_S + 1, ErrorCode.INVALID_EXPIRY),
    ("BTC, past a week", "BTC", WEEK_S + 1, ErrorCode.INVALID_EXPIRY),
]


@pytest.mark.parametrize(
    ("asset_id", "duration_s", "code"),
    [row[1:] for row in ASSET_INVOICES],
    ids=[row[0] for row in ASSET_INVOICES],
)
async def test_asset_invoice_rules(asset_id: str, duration_s: int, code: ErrorCode | None) -> None:
    expected: type[Exception] = _Reached if code is None else ApiError
    with pytest.raises(expected) as refused:
        await issuer().asset_invoice(AssetInvoiceCommand(1, asset_id, duration_s))
    if isinstance(refused.value, ApiError):
        assert refused.value.code is code
