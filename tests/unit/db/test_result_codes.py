"""Money functions answer result codes, and one Python catalogue maps each code to an HTTP
status and a text (issue 11, step 1; ADR 0012). Read from the SQL source, so a code added to a
function without a catalogue entry fails here, before any request could answer it with a 500.
The database's own copy of the functions is checked too (tests/integration/db/test_catalog.py)."""

from __future__ import annotations

import re

import pytest

from vnode.db.migrate import Migration, load_functions
from vnode.errors import CATALOGUE, SUCCESS_STATUS, ErrorCode, result_status

# Every way a function sets its result code: `code := <expression>;` (a literal, or a CASE of
# literals); the other OUT columns never carry one.
CODE_ASSIGNMENT = re.compile(r"\bcode\s*:=\s*(.*?);", re.DOTALL)
LITERAL = re.compile(r"'([^']*)'")


def codes_in(sql: str) -> set[str]:
    return {
        literal
        for expression in CODE_ASSIGNMENT.findall(sql)
        for literal in LITERAL.findall(expression)
    }


def sql_codes() -> set[str]:
    return set().union(*(codes_in(functions_file.sql) for functions_file in load_functions()))


def test_every_code_a_money_function_answers_is_catalogued() -> None:
    found = sql_codes()
    # The reader works: the codes the ledger is known to answer are all seen.
    assert {
        "ok",
        "pending",
        "unknown_user",
        "insufficient_balance",
        "idempotency_key_reused",
        "payment_in_progress",
        "invoice_already_paid",
        "invoice_mismatch",
        "self_payment",
        "invoice_expired",
        "amount_required",
        "unknown_payment",
        "unknown_invoice",
        "asset_mismatch",
    } <= found
    catalogued = set(SUCCESS_STATUS) | {code.value for code in ErrorCode}
    assert found - catalogued == set()


@pytest.mark.parametrize("functions_file", load_functions(), ids=lambda f: f.name)
def test_no_function_speaks_http(functions_file: Migration) -> None:
    sql = functions_file.sql
    assert not re.search(r"\bOUT status\b|\bstatus\s*:=\s*\d", sql)
    assert "vnode_error(" not in sql.replace("DROP FUNCTION IF EXISTS vnode_error(", "")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ok", 200),
        ("pending", 202),
        ("unknown_user", 404),
        ("insufficient_balance", 409),
        ("idempotency_key_reused", 409),
        ("invoice_expired", 422),
        ("asset_mismatch", 409),
    ],
)
def test_each_code_has_one_status(code: str, status: int) -> None:
    assert result_status(code) == status


def test_every_refusal_has_a_text() -> None:
    assert set(CATALOGUE) == set(ErrorCode)
    assert all(spec.description for spec in CATALOGUE.values())


def test_an_uncatalogued_code_is_a_bug_not_a_status() -> None:
    with pytest.raises(ValueError, match="no_such_code"):
        result_status("no_such_code")
