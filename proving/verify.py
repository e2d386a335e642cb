"""The end checks: the ledger, read from PostgreSQL and through the API, against the load
generator's books and against what the simulated node says it sent and received.

Every accepted money request must be in the ledger exactly once with its amount, every refused
one must have left nothing, each user's balance must be what the books predict, no payment may
still be pending, and the node's own record must agree with vnode's on every payment.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from harness.waits import wait_until
from proving.load import LoadGenerator
from proving.model import Model, PaymentCase
from vnode.apikeys import Scope
from vnode.errors import result_status
from vnode.payments.policy import settings_reserve_msat
from vnode.settings import Settings

MAX_LISTED = 10  # problems of one kind listed in full; the rest counted


def fee_of(amount_msat: int) -> int:
    """What vnode charges for an external payment with this node (the whole reserve)."""
    return settings_reserve_msat(Settings.model_construct(), amount_msat)


@dataclass
class Findings:
    """What the checks found: problems (any one fails the run) and figures for the report."""

    problems: list[str] = field(default_factory=list)
    facts: dict[str, int] = field(default_factory=dict)
    _kinds: Counter[str] = field(default_factory=Counter)

    def problem(self, kind: str, text: str) -> None:
        self._kinds[kind] += 1
        if self._kinds[kind] <= MAX_LISTED:
            self.problems.append(text)
        elif self._kinds[kind] == MAX_LISTED + 1:
            self.problems.append(f"... more {kind} problems (see the JSON counts)")
        self.facts[f"problems_{kind}"] = self._kinds[kind]


async def pending_payments(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM ln_payments WHERE status = 'pending'"))
    finally:
        await conn.close()


async def wait_settled(dsn: str, model: Model, timeout_s: float) -> bool:
    """Until no payment is pending and every invoice paid from outside is credited."""
    paid = {i.payment_hash for i in model.inbound if i.paid}

    async def settled() -> bool:
        conn = await asyncpg.connect(dsn)
        try:
            pending = await conn.fetchval(
                "SELECT count(*) FROM ln_payments WHERE status = 'pending'"
            )
            credited = {
                r["payment_hash"]
                for r in await conn.fetch(
                    "SELECT payment_hash FROM ln_receipts WHERE source = 'node'"
                )
            }
        finally:
            await conn.close()
        return pending == 0 and paid <= credited

    try:
        await wait_until(settled, timeout_s, "payments to settle", period_s=0.5)
    except TimeoutError:
        return False
    return True


async def resolve_unknown_inbound(load: LoadGenerator) -> None:
    """An outside payment whose answer was lost: the sim's own record says if it arrived."""
    unknown = [i for i in load.model.inbound if i.paid is None]
    if not unknown:
        return
    async with httpx.AsyncClient(base_url=load.sim_url, timeout=30) as sim:
        state = (await sim.get("/_sim/state")).json()
    succeeded = {
        p["payment_hash"] for p in state["payments"] if p["inbound"] and p["status"] == "Succeeded"
    }
    for case in unknown:
        case.paid = case.payment_hash in succeeded


async def check_ledger(dsn: str, load: LoadGenerator) -> Findings:
    found = Findings()
    model = load.model
    conn = await asyncpg.connect(dsn)
    try:
        _check_transfers(
            found,
            model,
            await conn.fetch(
                "SELECT id, from_account, to_account, amount, memo FROM virtual_transactions "
                "WHERE kind = 'transfer'"
            ),
        )
        _check_idempotency(
            found,
            model,
            await conn.fetch("SELECT key, code FROM idempotency_keys WHERE endpoint = 'transfer'"),
        )
        _check_payments(
            found,
            model,
            await conn.fetch(
                "SELECT payment_hash, user_id, kind, status, amount_msat, fee_msat FROM ln_payments"
            ),
        )
        _check_receipts(
            found,
            model,
            await conn.fetch("SELECT payment_hash, source, user_id, amount_msat FROM ln_receipts"),
        )
        _check_funding(
            found,
            model,
            await conn.fetch(
                "SELECT to_account, amount FROM virtual_transactions WHERE kind = 'admin_credit'"
            ),
        )
        balances = {
            r["user_id"]: (r["spendable"], r["pending"])
            for r in await conn.fetch(
                "SELECT user_id, spendable, pending FROM ln_user_balances WHERE asset_id = 'BTC'"
            )
        }
        _check_balances(found, model, balances)
        for alert in await conn.fetch("SELECT kind, payment_hash FROM alerts"):
            found.problem(
                "alert", f"vnode raised an alert: {alert['kind']} {alert['payment_hash'] or ''}"
            )
        found.facts["events_in_outbox"] = int(await conn.fetchval("SELECT count(*) FROM outbox"))
        found.facts["events_not_fanned_out"] = int(
            await conn.fetchval("SELECT count(*) FROM outbox WHERE fanned_out_at IS NULL")
        )
    finally:
        await conn.close()
    await _check_api_balances(found, load)
    await _check_node(found, load)
    found.facts.update({f"lndhub_answers_{k}": v for k, v in sorted(load.lndhub.outcomes.items())})
    for problem in model.problems:
        found.problem("during_load", problem)
    return found


