"""The checks the soak and chaos runs hold LndHub payments to (proving/verify.py) catch what
they are for: a repeat that paid twice, a "paid" answer for a payment that ended failed, a
refused payment that left a row. The runs themselves cannot show this (vnode does not pay
twice), so the checker is given the ledger rows such a bug would leave."""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

import asyncpg

from proving.lndhub_ops import hub_answer
from proving.model import NODE_UNAVAILABLE, Answer, PaymentCase
from proving.verify import Findings, _check_lndhub_payment, fee_of
from vnode.lndhub import wire as lndhub_wire

USER, AMOUNT = 7_000_000_001, 50_000


def _case(final: str | None, *, paid_answers: int = 0, exists: bool = True) -> PaymentCase:
    return PaymentCase(
        "h-1",
        USER,
        "ab" * 32,
        "lnbcrt...",
        AMOUNT,
        "ok",
        answer=Answer(200 if paid_answers else 202, {}),
        final=final,
        via="lndhub",
        exists=exists,
        paid_answers=paid_answers,
    )


def _row(status: str) -> dict[str, Any]:
    fee = fee_of(AMOUNT) if status == "succeeded" else None
    return {
        "user_id": USER,
        "amount_msat": AMOUNT,
        "kind": "external",
        "status": status,
        "fee_msat": fee,
    }


def _problems(case: PaymentCase, *statuses: str) -> list[str]:
    found = Findings()
    rows = cast(list[asyncpg.Record], [_row(s) for s in statuses])
    _check_lndhub_payment(found, case, rows, Counter())
    return found.problems


def test_a_failed_attempt_then_a_paid_one_is_one_payment() -> None:
    assert _problems(_case("succeeded", paid_answers=2), "failed", "succeeded") == []


def test_paid_twice_is_caught() -> None:
    problems = _problems(_case("succeeded", paid_answers=1), "succeeded", "succeeded")
    assert any("paid 2 times" in p for p in problems), problems


def test_answered_paid_but_ended_failed_is_caught() -> None:
    problems = _problems(_case("failed", paid_answers=1), "failed")
    assert any("answered paid" in p for p in problems), problems


def test_a_refused_payment_that_left_a_row_is_caught() -> None:
    problems = _problems(_case(None, exists=False), "failed")
    assert any("refused" in p for p in problems), problems


def test_lndhub_answers_in_the_books_terms() -> None:
    in_transit = hub_answer(202, {"error": True, "code": 9, "message": "in flight"})
    assert in_transit.code is None  # in flight is not a refusal
    assert hub_answer(400, {"error": True, "code": 10}).code == "lndhub_10"
    assert hub_answer(503, {"error": True, "code": 6}).code == NODE_UNAVAILABLE
    assert hub_answer(503, {"error": True, "code": 6}).known  # the node's: nothing moved
    # The database's 503 is code 6 too, but its effect is unknown: a replay must resolve it.
    down = hub_answer(503, lndhub_wire.database_down().body())
    assert down.code == "database_unavailable"
    assert not down.known
    assert hub_answer(200, [{"type": "paid_invoice"}]).body["items"] == [{"type": "paid_invoice"}]
