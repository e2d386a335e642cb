"""The console's actions, each recorded in console_actions before it runs and completed after.

An action is the same call the API or the CLI makes (ledger/admin.admin_move, the webhook
retry, key creation and revocation, limits/store.set_overrides, ledger/audit.run_audit): the
console never writes a ledger row itself. The form's idempotency key, generated when the form
was drawn, makes a double submit one action: the second finds the first's row and shows its
outcome; a credit or debit whose row has no outcome yet (a crash in between) runs again under
the same key, which the money function answers from its stored answer, so money moves once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from vnode.console.sessions import ConsoleSession
from vnode.ledger.audit import run_audit

IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_-]{16,100}")
REASON_CHARS = (3, 500)
# Actions a crash may have left without an outcome that are safe to run again under the same
# key: their money function replays its stored answer.
_RERUN = frozenset({"credit", "debit"})


@dataclass(frozen=True)
class Outcome:
    code: str  # "ok" or a refusal's code
    detail: str | None = None


@dataclass(frozen=True)
class Done:
    """An action's recorded row as the operator sees it; `replayed`: an earlier submit's."""

    id: int
    action: str
    target: str
    outcome: str | None
    detail: str | None
    replayed: bool


Runner = Callable[[], Awaitable["Outcome"]]


class ActionRefused(ValueError):
    """A form that cannot be an action (bad reason or key, a key reused for another action)."""


def check_reason(reason: str) -> str:
    text = reason.strip()
    low, high = REASON_CHARS
    if not low <= len(text) <= high or any(ord(c) < 32 for c in text):
        raise ActionRefused(f"give a reason of {low} to {high} characters, on one line")
    return text


async def perform(
    pool: asyncpg.Pool,
    session: ConsoleSession,
    idempotency_key: str,
    action: str,
    target: str,
    details: dict[str, object],
    reason: str,
    run: Runner,
) -> Done:
    if not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        raise ActionRefused("the form's idempotency key is missing or malformed: reload the page")
    text = check_reason(reason)
    details_json = json.dumps(details, sort_keys=True)
    row_id = await pool.fetchval(
        "INSERT INTO console_actions (idempotency_key, action, target, details, reason, key_id, "
        "key_name) VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7) "
        "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        idempotency_key,
        action,
        target,
        details_json,
        text,
        session.key_id,
        session.key_name,
    )
    if row_id is None:
        earlier = await pool.fetchrow(
            "SELECT id, action, target, details = $2::jsonb AS same, outcome, outcome_detail "
            "FROM console_actions WHERE idempotency_key = $1",
            idempotency_key,
            details_json,
        )
        assert earlier is not None  # rows are never deleted
        if (earlier["action"], earlier["target"], earlier["same"]) != (action, target, True):
            raise ActionRefused("this form was already used for another action: reload the page")
        if earlier["outcome"] is not None or action not in _RERUN:
            return Done(
                earlier["id"],
                action,
                target,
                earlier["outcome"],
                earlier["outcome_detail"],
                replayed=True,
            )
        row_id = earlier["id"]
    outcome = await run()
    await pool.execute(
        "UPDATE console_actions SET outcome = $2, outcome_detail = $3, finished_at = now() "
        "WHERE id = $1",
        row_id,
        outcome.code,
        outcome.detail,
    )
    return Done(row_id, action, target, outcome.code, outcome.detail, replayed=False)


async def audit_now(pool: asyncpg.Pool) -> Outcome:
    """`vnode audit` on one snapshot, its result kept for the overview."""
    started = datetime.now(UTC)
    async with pool.acquire() as conn:
        report = await run_audit(conn)
    await pool.execute(
        "INSERT INTO audit_runs (clean, differences, checked, started_at) "
        "VALUES ($1, $2, $3::jsonb, $4)",
        report.clean,
        len(report.differences),
        json.dumps(report.checked),
        started,
    )
    if report.clean:
        return Outcome("ok", f"clean: {sum(report.checked.values())} rows checked")
    return Outcome("audit_differences", f"{len(report.differences)} differences")
