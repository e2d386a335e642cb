"""Turning the node's view of an outgoing payment into a final ledger state, or leaving it.

The rules (docs/NODE.md, "Unknown outcomes"; docs/design/DESIGN.md 2.5;
docs/design/LESSONS.md 9-13): a success needs a preimage that hashes to the payment hash; an
explicit FAILED releases the reserve unless it is about an earlier attempt; an attempt the node
never saw, or saw only as an earlier attempt's failure, is refunded once its invoice has
expired; everything else stays pending.

Every pass pages through *all* pending payments, the one checked longest ago first, a bounded
number at a time, each in isolation (docs/SECURITY.md: no single row stops the machinery).
Timestamps are read as epoch seconds, so no stored value can fail to decode.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from enum import StrEnum

import asyncpg

from vnode.lightning.base import LightningBackend, NodeError, PaymentOutcome, PaymentStatus
from vnode.logs import LogOnChange
from vnode.metrics import Metrics
from vnode.payments import store
from vnode.payments.store import PaymentAnswer
from vnode.payments.store import PendingPayment as PendingPayment
from vnode.workers.items import ItemErrors, backoff_s, each_isolated

log = logging.getLogger(__name__)
_said = LogOnChange(log)

PAGE = 64
# A payment still pending is asked about again after a tenth of its age, between these bounds:
# a fresh one every second, one held for days twice a minute, so a thousand held payments
# cost the node a few calls a second, not a flood (security review M2).
RECHECK_MIN_S = 1.0
RECHECK_MAX_S = 30.0
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def canonical_preimage(preimage: str | None, payment_hash: str) -> str | None:
    """The preimage in lower-case hex when it proves the payment (SHA-256 equals the hash),
    else None. Letter case is only the node's spelling; the hash is the proof."""
    if not preimage or not _HEX64.fullmatch(preimage):
        return None
    lowered = preimage.lower()
    if hashlib.sha256(bytes.fromhex(lowered)).hexdigest() != payment_hash:
        return None
    return lowered


def preimage_matches(preimage: str | None, payment_hash: str) -> bool:
    return canonical_preimage(preimage, payment_hash) is not None


async def finish(
    pool: asyncpg.Pool,
    payment_id: int,
    outcome: PaymentOutcome,
    fee_msat: int | None,
    preimage: str | None,
    reason: str | None,
) -> PaymentAnswer:
    return await store.finish_payment(pool, payment_id, outcome.value, fee_msat, preimage, reason)


def _fee(status: PaymentStatus) -> int | None:
    # A fee outside bigint is no fee the ledger can book: treat it as unreported (the whole
    # reserve is charged, nothing more is taken from the user).
    fee = status.fee_msat
    return fee if fee is None or 0 <= fee < 2**63 else None


class Verdict(StrEnum):
    SUCCEEDED = "succeeded"  # finish as succeeded with the (canonical) preimage
    FAILED = "failed"  # finish as failed: the user is refunded
    INVALID_PREIMAGE = "invalid_preimage"  # stays pending; the operator is alerted
    PENDING = "pending"  # stays pending; asked again later


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str | None = None
    preimage: str | None = None


def decide(
    payment: PendingPayment, status: PaymentStatus, *, stale_skew_s: int, now: float
) -> Decision:
    """The table of docs/NODE.md, "Unknown outcomes": node answer x invoice state x attempt
    age -> what becomes of a pending payment. Pure: no I/O, so the table has unit tests."""
    expired = now - payment.invoice_expires_s > stale_skew_s
    if status.outcome is PaymentOutcome.SUCCEEDED:
        preimage = canonical_preimage(status.preimage, payment.payment_hash)
        if preimage is None:
            return Decision(Verdict.INVALID_PREIMAGE)
        return Decision(Verdict.SUCCEEDED, preimage=preimage)
    if status.outcome is PaymentOutcome.FAILED:
        if status.updated_at and status.updated_at < payment.attempt_started_s - stale_skew_s:
            # An answer about an earlier attempt (docs/design/LESSONS.md 10): it does not
            # finalise this one, unless the invoice has expired since: then this attempt never
            # reached the node (the node would have overwritten the record) and never can (M5).
            if expired:
                return Decision(Verdict.FAILED, "never reached the node; the invoice expired")
            return Decision(Verdict.PENDING, "a stale FAILED older than this attempt")
        return Decision(Verdict.FAILED, "the node reported the payment failed")
    if status.outcome is PaymentOutcome.UNKNOWN and expired:
        # The node never saw it and now never can: the invoice is expired.
        return Decision(Verdict.FAILED, "never reached the node; the invoice expired")
    return Decision(Verdict.PENDING)


