"""Calling the ledger's database functions: one round trip, safe retries, idempotency keys."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import asyncpg
import orjson

from vnode.db.pool import retry_aborted


@dataclass(frozen=True)
class Outcome:
    """What a money function answered: an HTTP status and the JSON body, already encoded."""

    status: int
    body: str

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def code(self) -> str:
        """The result code: "ok" for a success, else the refusal's catalogued code."""
        if self.ok:
            return "ok"
        error = self.json()["error"]
        assert isinstance(error, dict)
        return str(error["code"])

    def json(self) -> dict[str, object]:
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


async def call_money_function(pool: asyncpg.Pool, sql: str, *args: object) -> Outcome:
    """Run `SELECT status, body FROM fn(...)` once, retrying only what PostgreSQL aborted.

    A second request racing with the same Idempotency-Key fails on the key's primary key with
    everything it did rolled back; run again, it finds and replays the first answer.
    """

    async def attempt() -> Outcome:
        try:
            row = await pool.fetchrow(sql, *args)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "idempotency_keys_pkey":
                raise
            row = await pool.fetchrow(sql, *args)
        assert row is not None
        return Outcome(row["status"], row["body"])

    return await retry_aborted(attempt)
