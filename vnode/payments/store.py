"""All SQL of payments, as typed functions (as `ledger/` owns the SQL of transfers).

The services in this package (send, resolve, receive, webhook) call these and never a query of
their own: the tables ln_payments, ln_invoices, rgb_invoices, rgb_receipts, alerts and
webhook_replays, and the money functions that move payments, are read and written here only.
Timestamps are read as epoch seconds (float8), so no stored value can fail to decode (a
timestamp asyncpg cannot turn into a datetime, year > 9999, security review H1).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import orjson

from vnode.db.pool import retry_aborted
from vnode.ledger.calls import Idempotency, LedgerAnswer


@dataclass(frozen=True)
class PaymentAnswer(LedgerAnswer):
    """A money function's answer about one payment, with its id (None for a refusal)."""

    payment_id: int | None = None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> PaymentAnswer:
        return cls(row["code"], row["result"], row.get("detail"), row.get("payment_id"))


@dataclass(frozen=True)
class ReceiptAnswer(LedgerAnswer):
    """A receipt credit's answer: `credited` is False when it was credited before."""

    credited: bool = False

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ReceiptAnswer:
        return cls(row["code"], row["result"], None, bool(row["credited"]))


@dataclass(frozen=True)
class PendingPayment:
    id: int
    payment_hash: str
    invoice_expires_s: float  # unix seconds
    attempt_started_s: float
    check_errors: int = 0

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> PendingPayment:
        return cls(
            row["id"], row["payment_hash"], row["expires_s"], row["started_s"], row["check_errors"]
        )


# Only what the resolver needs, and timestamps as float8.
_PENDING_COLUMNS = (
    "id, payment_hash, extract(epoch FROM invoice_expires_at)::float8 AS expires_s, "
    "extract(epoch FROM attempt_started_at)::float8 AS started_s, check_errors"
)


# ---------------------------------------------------------------- idempotency and invoices


async def idempotent_answer(
    pool: asyncpg.Pool, idempotency: Idempotency, endpoint: str, request_hash: bytes
) -> PaymentAnswer | None:
    """The stored answer of an earlier request with this key (refuses a reused key): the one
    lookup of a payment's Idempotency-Key (the money functions do not look again)."""
    if idempotency.key is None:
        return None
    row = await pool.fetchrow(
        "SELECT code, detail, result, (result ->> 'payment_id')::bigint AS payment_id "
        "FROM vnode_idem_lookup($1, $2, $3, $4)",
        idempotency.owner,
        idempotency.key,
        endpoint,
        request_hash,
    )
    return None if row is None else PaymentAnswer.from_row(row)


async def invoice_is_ours(pool: asyncpg.Pool, payment_hash: str) -> bool:
    """Whether vnode issued the invoice of this payment hash."""
    return bool(
        await pool.fetchval("SELECT true FROM ln_invoices WHERE payment_hash = $1", payment_hash)
    )


async def invoice_owner(pool: asyncpg.Pool, payment_hash: str) -> int | None:
    owner: int | None = await pool.fetchval(
        "SELECT user_id FROM ln_invoices WHERE payment_hash = $1", payment_hash
    )
    return owner


# ---------------------------------------------------------------- paying


async def _payment_call(pool: asyncpg.Pool, sql: str, *args: object) -> PaymentAnswer:
    """One call of a payment's money function, retrying only what PostgreSQL aborted. A
    request racing another with the same Idempotency-Key raises UniqueViolationError on
    `idempotency_keys_pkey`, all it did rolled back: the caller replays the stored answer."""

    async def attempt() -> PaymentAnswer:
        row = await pool.fetchrow(sql, *args)
        assert row is not None
        return PaymentAnswer.from_row(row)

    return await retry_aborted(attempt)


async def internal_pay(
    pool: asyncpg.Pool,
    user_id: int,
    payment_hash: str,
    invoice: str,
    amt_msat: int | None,
    idempotency: Idempotency,
    request_hash: bytes,
) -> PaymentAnswer:
    """Settle an invoice vnode issued inside the ledger (the SQL refuses a substituted invoice
    text or an invoice vnode does not know)."""
    return await _payment_call(
        pool,
        "SELECT code, detail, result, (result ->> 'payment_id')::bigint AS payment_id "
        "FROM vnode_internal_pay($1, $2, $3, $4, $5, $6, $7)",
        user_id,
        payment_hash,
        invoice,
        amt_msat,
        idempotency.owner,
        idempotency.key,
        request_hash,
    )


