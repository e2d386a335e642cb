"""Calling the ledger's database functions: one round trip, safe retries, idempotency keys."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import asyncpg
import orjson

from vnode.db.pool import retry_aborted
from vnode.errors import CATALOGUE, SUCCESS_STATUS, ErrorCode, result_status
from vnode.events.wakeup import OUTBOX
from vnode.limits.refusal import LimitRefusal


@dataclass(frozen=True)
class LedgerAnswer:
    """What a money function answered (vnode/db/functions/00_helpers.sql): a result code, the
    success's document as JSON text (sent as it is: never decoded and encoded again), and a
    refusal's data-bearing detail. HTTP statuses and texts come from vnode/errors.py."""

    code: str
    result: str | None = None
    detail: str | None = None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> LedgerAnswer:
        return cls(row["code"], row["result"], row.get("detail"))

    @property
    def ok(self) -> bool:
        return self.code in SUCCESS_STATUS

    @property
    def status(self) -> int:
        return result_status(self.code)

    @property
    def limit_refusal(self) -> LimitRefusal | None:
        """A `limit_exceeded` refusal's limit and headroom (its detail is their JSON)."""
        if self.code == ErrorCode.LIMIT_EXCEEDED and self.detail:
            return LimitRefusal.from_detail(self.detail)
        return None

    @property
    def message(self) -> str:
        """A refusal's text: its detail, else the catalogue's description."""
        refusal = self.limit_refusal
        if refusal is not None:
            return refusal.message
        return self.detail or CATALOGUE[ErrorCode(self.code)].description

    @property
    def error_fields(self) -> dict[str, object]:
        """A refusal's data beside code and message in the error object (limit, headroom)."""
        refusal = self.limit_refusal
        return refusal.fields() if refusal is not None else {}

    @property
    def body(self) -> str:
        """The answer as the API sends it, without the request id (api/responses.py adds it)."""
        if self.result is not None:
            return self.result
        error = {"code": self.code, "message": self.message, **self.error_fields}
        return orjson.dumps({"error": error}).decode()

    def json(self) -> dict[str, object]:
        """The answer decoded: a success's document or the refusal's error object."""
        decoded = orjson.loads(self.body)
        assert isinstance(decoded, dict)
        return decoded


@dataclass(frozen=True)
class Idempotency:
    """An Idempotency-Key and the caller it belongs to; `key` None means no replay protection."""

    owner: str
    key: str | None

    def request_hash(self, endpoint: str, fields: dict[str, object]) -> bytes:
        # The normalised request, so 123 and "123" as a user id are the same request.
        canonical = orjson.dumps({"endpoint": endpoint, **fields}, option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(canonical).digest()


async def call_money_function(pool: asyncpg.Pool, sql: str, *args: object) -> LedgerAnswer:
    """Run `SELECT code, detail, result FROM fn(...)` once, retrying only what PostgreSQL
    aborted.

    A second request racing with the same Idempotency-Key fails on the key's primary key with
    everything it did rolled back; run again, it finds and replays the first answer.
    """

    async def attempt() -> LedgerAnswer:
        try:
            row = await pool.fetchrow(sql, *args)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "idempotency_keys_pkey":
                raise
            row = await pool.fetchrow(sql, *args)
        assert row is not None
        return LedgerAnswer.from_row(row)

    answer = await retry_aborted(attempt)
    OUTBOX.committed()  # its events, if it made any, are the fan-out's now (wakeup.py)
    return answer
