"""Turning the node's view of an outgoing payment into a final ledger state, or leaving it.

The rules (DESIGN.md 2.5, LESSONS 9-13): only an explicit FAILED that is not stale releases
the reserve; a success needs a preimage that hashes to the payment hash; a payment the node
never saw is refunded only once its invoice has expired; everything else stays pending.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import orjson

from vnode.db.pool import retry_aborted
from vnode.ledger.calls import Outcome
from vnode.lightning.base import LightningBackend, NodeError, PaymentOutcome, PaymentStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingPayment:
    id: int
    payment_hash: str
    invoice_expires_at: datetime
    attempt_started_at: datetime
    sent_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> PendingPayment:
        return cls(row["id"], row["payment_hash"], row["invoice_expires_at"],
                   row["attempt_started_at"], row["sent_at"])


SELECT_PAYMENTS = (
    "SELECT id, payment_hash, invoice_expires_at, attempt_started_at, sent_at FROM ln_payments"
)


def preimage_matches(preimage: str | None, payment_hash: str) -> bool:
    if not preimage or len(preimage) != 64:
        return False
    try:
        return hashlib.sha256(bytes.fromhex(preimage)).hexdigest() == payment_hash
    except ValueError:
        return False


async def finish(pool: asyncpg.Pool, payment_id: int, outcome: PaymentOutcome,
                 fee_msat: int | None, preimage: str | None, reason: str | None) -> Outcome:
    async def attempt() -> Outcome:
        row = await pool.fetchrow(
            "SELECT status, body FROM vnode_payment_finish($1, $2, $3, $4, $5)",
            payment_id, outcome.value, fee_msat, preimage, reason)
        assert row is not None
        return Outcome(row["status"], row["body"])

    return await retry_aborted(attempt)


async def _alert_once(pool: asyncpg.Pool, kind: str, payment_hash: str,
                      details: dict[str, object]) -> None:
    await pool.execute(
        "INSERT INTO alerts (kind, payment_hash, details) SELECT $1, $2, $3::jsonb "
        "WHERE NOT EXISTS (SELECT 1 FROM alerts WHERE kind = $1 AND payment_hash = $2)",
        kind, payment_hash, orjson.dumps(details).decode())


async def apply_status(pool: asyncpg.Pool, payment: PendingPayment, status: PaymentStatus,
                       *, stale_skew_s: int, now: float | None = None) -> Outcome | None:
    """Finish the payment if `status` is final and trustworthy; None leaves it pending."""
    current = time.time() if now is None else now
    if status.outcome is PaymentOutcome.SUCCEEDED:
        if not preimage_matches(status.preimage, payment.payment_hash):
            log.error("node reported success without a valid preimage; payment stays pending",
                      extra={"payment_hash": payment.payment_hash})
            await _alert_once(pool, "invalid_preimage", payment.payment_hash,
                              {"payment_id": payment.id, "preimage": status.preimage})
            return None
        return await finish(pool, payment.id, PaymentOutcome.SUCCEEDED, status.fee_msat,
                            status.preimage, None)
    if status.outcome is PaymentOutcome.FAILED:
        started = payment.attempt_started_at.timestamp()
        if status.updated_at and status.updated_at < started - stale_skew_s:
            # An answer about an earlier attempt (LESSONS 10): it does not finalise this one.
            log.warning("ignoring a stale FAILED older than this attempt",
                        extra={"payment_hash": payment.payment_hash})
            return None
        return await finish(pool, payment.id, PaymentOutcome.FAILED, None, None,
                            "the node reported the payment failed")
    if status.outcome is PaymentOutcome.UNKNOWN:
        expired_for_s = current - payment.invoice_expires_at.timestamp()
        if expired_for_s > stale_skew_s:
            # The node never saw it and now never can: the invoice is expired.
            return await finish(pool, payment.id, PaymentOutcome.FAILED, None, None,
                                "never reached the node; the invoice expired")
    return None


async def resolve(pool: asyncpg.Pool, backend: LightningBackend, payment: PendingPayment,
                  *, stale_skew_s: int) -> Outcome | None:
    """Ask the node about one pending payment and apply its answer; None: still pending."""
    try:
        status = await backend.payment_status(payment.payment_hash)
    except NodeError as exc:  # locked or unreachable: an ambiguous answer changes nothing
        log.info("payment status unavailable", extra={
            "payment_hash": payment.payment_hash, "error": str(exc)})
        return None
    return await apply_status(pool, payment, status, stale_skew_s=stale_skew_s)


async def reconcile_once(pool: asyncpg.Pool, backend: LightningBackend, *,
                         stale_skew_s: int, batch: int = 200) -> int:
    """Resolve every pending external payment of any age; returns how many became final."""
    rows = await pool.fetch(
        SELECT_PAYMENTS + " WHERE status = 'pending' AND kind = 'external' ORDER BY id LIMIT $1",
        batch)
    finished = 0
    for row in rows:
        if await resolve(pool, backend, PendingPayment.from_row(row),
                         stale_skew_s=stale_skew_s) is not None:
            finished += 1
    return finished


async def recheck_failed_once(pool: asyncpg.Pool, backend: LightningBackend, *,
                              window_s: int = 86_400, batch: int = 100) -> int:
    """Ask again about recently refunded payments: a success reported after the refund is
    booked as an operator loss with an alert (LESSONS 13), never ignored."""
    rows = await pool.fetch(
        "SELECT id, payment_hash FROM ln_payments WHERE status = 'failed' AND kind = 'external' "
        "AND late_success_at IS NULL AND finished_at > now() - make_interval(secs => $1) "
        "ORDER BY finished_at DESC LIMIT $2", window_s, batch)
    found = 0
    for row in rows:
        try:
            status = await backend.payment_status(row["payment_hash"])
        except NodeError:
            continue
        if status.outcome is PaymentOutcome.SUCCEEDED and preimage_matches(
                status.preimage, row["payment_hash"]):
            log.error("a refunded payment succeeded after all: booking an operator loss",
                      extra={"payment_hash": row["payment_hash"]})
            await finish(pool, row["id"], PaymentOutcome.SUCCEEDED, status.fee_msat,
                         status.preimage, None)
            found += 1
    return found