@dataclass(frozen=True)
class Reserved:
    """A reserve's answer and, when it made a payment, the payment as the resolver reads it
    (what pending_payment would read right after: the reserve's own values, so the first
    check after the send needs no read of the row)."""

    answer: PaymentAnswer
    pending: PendingPayment | None


async def reserve_payment(
    pool: asyncpg.Pool,
    user_id: int,
    payment_hash: str,
    invoice: str,
    amount_msat: int,
    asset_id: str | None,
    asset_amount: int | None,
    reserve_msat: int,
    invoice_expires_s: float,
    idempotency: Idempotency,
    request_hash: bytes,
) -> Reserved:
    """Hold amount + reserve for an external payment (raises UniqueViolationError on
    `ln_payments_one_live` when another payment of the invoice is live). A payment reserved
    here is claimed for sending by this call (the reserve writes its `sent_at`): only the
    request that made it sends it, an idempotent replay never does.

    `started_s` is now() of the reserve's transaction, which is the row's
    `attempt_started_at` (its default), and `expires_s` the stored `invoice_expires_at`, both
    read as pending_payment reads them."""

    async def attempt() -> Reserved:
        row = await pool.fetchrow(
            "SELECT code, detail, result, payment_id, "
            "extract(epoch FROM now())::float8 AS started_s, "
            "extract(epoch FROM to_timestamp($8))::float8 AS expires_s "
            "FROM vnode_payment_reserve("
            "$1, $2, $3, $4, $5, $6, $7, to_timestamp($8), $9, $10, $11)",
            user_id,
            payment_hash,
            invoice,
            amount_msat,
            asset_id,
            asset_amount,
            reserve_msat,
            invoice_expires_s,
            idempotency.owner,
            idempotency.key,
            request_hash,
        )
        assert row is not None
        answer = PaymentAnswer.from_row(row)
        if answer.payment_id is None:
            return Reserved(answer, None)
        pending = PendingPayment(
            answer.payment_id, payment_hash, row["expires_s"], row["started_s"], 0
        )
        return Reserved(answer, pending)

    return await retry_aborted(attempt)


async def finish_payment(
    pool: asyncpg.Pool,
    payment_id: int,
    outcome: str,
    fee_msat: int | None,
    preimage: str | None,
    reason: str | None,
) -> PaymentAnswer:
    return await _payment_call(
        pool,
        "SELECT code, result, $1::bigint AS payment_id "
        "FROM vnode_payment_finish($1, $2, $3, $4, $5)",
        payment_id,
        outcome,
        fee_msat,
        preimage,
        reason,
    )


async def payment_answer(pool: asyncpg.Pool, payment_id: int) -> PaymentAnswer:
    """The payment's current state: "ok" when final, "pending" while not."""
    row = await pool.fetchrow(
        "SELECT CASE p.status WHEN 'pending' THEN 'pending' ELSE 'ok' END AS code, "
        "vnode_payment_json(p) AS result, p.id AS payment_id FROM ln_payments p WHERE p.id = $1",
        payment_id,
    )
    assert row is not None
    return PaymentAnswer.from_row(row)


async def latest_payment_id(pool: asyncpg.Pool, user_id: int, payment_hash: str) -> int | None:
    """The user's latest payment of this hash (a failed one may have been retried)."""
    payment_id: int | None = await pool.fetchval(
        "SELECT id FROM ln_payments WHERE user_id = $1 AND payment_hash = $2 "
        "ORDER BY id DESC LIMIT 1",
        user_id,
        payment_hash,
    )
    return payment_id


# ---------------------------------------------------------------- resolving


async def pending_payment(pool: asyncpg.Pool, payment_id: int) -> PendingPayment | None:
    row = await pool.fetchrow(
        f"SELECT {_PENDING_COLUMNS} FROM ln_payments "  # noqa: S608 (a constant)
        "WHERE id = $1 AND status = 'pending'",
        payment_id,
    )
    return PendingPayment.from_row(row) if row else None


