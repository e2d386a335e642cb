"""Micro-batched transfers (docs/adr/0026): concurrent transfers of one process share one
database call and one commit.

No timer: a transfer leaves at once when fewer than `max_in_flight` calls are at the database,
so at low load nothing waits and nothing changes. Under load the calls in flight are all busy;
the transfers that arrive meanwhile wait, and the next call to leave takes up to `max_items` of
them in arrival order, through `vnode_transfer_batch` (vnode/db/functions/40_ledger.sql): the
same `vnode_transfer` for each, in one transaction, each with its own answer.

If a batch fails as a whole with an ERROR from PostgreSQL (an error no transfer answers with: a
concurrent request with the same Idempotency-Key, a deadlock retried too often, corruption),
nothing of it was committed, and its transfers run again one by one, each through the
single-transfer path with its own retries: each gets the answer or the error it would have had
alone. Any other failure (the connection lost, the backend terminated) may have come after the
commit: every transfer of the batch gets that error, as a single call would, and is never run
again here (the Idempotency-Key makes the client's retry safe).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

import asyncpg

from vnode.db.pool import retry_aborted
from vnode.events.wakeup import OUTBOX
from vnode.ledger.calls import LedgerAnswer, call_money_function

log = logging.getLogger(__name__)

SINGLE_SQL = "SELECT code, detail, result FROM vnode_transfer($1, $2, $3, $4, $5, $6, $7, $8, $9)"
BATCH_SQL = (
    "SELECT item, code, detail, result FROM vnode_transfer_batch("
    "$1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], "
    "$8::text[], $9::bytea[]) ORDER BY item"
)


@dataclass(frozen=True)
class TransferArgs:
    """The arguments of one vnode_transfer call, in its order."""

    from_user: int
    to_user: int
    to_pubkey: str
    asset_id: str
    amount: int
    memo: str | None
    owner: str
    idem_key: str | None
    request_hash: bytes

    def as_tuple(self) -> tuple[object, ...]:
        return (
            self.from_user,
            self.to_user,
            self.to_pubkey,
            self.asset_id,
            self.amount,
            self.memo,
            self.owner,
            self.idem_key,
            self.request_hash,
        )


async def transfer_one(pool: asyncpg.Pool, args: TransferArgs) -> LedgerAnswer:
    """One transfer in its own transaction (the path without batching)."""
    return await call_money_function(pool, SINGLE_SQL, *args.as_tuple())


async def transfer_batch(pool: asyncpg.Pool, batch: Sequence[TransferArgs]) -> list[LedgerAnswer]:
    """Several transfers in one call and one commit; one answer per transfer, in order. Raises
    when the batch failed as a whole (nothing of it committed)."""
    columns = list(zip(*(args.as_tuple() for args in batch), strict=True))

    async def attempt() -> list[LedgerAnswer]:
        rows = await pool.fetch(BATCH_SQL, *(list(column) for column in columns))
        if len(rows) != len(batch):
            raise RuntimeError(f"vnode_transfer_batch answered {len(rows)} of {len(batch)}")
        return [LedgerAnswer.from_row(row) for row in rows]

    answers = await retry_aborted(attempt)
    OUTBOX.committed()  # the batch's events are the fan-out's now (vnode/events/wakeup.py)
    return answers


class TransferBatcher:
    """Gathers the transfers of one process into batches; see the module's docstring."""

    def __init__(self, pool: asyncpg.Pool, max_items: int, max_in_flight: int) -> None:
        if max_items < 1 or max_in_flight < 1:
            raise ValueError("max_items and max_in_flight must be at least 1")
        self._pool = pool
        self._max_items = max_items
        self._max_in_flight = max_in_flight
        self._waiting: list[tuple[TransferArgs, asyncio.Future[LedgerAnswer]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def transfer(self, args: TransferArgs) -> LedgerAnswer:
        future: asyncio.Future[LedgerAnswer] = asyncio.get_running_loop().create_future()
        self._waiting.append((args, future))
        self._start()
        # shield: a request cancelled while its batch runs leaves the batch alone (its transfer
        # may still commit, exactly as a cancelled single call may).
        return await asyncio.shield(future)

    def _start(self) -> None:
        while self._waiting and self._in_flight < self._max_in_flight:
            batch = self._waiting[: self._max_items]
            del self._waiting[: self._max_items]
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[TransferArgs, asyncio.Future[LedgerAnswer]]]) -> None:
        try:
            if len(batch) == 1:
                await _settle(batch[0], transfer_one(self._pool, batch[0][0]))
                return
            try:
                answers = await transfer_batch(self._pool, [args for args, _ in batch])
            except asyncpg.PostgresError as exc:
                if not rolled_back(exc):
                    raise  # perhaps committed: each request gets the error, as alone
                log.warning(
                    "a batch of %d transfers failed; running them one by one",
                    len(batch),
                    exc_info=True,
                )
                await asyncio.gather(
                    *(_settle(item, transfer_one(self._pool, item[0])) for item in batch)
                )
                return
            for (_, future), answer in zip(batch, answers, strict=True):
                if not future.done():
                    future.set_result(answer)
        except Exception as exc:  # every request of the batch gets it, as alone
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise
        finally:
            self._in_flight -= 1
            self._start()


def rolled_back(exc: asyncpg.PostgresError) -> bool:
    """Whether the batch surely committed nothing, so that its transfers may run again.

    An ERROR answer to the batch's statement aborts its transaction (one statement, one
    transaction). Anything else may have come after the commit: a FATAL (the backend was
    terminated, the server is shutting down) can arrive between the commit and the answer, and
    a lost connection (not a PostgresError) says nothing either. Running those again would book
    the transfers twice; like a single call, they give the error to every request instead.
    """
    return (getattr(exc, "severity_en", None) or getattr(exc, "severity", None)) == "ERROR"


async def _settle(
    item: tuple[TransferArgs, asyncio.Future[LedgerAnswer]], call: Awaitable[LedgerAnswer]
) -> None:
    """Await `call` and give its answer, or its error, to the item's future."""
    _, future = item
    try:
        answer = await call
    except Exception as exc:
        if not future.done():
            future.set_exception(exc)
        return
    if not future.done():
        future.set_result(answer)