def _check_transfers(found: Findings, model: Model, rows: list[asyncpg.Record]) -> None:
    by_memo: dict[str | None, list[asyncpg.Record]] = defaultdict(list)
    for row in rows:
        by_memo[row["memo"]].append(row)
    keys = {t.key for t in model.transfers}
    accepted = refused = unknown = 0
    for case in model.transfers:
        journal = by_memo.get(case.key, [])
        if case.answer is None:
            unknown += 1
            found.problem(
                "unknown", f"transfer {case.key}: no answer learned (sent {case.retries + 1} times)"
            )
        elif case.accepted:
            accepted += 1
            transfer_id = case.answer.body.get("transfer_id")
            if len(journal) != 1:
                found.problem(
                    "transfer",
                    f"accepted transfer {case.key} (id {transfer_id}) is "
                    f"in the journal {len(journal)} times",
                )
            elif (
                journal[0]["id"],
                journal[0]["from_account"],
                journal[0]["to_account"],
                journal[0]["amount"],
            ) != (transfer_id, case.sender, case.recipient, case.amount_msat):
                found.problem(
                    "transfer",
                    f"accepted transfer {case.key}: journal has "
                    f"{dict(journal[0])}, the client was told "
                    f"id {transfer_id} of {case.amount_msat}",
                )
        else:
            refused += 1
            if journal:
                found.problem(
                    "transfer",
                    f"refused transfer {case.key} "
                    f"({case.answer.status} {case.answer.code}) is in "
                    f"the journal {len(journal)} times",
                )
            if case.expected_code is not None and case.answer.code != case.expected_code:
                found.problem(
                    "transfer",
                    f"transfer {case.key} should be refused with "
                    f"{case.expected_code}, got {case.answer.status} "
                    f"{case.answer.code}",
                )
    strays = [memo for memo in by_memo if memo not in keys]
    for memo in strays:
        found.problem("transfer", f"journal has transfer(s) nobody asked for (memo {memo!r})")
    found.facts.update(
        transfers_accepted=accepted,
        transfers_refused=refused,
        transfers_unknown=unknown,
        journal_transfers=len(rows),
        transfers_retried=sum(1 for t in model.transfers if t.retries),
    )


def _check_idempotency(found: Findings, model: Model, rows: list[asyncpg.Record]) -> None:
    """A stored answer must be the one the client got (a refusal stored as a refusal)."""
    stored = {r["key"]: r for r in rows}
    for case in model.transfers:
        row = stored.get(case.key)
        if row is None or case.answer is None:
            continue
        if result_status(row["code"]) != case.answer.status:
            found.problem(
                "idempotency",
                f"transfer {case.key}: stored answer "
                f"{row['code']}, the client got "
                f"{case.answer.status}",
            )


