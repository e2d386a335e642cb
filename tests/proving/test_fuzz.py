"""The short version of `make fuzz` (docs/RELIABILITY.md): schemathesis over real HTTP with a
key of each scope against a throwaway `vnode serve`, a few examples per operation; and, in a
test of its own, the hostile Lightning phase (proving/hostile.py) with one payment and one
receipt per hostile node-answer kind.

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
from proving.hostile import hostile_invoices
from vnode.lightning.bolt11 import Network, decode
from vnode_sim.faults import HostileKind

# About 1,100-1,300 cases per key, most from schemathesis' coverage phase whatever this is.
SHORT_EXAMPLES = 10


async def test_fuzz_short(pg_server: str, tmp_path: Path) -> None:
    report = await run_fuzz(
        FuzzOptions(
            max_examples=SHORT_EXAMPLES,
            server_dsn=pg_server,
            report_dir=tmp_path / "reports",
            hostile=False,
        )
    )
    print_report(report)  # shown with the failure: every finding with a request to replay
    seed = (
        f"(seed {report.seed}: python -m proving.fuzz --seed {report.seed} --max-examples "
        f"{SHORT_EXAMPLES})"
    )
    assert [k.scope for k in report.keys] == list(SCOPES)
    for key in report.keys:
        assert key.completed and key.cases > 500, f"{key.scope}: {key.cases} cases {seed}"
        assert key.server_errors == 0, f"{key.scope}: 5xx answers {seed}"
        assert not key.scope_violations, f"{key.scope}: {key.scope_violations[:3]} {seed}"
        assert (
            (key.money_changes == []) if key.scope in NO_MONEY else (key.money_changes is None)
        ), f"{key.scope}: {key.money_changes} {seed}"
    assert report.control_seen, "the money check did not see a known transfer"
    assert not report.audit
    failing = sorted(
        {
            f"{check} on {op}"
            for k in report.keys
            for check, op in k.gating_failures()
            if check in GATING_CHECKS
        }
    )
    assert not failing, f"{failing} {seed}"
    assert report.passed, f"{report.reasons()} {seed}"


def test_money_check_sees_every_kind_of_change() -> None:
    before = Ledger({(1, "BTC"): (10, 0)}, {(-1, "BTC"): -10}, {"journal rows": 1}, [])
    assert not before.changes_since(before)
    # A node created with nothing held is not money; a pending reserve, a new row and an
    # audit difference are.
    same = Ledger(
        {(1, "BTC"): (10, 0), (2, "BTC"): (0, 0)}, {(-1, "BTC"): -10}, {"journal rows": 1}, []
    )
    assert not same.changes_since(before)
    moved = Ledger(
        {(1, "BTC"): (9, 1)},
        {(-1, "BTC"): -10, (-6, "BTC"): 1},
        {"journal rows": 2},
        ["conservation: account 0 BTC expected 0 found 1"],
    )
    changes = moved.changes_since(before)
    assert len(changes) == 4, changes


async def test_fuzz_hostile_lightning(pg_server: str, tmp_path: Path) -> None:
    """Signed hostile invoices and hostile node answers while payments are pending: no 5xx,
    the expected refusals (invoice_expiry_too_far for every far expiry), nothing booked from
    a hostile record, a fresh payment final within 10 s, all final afterwards, audit clean."""
    report = await run_fuzz(
        FuzzOptions(
            scopes=(),
            server_dsn=pg_server,
            hostile=True,
            hostile_per_kind=1,
            report_dir=tmp_path / "reports",
        )
    )
    print_report(report)
    hostile = report.hostile
    assert hostile is not None
    assert not hostile.errors and not hostile.skipped, hostile.errors + hostile.skipped
    assert not hostile.server_errors, hostile.server_errors
    assert not hostile.unexpected, hostile.unexpected
    assert not hostile.booked_from_hostile, hostile.booked_from_hostile
    assert hostile.probe_s is not None and hostile.probe_s < 10.0
    assert not hostile.not_final and not hostile.wrong_outcome, hostile.details()
    # Every kind was really served (the sim counts what it corrupted), every category tried.
    assert set(hostile.served) == {k.value for k in HostileKind}, hostile.served
    assert set(hostile.invoices) >= {
        "expiry",
        "amount",
        "route_hints",
        "description",
        "features",
        "network",
    }
    assert hostile.payments == {"settled": 10, "held": 10, "received": 10}
    assert not report.audit
    assert report.passed, report.reasons()


def test_hostile_invoices_are_signed_and_say_what_they_hold() -> None:
    cases = hostile_invoices(
        Network.REGTEST, 1_767_225_600, "rgb:CJkb4YZw-jRiz2sk-~PARPio-wtVYI1c-XAEYCqO-wTfvRZ8"
    )
    assert len({c.label for c in cases}) == len(cases) > 35
    by_label = {c.label: c for c in cases}
    assert decode(by_label["expiry 1000000000000 s"].text).expiry_s == 10**12
    assert decode(by_label["expiry 1099511627776 s"].text).expiry_s == 2**40
    assert len(decode(by_label["50 hints of one hop"].text).route_hints) == 50
    description = decode(by_label["639 ASCII bytes"].text).description
    assert description is not None and len(description.encode()) == 639
    assert 1023 in decode(by_label["unknown odd bits 101 and 1023"].text).features
    assert decode(by_label["a bitcoin invoice"].text).network == "bitcoin"
    # The refusals must come from vnode's rules, not from a broken signature.
    for label in ("unknown even bit 100", "2^63 msat in the prefix"):
        try:
            decode(by_label[label].text)
        except ValueError as exc:
            assert "signature" not in str(exc), (label, exc)
        else:
            raise AssertionError(f"{label} decoded")