async def apply_status(
    pool: asyncpg.Pool,
    payment: PendingPayment,
    status: PaymentStatus,
    *,
    stale_skew_s: int,
    now: float | None = None,
) -> PaymentAnswer | None:
    """Finish the payment if `status` is final and trustworthy; None leaves it pending."""
    decision = decide(
        payment, status, stale_skew_s=stale_skew_s, now=time.time() if now is None else now
    )
    if decision.verdict is Verdict.SUCCEEDED:
        return await finish(
            pool, payment.id, PaymentOutcome.SUCCEEDED, _fee(status), decision.preimage, None
        )
    if decision.verdict is Verdict.FAILED:
        return await finish(pool, payment.id, PaymentOutcome.FAILED, None, None, decision.reason)
    if decision.verdict is Verdict.INVALID_PREIMAGE:
        log.error(
            "node reported success without a valid preimage; payment stays pending",
            extra={"payment_hash": payment.payment_hash},
        )
        await store.alert_once(
            pool,
            "invalid_preimage",
            payment.payment_hash,
            {"payment_id": payment.id, "preimage": str(status.preimage)[:200]},
        )
    elif decision.reason is not None:
        log.warning(
            "payment stays pending: %s",
            decision.reason,
            extra={"payment_hash": payment.payment_hash},
        )
    return None


async def resolve(
    pool: asyncpg.Pool, backend: LightningBackend, payment: PendingPayment, *, stale_skew_s: int
) -> PaymentAnswer | None:
    """Ask the node about one pending payment and apply its answer; None: still pending."""
    try:
        status = await backend.payment_status(payment.payment_hash)
    except NodeError as exc:  # locked or unreachable: an ambiguous answer changes nothing
        # Once per payment and kind of trouble, not once per pass over a thousand payments.
        _said.log(
            payment.payment_hash,
            exc.name,
            logging.INFO,
            "payment status unavailable",
            extra={"payment_hash": payment.payment_hash, "error": str(exc)},
        )
        return None
    _said.forget(payment.payment_hash)
    return await apply_status(pool, payment, status, stale_skew_s=stale_skew_s)


async def reconcile_once(
    pool: asyncpg.Pool,
    backend: LightningBackend,
    *,
    stale_skew_s: int,
    metrics: Metrics | None = None,
    concurrency: int = 16,
    page: int = PAGE,
) -> int:
    """One pass over every pending external payment that is due, a page at a time, the ones
    never checked first (newest first), then the one checked longest ago; returns how many
    became final.

    Each page is chosen afresh, so a payment made during a long pass is checked at the next
    page rather than after every older one. Every payment checked leaves the due set (final,
    or due again later), so the pass ends; one whose check raises is reported and waits
    longer before its next check, and the pass goes on."""
    errors = ItemErrors("payment-reconciler", metrics)
    finished = 0
    seen: set[int] = set()

    async def check(payment: PendingPayment) -> None:
        nonlocal finished
        if await resolve(pool, backend, payment, stale_skew_s=stale_skew_s) is not None:
            finished += 1
            return
        await store.checked_pending(pool, payment.id, RECHECK_MIN_S, RECHECK_MAX_S)

    async def postpone(payment: PendingPayment, _exc: BaseException) -> None:
        await store.check_failed(pool, payment.id, backoff_s(payment.check_errors + 1))

    while True:
        due = await store.due_payments(pool, page)
        todo = [payment for payment in due if payment.id not in seen]
        if not todo:  # nothing due, or only rows whose update could not be written
            return finished
        seen.update(payment.id for payment in todo)
        await each_isolated(
            todo,
            check,
            item_id=lambda p: f"payment {p.id} ({p.payment_hash})",
            errors=errors,
            on_error=postpone,
            concurrency=concurrency,
        )
        if len(due) < page:
            return finished


async def recheck_failed_once(
    pool: asyncpg.Pool,
    backend: LightningBackend,
    *,
    window_s: int = 86_400,
    metrics: Metrics | None = None,
    concurrency: int = 8,
    page: int = PAGE,
) -> int:
    """Ask again about recently refunded payments: a success reported after the refund is
    booked as an operator loss with an alert (docs/design/LESSONS.md 13), never ignored.

    Only the latest attempt of each payment hash is asked about: the node keeps one record
    per hash, so after a retry its answer is the retry's, not the refunded attempt's (M1)."""
    errors = ItemErrors("late-success-check", metrics)
    found = 0
    after_id = 2**63 - 1

    async def check(refunded: store.RefundedPayment) -> None:
        nonlocal found
        try:
            status = await backend.payment_status(refunded.payment_hash)
        except NodeError:
            return
        preimage = canonical_preimage(status.preimage, refunded.payment_hash)
        if status.outcome is PaymentOutcome.SUCCEEDED and preimage is not None:
            await finish(pool, refunded.id, PaymentOutcome.SUCCEEDED, _fee(status), preimage, None)
            if await store.late_success_booked(pool, refunded.id):
                log.error(
                    "a refunded payment succeeded after all: booked an operator loss",
                    extra={"payment_hash": refunded.payment_hash},
                )
                found += 1

    while True:
        rows = await store.recently_refunded(pool, window_s, after_id, page)
        if not rows:
            return found
        after_id = rows[-1].id
        await each_isolated(
            rows, check, item_id=lambda r: f"payment {r.id}", errors=errors, concurrency=concurrency
        )
        if len(rows) < page:
            return found
