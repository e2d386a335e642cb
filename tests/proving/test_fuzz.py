"""The short version of `make fuzz` (docs/RELIABILITY.md): schemathesis over real HTTP with a
key of each scope against a throwaway `vnode serve`, a few examples per operation.

The parser property tests are not repeated here: tests/unit/test_fuzz_parsers.py runs them.
"""

from __future__ import annotations

from pathlib import Path

from proving.fuzz import (
    GATING_CHECKS,
    NO_MONEY,
    SCOPES,
    FuzzOptions,
    Ledger,
    print_report,
    run_fuzz,
)

# About 1,100-1,300 cases per key, most from schemathesis' coverage phase whatever this is.
SHORT_EXAMPLES = 10


async def test_fuzz_short(pg_server: str, tmp_path: Path) -> None:
    report = await run_fuzz(FuzzOptions(max_examples=SHORT_EXAMPLES, server_dsn=pg_server,
                                        report_dir=tmp_path / "reports"))
    print_report(report)  # shown with the failure: every finding with a request to replay
    seed = f"(seed {report.seed}: python -m proving.fuzz --seed {report.seed} --max-examples " \
           f"{SHORT_EXAMPLES})"
    assert [k.scope for k in report.keys] == list(SCOPES)
    for key in report.keys:
        assert key.completed and key.cases > 500, f"{key.scope}: {key.cases} cases {seed}"
        assert key.server_errors == 0, f"{key.scope}: 5xx answers {seed}"
        assert not key.scope_violations, f"{key.scope}: {key.scope_violations[:3]} {seed}"
        assert (key.money_changes == []) if key.scope in NO_MONEY else (
            key.money_changes is None), f"{key.scope}: {key.money_changes} {seed}"
    assert report.control_seen, "the money check did not see a known transfer"
    assert not report.audit
    failing = sorted({f"{check} on {op}" for k in report.keys
                      for check, op in k.gating_failures() if check in GATING_CHECKS})
    assert not failing, f"{failing} {seed}"
    assert report.passed, f"{report.reasons()} {seed}"


def test_money_check_sees_every_kind_of_change() -> None:
    before = Ledger({(1, "BTC"): (10, 0)}, {(-1, "BTC"): -10}, {"journal rows": 1}, [])
    assert not before.changes_since(before)
    # A node created with nothing held is not money; a pending reserve, a new row and an
    # audit difference are.
    same = Ledger({(1, "BTC"): (10, 0), (2, "BTC"): (0, 0)}, {(-1, "BTC"): -10},
                  {"journal rows": 1}, [])
    assert not same.changes_since(before)
    moved = Ledger({(1, "BTC"): (9, 1)}, {(-1, "BTC"): -10, (-6, "BTC"): 1},
                   {"journal rows": 2}, ["conservation: account 0 BTC expected 0 found 1"])
    changes = moved.changes_since(before)
    assert len(changes) == 4, changes
