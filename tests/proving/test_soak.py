"""The short version of `make soak` (docs/RELIABILITY.md): the same harness, ~15 s of mixed
load on two `vnode serve` processes sharing one database and the simulated node, then the ledger
against the load generator's books and `vnode audit`."""

from __future__ import annotations

from proving.report import RunResult
from proving.session import REQUIRED_OPS
from proving.soak import run_soak, soak_options


def assert_money_exact(result: RunResult) -> None:
    """The facts behind PASS, one by one, so a failure names the broken one."""
    assert not result.server_errors, result.server_errors
    assert result.audit_clean, result.audit_verdict
    assert result.settled, f"payments not final {result.settle_s} s after the load"
    assert not result.problems, result.problems
    facts = result.facts
    assert facts["transfers_unknown"] == 0
    assert facts["transfers_accepted"] == facts["journal_transfers"] > 0
    assert facts["transfers_refused"] > 0  # the refusal probes, none in the journal
    assert facts["payments_pending_in_ledger"] == 0
    assert facts["payments_succeeded"] > 0 and facts["payments_failed"] > 0
    assert facts["invoices_credited"] == facts["invoices_paid"] > 0
    assert_lndhub_traffic(facts)
    succeeded = {o.op: o.ok for o in result.ops}
    assert all(succeeded.get(op) for op in REQUIRED_OPS), succeeded
    assert result.passed, result.reasons


def assert_lndhub_traffic(facts: dict[str, int]) -> None:
    """The LndHub wallets' payments ran and ended every way (so a load whose LndHub traffic
    silently did nothing fails here); their money facts are among the checks above."""
    assert facts["lndhub_payments"] > 0
    assert facts.get("payments_lndhub_unknown", 0) == 0
    assert facts.get("payments_lndhub_succeeded", 0) > 0
    assert facts.get("payments_lndhub_failed", 0) > 0
    assert facts["lndhub_payments_internal"] > 0 and facts["internal_invoices_credited"] > 0
    assert facts["lndhub_payments_repeated"] > 0
    assert facts.get("lndhub_answers_paid", 0) > 0
    assert facts.get("lndhub_answers_failed", 0) > 0


async def test_soak_short(pg_server: str) -> None:
    options = soak_options(
        duration_s=15, rate=30, users=30, seed=11, server_dsn=pg_server, settle_timeout_s=30
    )
    result = await run_soak(options)
    assert result.kind == "soak" and result.requests > 0.8 * 15 * 30
    assert result.peak_rss_mib.keys() >= {"serve-a", "serve-b"}
    assert result.allowed_503 == 0  # no lock in a soak: not even node_unavailable
    assert_money_exact(result)