def _check_payments(found: Findings, model: Model, rows: list[asyncpg.Record]) -> None:
    by_hash: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for row in rows:
        by_hash[row["payment_hash"]].append(row)
    hashes = {p.payment_hash for p in model.payments}
    finals: Counter[str] = Counter()
    for case in model.payments:
        ledger = by_hash.get(case.payment_hash, [])
        if case.via == "lndhub":
            _check_lndhub_payment(found, case, ledger, finals)
            continue
        if case.answer is None:
            finals["unknown"] += 1
            found.problem("unknown", f"payment {case.key}: no answer learned")
            continue
        if not case.accepted:
            finals["refused"] += 1
            if ledger:
                found.problem(
                    "payment",
                    f"refused payment {case.key} ({case.answer.status} "
                    f"{case.answer.code}, sent {case.retries + 1} times) "
                    f"left {len(ledger)} ledger row(s): "
                    f"{[r['status'] for r in ledger]}",
                )
            continue
        finals[case.final or "not final"] += 1
        if case.final not in ("succeeded", "failed"):
            found.problem("pending", f"payment {case.key} not final for the client")
        if len(ledger) != 1:
            found.problem("payment", f"accepted payment {case.key} has {len(ledger)} ledger rows")
            continue
        row = ledger[0]
        if (row["user_id"], row["amount_msat"], row["kind"]) != (
            case.user,
            case.amount_msat,
            "external",
        ):
            found.problem("payment", f"payment {case.key}: ledger row {dict(row)}")
        if case.final is not None and row["status"] != case.final:
            found.problem(
                "payment",
                f"payment {case.key}: the client saw {case.final}, the ledger says {row['status']}",
            )
        if row["status"] == "succeeded" and row["fee_msat"] != fee_of(case.amount_msat):
            found.problem(
                "payment",
                f"payment {case.key}: fee {row['fee_msat']}, expected {fee_of(case.amount_msat)}",
            )
    for payment_hash in by_hash.keys() - hashes:
        found.problem("payment", f"ledger has a payment nobody asked for: {payment_hash}")
    found.facts.update({f"payments_{k.replace(' ', '_')}": v for k, v in finals.items()})
    lndhub = [p for p in model.payments if p.via == "lndhub"]
    found.facts["lndhub_payments"] = len(lndhub)
    found.facts["lndhub_payments_internal"] = sum(1 for p in lndhub if p.internal)
    found.facts["lndhub_payments_repeated"] = sum(
        1 for p in lndhub if any("repeat" in send for send in p.sends)
    )
    found.facts["lndhub_paid_answers"] = sum(p.paid_answers for p in lndhub)
    found.facts["payments_retried"] = sum(1 for p in model.payments if p.retries)
    found.facts["payments_pending_in_ledger"] = sum(1 for r in rows if r["status"] == "pending")


def _check_lndhub_payment(
    found: Findings, case: PaymentCase, ledger: list[asyncpg.Record], finals: Counter[str]
) -> None:
    """A /payinvoice payment: idempotent per (account, invoice), a repeat after a final failure
    being a new attempt, so several failed rows may precede the last; never two that paid."""
    label = f"lndhub payment {case.key} ({case.variant})"
    if case.answer is None:
        finals["lndhub_unknown"] += 1
        found.problem("unknown", f"{label}: no answer learned; sends: {', '.join(case.sends)}")
        return
    succeeded = [r for r in ledger if r["status"] == "succeeded"]
    if len(succeeded) > 1:
        found.problem("payment", f"{label} paid {len(succeeded)} times")
    if not case.accepted:
        finals["lndhub_refused"] += 1
        if ledger:
            found.problem("payment", f"refused {label} left {len(ledger)} ledger row(s)")
        return
    finals[f"lndhub_{case.final or 'not final'}"] += 1
    if case.final not in ("succeeded", "failed"):
        found.problem("pending", f"{label} not final for the client")
    if case.paid_answers and case.final != "succeeded":
        found.problem("payment", f"{label} was answered paid, then ended {case.final}")
    kind = "internal" if case.internal else "external"
    for row in ledger:
        if (row["user_id"], row["amount_msat"], row["kind"]) != (case.user, case.amount_msat, kind):
            found.problem("payment", f"{label}: ledger row {dict(row)}")
    if case.final == "succeeded" and len(succeeded) != 1:
        found.problem("payment", f"{label}: the client saw it paid, the ledger has no success")
    if case.final == "failed" and succeeded:
        found.problem("payment", f"{label}: the client saw it failed, the ledger says paid")
    fee = 0 if case.internal else fee_of(case.amount_msat)
    for row in succeeded:
        if row["fee_msat"] != fee:
            found.problem("payment", f"{label}: fee {row['fee_msat']}, expected {fee}")


def _check_internal_receipts(found: Findings, model: Model, rows: list[asyncpg.Record]) -> None:
    """An internal invoice paid through /payinvoice is credited once, to its user, and only
    when the payment succeeded."""
    credited: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for row in rows:
        if row["source"] == "internal":
            credited[row["payment_hash"]].append(row)
    paid = {
        p.payment_hash: p
        for p in model.payments
        if p.internal and p.accepted and p.final == "succeeded"
    }
    for payment_hash, case in paid.items():
        receipts = credited.get(payment_hash, [])
        if [(r["user_id"], r["amount_msat"]) for r in receipts] != [(case.payee, case.amount_msat)]:
            found.problem(
                "receipt",
                f"internal {case.key}: credited {[dict(r) for r in receipts]}, expected "
                f"{case.amount_msat} to {case.payee} once",
            )
    for payment_hash in credited.keys() - paid.keys():
        found.problem("receipt", f"an internal receipt of no paid invoice: {payment_hash}")
    found.facts["internal_invoices_credited"] = sum(len(r) for r in credited.values())