async def due_payments(pool: asyncpg.Pool, page: int) -> list[PendingPayment]:
    """Pending external payments due a check: never checked first (the newest of those first:
    a payment just made is the one most likely to have just settled), then the one checked
    longest ago."""
    rows = await pool.fetch(
        f"SELECT {_PENDING_COLUMNS} FROM ln_payments "  # noqa: S608 (a constant)
        "WHERE status = 'pending' AND kind = 'external' AND next_check_at <= now() "
        "ORDER BY checked_at NULLS FIRST, id DESC LIMIT $1",
        page,
    )
    return [PendingPayment.from_row(row) for row in rows]


async def checked_pending(pool: asyncpg.Pool, payment_id: int, min_s: float, max_s: float) -> None:
    """Still pending after a check: asked again after a tenth of its age, within bounds."""
    await pool.execute(
        "UPDATE ln_payments SET check_errors = 0, checked_at = now(), "
        "next_check_at = now() + make_interval(secs => least(greatest("
        "extract(epoch FROM now() - attempt_started_at) / 10, $2), $3)) "
        "WHERE id = $1 AND status = 'pending'",
        payment_id,
        min_s,
        max_s,
    )


async def check_failed(pool: asyncpg.Pool, payment_id: int, backoff_s: float) -> None:
    await pool.execute(
        "UPDATE ln_payments SET check_errors = check_errors + 1, checked_at = now(), "
        "next_check_at = now() + make_interval(secs => $2) WHERE id = $1",
        payment_id,
        backoff_s,
    )


@dataclass(frozen=True)
class RefundedPayment:
    id: int
    payment_hash: str


async def recently_refunded(
    pool: asyncpg.Pool, window_s: int, before_id: int, page: int
) -> list[RefundedPayment]:
    """Refunded external payments of the last `window_s`, newest first, below `before_id`;
    only the latest attempt of each payment hash (the node keeps one record per hash, M1)."""
    rows = await pool.fetch(
        "SELECT id, payment_hash FROM ln_payments p WHERE status = 'failed' "
        "AND kind = 'external' AND late_success_at IS NULL "
        "AND finished_at > now() - make_interval(secs => $1) AND id < $2 "
        "AND NOT EXISTS (SELECT 1 FROM ln_payments later "
        "                WHERE later.payment_hash = p.payment_hash AND later.id > p.id) "
        "ORDER BY id DESC LIMIT $3",
        window_s,
        before_id,
        page,
    )
    return [RefundedPayment(row["id"], row["payment_hash"]) for row in rows]


async def late_success_booked(pool: asyncpg.Pool, payment_id: int) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT late_success_at IS NOT NULL FROM ln_payments WHERE id = $1", payment_id
        )
    )


async def alert_once(
    pool: asyncpg.Pool, kind: str, payment_hash: str, details: dict[str, object]
) -> None:
    """An operator alert about a payment, once per kind and payment hash."""
    await pool.execute(
        "INSERT INTO alerts (kind, payment_hash, details) SELECT $1, $2, $3::jsonb "
        "WHERE NOT EXISTS (SELECT 1 FROM alerts WHERE kind = $1 AND payment_hash = $2)",
        kind,
        payment_hash,
        orjson.dumps(details).decode(),
    )


# ---------------------------------------------------------------- receiving


async def insert_ln_invoice(
    pool: asyncpg.Pool,
    payment_hash: str,
    user_id: int,
    invoice: str,
    asset_id: str,
    amount_msat: int | None,
    asset_amount: int | None,
    description: str | None,
    expires_s: float,
    *,
    address_id: int | None = None,
    comment: str | None = None,
) -> None:
    """Record whose invoice it is; `address_id` and `comment` for one made through a
    Lightning Address's LNURL-pay callback (vnode/lnurl/)."""
    await pool.execute(
        "INSERT INTO ln_invoices (payment_hash, user_id, invoice, asset_id, amount_msat, "
        "asset_amount, description, expires_at, address_id, comment) VALUES ($1, $2, $3, $4, "
        "$5, $6, $7, to_timestamp($8), $9, $10)",
        payment_hash,
        user_id,
        invoice,
        asset_id,
        amount_msat,
        asset_amount,
        description,
        expires_s,
        address_id,
        comment,
    )