def _check_receipts(found: Findings, model: Model, rows: list[asyncpg.Record]) -> None:
    node = defaultdict(list)
    for row in rows:
        if row["source"] == "node":
            node[row["payment_hash"]].append(row)
    ours = {i.payment_hash for i in model.inbound}
    credited = 0
    for case in model.inbound:
        receipts = node.get(case.payment_hash, [])
        if case.paid:
            if len(receipts) != 1:
                found.problem(
                    "receipt",
                    f"invoice {case.payment_hash[:16]} paid from outside "
                    f"is credited {len(receipts)} times",
                )
            elif (receipts[0]["user_id"], receipts[0]["amount_msat"]) != (
                case.user,
                case.amount_msat,
            ):
                found.problem(
                    "receipt",
                    f"invoice {case.payment_hash[:16]}: credited "
                    f"{dict(receipts[0])}, expected {case.amount_msat} to "
                    f"{case.user}",
                )
            else:
                credited += 1
        elif receipts:
            found.problem(
                "receipt", f"invoice {case.payment_hash[:16]} was never paid but is credited"
            )
    for payment_hash in node.keys() - ours:
        found.problem("receipt", f"a receipt nobody paid: {payment_hash}")
    _check_internal_receipts(found, model, rows)
    found.facts.update(
        invoices_paid=sum(1 for i in model.inbound if i.paid),
        invoices_credited=credited,
        invoices_unpaid=sum(1 for i in model.inbound if not i.paid),
    )


def _check_funding(found: Findings, model: Model, rows: list[asyncpg.Record]) -> None:
    credited: Counter[int] = Counter()
    for row in rows:
        credited[row["to_account"]] += row["amount"]
    if dict(credited) != model.funding_msat:
        found.problem("funding", "admin credits in the journal differ from the funding made")


def _check_balances(found: Findings, model: Model, balances: dict[int, tuple[int, int]]) -> None:
    expected = model.expected_balances(fee_of)
    for user, want in sorted(expected.items()):
        have, pending = balances.get(user, (0, 0))
        if (have, pending) != (want, 0):
            found.problem(
                "balance",
                f"user {user}: ledger balance {have} (pending {pending}), "
                f"the client's books say {want}",
            )
    for user in balances.keys() - expected.keys():
        found.problem("balance", f"user {user} has a balance the books know nothing of")
    found.facts["users_checked"] = len(expected)


async def _check_api_balances(found: Findings, load: LoadGenerator) -> None:
    """The same balances as the API shows them, asked of every process in turn."""
    expected = load.model.expected_balances(fee_of)
    headers = {"Authorization": f"Bearer {load.keys[Scope.READ]}"}
    async with httpx.AsyncClient(timeout=30, headers=headers) as client:
        for index, (user, want) in enumerate(sorted(expected.items())):
            url = load.targets.urls[index % len(load.targets.urls)]
            try:
                answer = await client.post(f"{url}/virtual_assetbalance", json={"user_id": user})
                body: Any = answer.json()
            except (httpx.HTTPError, ValueError) as exc:
                found.problem("balance", f"user {user}: the API ({url}) failed: {exc!r}")
                continue
            if answer.status_code != 200 or body.get("spendable_msat") != want:
                found.problem(
                    "balance",
                    f"user {user}: the API ({url}) answers "
                    f"{answer.status_code} {body}, expected {want}",
                )


async def _check_node(found: Findings, load: LoadGenerator) -> None:
    """vnode's payments against the node's: money left the node exactly when a user paid."""
    async with httpx.AsyncClient(base_url=load.sim_url, timeout=30) as sim:
        state = (await sim.get("/_sim/state")).json()
    outbound = {p["payment_hash"]: p["status"] for p in state["payments"] if not p["inbound"]}
    mine = {p.payment_hash: p for p in load.model.payments}
    for payment_hash, status in outbound.items():
        case = mine.get(payment_hash)
        vnode_final = case.final if case is not None and case.accepted else None
        if (status == "Succeeded") != (vnode_final == "succeeded"):
            found.problem(
                "node",
                f"payment {payment_hash[:16]}: the node says {status}, vnode says {vnode_final}",
            )
    for case in load.model.payments:
        if case.final == "succeeded" and not case.internal and case.payment_hash not in outbound:
            found.problem("node", f"payment {case.key} succeeded in vnode, the node never sent it")
    found.facts["node_payments_sent"] = len(outbound)
    found.facts["node_payments_held"] = sum(1 for p in state["payments"] if p.get("held"))