async def insert_rgb_invoice(
    pool: asyncpg.Pool,
    recipient_id: str,
    user_id: int,
    asset_id: str,
    invoice: str,
    expires_s: float,
) -> None:
    await pool.execute(
        "INSERT INTO rgb_invoices (recipient_id, user_id, asset_id, invoice, expires_at) "
        "VALUES ($1, $2, $3, $4, to_timestamp($5))",
        recipient_id,
        user_id,
        asset_id,
        invoice,
        expires_s,
    )


async def credit_ln_receipt(
    pool: asyncpg.Pool,
    payment_hash: str,
    amount_msat: int,
    asset_amount: int | None,
    asset_id: str | None,
) -> ReceiptAnswer:
    """Credit the invoice owner once; the node's asset is checked against the invoice's (L9)."""
    row = await pool.fetchrow(
        "SELECT code, result, credited FROM vnode_receipt_credit($1, $2, $3, $4)",
        payment_hash,
        amount_msat,
        asset_amount,
        asset_id,
    )
    assert row is not None
    return ReceiptAnswer.from_row(row)


@dataclass(frozen=True)
class OpenRgbInvoice:
    recipient_id: str
    asset_id: str
    expires_s: float


async def open_rgb_invoices(pool: asyncpg.Pool) -> list[OpenRgbInvoice]:
    rows = await pool.fetch(
        "SELECT recipient_id, asset_id, extract(epoch FROM expires_at)::float8 AS expires_s "
        "FROM rgb_invoices WHERE status = 'open'"
    )
    return [OpenRgbInvoice(row["recipient_id"], row["asset_id"], row["expires_s"]) for row in rows]


async def rgb_invoices_credited(pool: asyncpg.Pool, recipient_ids: list[str]) -> dict[str, bool]:
    """Of these recipient ids, the ones vnode issued, each with whether it is credited."""
    rows = await pool.fetch(
        "SELECT i.recipient_id, r.recipient_id IS NOT NULL AS credited FROM rgb_invoices i "
        "LEFT JOIN rgb_receipts r USING (recipient_id) WHERE i.recipient_id = ANY($1)",
        recipient_ids,
    )
    return {row["recipient_id"]: row["credited"] for row in rows}


async def credit_rgb_receipt(
    pool: asyncpg.Pool,
    recipient_id: str,
    transfer_idx: int,
    asset_amount: int,
    receive_utxo: str | None,
    asset_id: str,
) -> ReceiptAnswer:
    row = await pool.fetchrow(
        "SELECT code, result, credited FROM vnode_rgb_receipt_credit($1, $2, $3, $4, $5)",
        recipient_id,
        transfer_idx,
        asset_amount,
        receive_utxo,
        asset_id,
    )
    assert row is not None
    return ReceiptAnswer.from_row(row)


async def alert_unmatched_rgb(
    pool: asyncpg.Pool, recipient_id: str, details: dict[str, object]
) -> None:
    """Assets arrived for no invoice vnode issued: one alert per recipient id."""
    await pool.execute(
        "INSERT INTO alerts (kind, details) SELECT 'unmatched_rgb_receipt', $1::jsonb "
        "WHERE NOT EXISTS (SELECT 1 FROM alerts WHERE kind = 'unmatched_rgb_receipt' "
        "AND details ->> 'recipient_id' = $2)",
        orjson.dumps(details).decode(),
        recipient_id,
    )


async def close_rgb_invoices(pool: asyncpg.Pool, recipient_ids: list[str], status: str) -> None:
    """Stop watching open RGB invoices: `status` is 'failed' or 'expired'."""
    await pool.execute(
        "UPDATE rgb_invoices SET status = $2 WHERE recipient_id = ANY($1) AND status = 'open'",
        recipient_ids,
        status,
    )


async def first_use_of_signature(pool: asyncpg.Pool, signature: bytes, window_s: int) -> bool:
    """Record a webhook signature; False when it was already received inside the window."""
    fresh = await pool.fetchval(
        "WITH gc AS (DELETE FROM webhook_replays "
        "            WHERE seen_at < now() - make_interval(secs => $2 * 2)) "
        "INSERT INTO webhook_replays (signature) VALUES ($1) ON CONFLICT DO NOTHING "
        "RETURNING true",
        signature,
        window_s,
    )
    return bool(fresh)
