"""The RLN adapter against the fixture table (rln_cases.py), over real HTTP.

For every row: the adapter makes exactly the scripted requests (method, path, JSON body,
bearer token), each request body is one the spec allows, and the call returns the row's value
or raises the row's exception class. Separately, every canned 200 answer must be one the spec
describes, so the fixtures cannot drift from the real node.
"""

from __future__ import annotations

import inspect
import time

import httpx
import pytest

from tests.contract.lightning import spec
from tests.contract.lightning.hostile_cases import HOSTILE_CASES
from tests.contract.lightning.invoices import NOW
from tests.contract.lightning.rln_cases import CASES as NORMAL_CASES
from tests.contract.lightning.rln_cases import Case
from tests.contract.lightning.server import Exchange, ScriptedNode, serve
from vnode.lightning.base import LightningBackend, NodeError
from vnode.lightning.rln import RlnBackend

TOKEN = "contract-test-token"
READ_TIMEOUT_S = 0.4  # the "hang" rows hold the answer for 3 s
CASES = NORMAL_CASES + HOSTILE_CASES


def backend(url: str, token: str | None = TOKEN) -> RlnBackend:
    return RlnBackend(
        url, token=token, connect_timeout_s=2.0, read_timeout_s=READ_TIMEOUT_S, clock=lambda: NOW
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_contract(case: Case, scripted_node: tuple[ScriptedNode, str]) -> None:
    node, url = scripted_node
    node.load(case.exchanges, TOKEN)
    adapter = backend(url)
    started = time.monotonic()
    try:
        if case.raises is None:
            assert await case.call(adapter) == case.returns
        else:
            with pytest.raises(case.raises) as caught:
                await case.call(adapter)
            if case.error_name is not None:
                assert isinstance(caught.value, NodeError)
                assert caught.value.name == case.error_name
    finally:
        await adapter.close()
    assert node.mismatches == []
    assert node.unanswered() == [], "the adapter skipped scripted requests"
    for request in node.requests:
        assert spec.request_errors(request.method, request.path, request.body) == [], request
    # A hang row must fail on the client's read timeout, not wait for the server.
    assert time.monotonic() - started < 2.5


def test_canned_answers_follow_the_spec() -> None:
    checked = 0
    for case in CASES:
        for exchange in case.exchanges:
            if exchange.kind != "answer" or exchange.raw is not None or not exchange.conforms:
                continue
            if exchange.status == 200:
                errors = spec.answer_errors(exchange.method, exchange.path, exchange.answer)
                assert errors == [], (case.id, errors)
            else:
                # The node's error shape (shared/specs/README.md); the spec has no schema for it.
                answer = exchange.answer
                assert set(answer) == {"error", "code", "name"}, case.id
                assert answer["code"] == exchange.status, case.id
            checked += 1
    assert checked > 50


def test_every_backend_method_has_rows() -> None:
    methods = {
        name
        for name, _ in inspect.getmembers(LightningBackend, inspect.isfunction)
        if not name.startswith("_") and name != "close"
    }
    assert len(methods) >= 10, methods
    covered = {case.method for case in CASES}
    assert methods <= covered, methods - covered
    assert len({case.id for case in CASES}) == len(CASES), "case ids must be unique"


def test_rln_backend_is_a_lightning_backend() -> None:
    adapter: LightningBackend = RlnBackend("http://127.0.0.1:9")
    assert adapter.name == "rln"
    caps = adapter.capabilities
    assert (caps.takes_fee_limit, caps.reports_fee, caps.pushes_inbound, caps.rgb) == (
        False,
        False,
        False,
        True,
    )


async def test_no_token_sends_no_authorization(scripted_node: tuple[ScriptedNode, str]) -> None:
    node, url = scripted_node
    node.load((Exchange("GET", "/listchannels", answer={"channels": []}),), None)
    adapter = backend(url, token=None)
    try:
        assert await adapter.spendable_balances() == {"BTC": 0}
    finally:
        await adapter.close()
    assert node.mismatches == []
    assert node.requests[0].authorization is None


async def test_drop_is_a_real_drop(scripted_node: tuple[ScriptedNode, str]) -> None:
    """The "drop" rows must close the connection without any answer (not a 500)."""
    node, url = scripted_node
    node.load((Exchange("GET", "/nodeinfo", kind="drop"),), None)
    async with httpx.AsyncClient(base_url=url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/nodeinfo")
    assert node.mismatches == []


async def test_connection_refused_is_unreachable() -> None:
    # A port nobody listens on: the node is down.
    with serve(ScriptedNode()) as url:
        pass
    adapter = backend(url)
    try:
        with pytest.raises(NodeError) as caught:
            await adapter.node_info()
    finally:
        await adapter.close()
    assert type(caught.value).__name__ == "NodeUnreachable"
    assert caught.value.name == "ConnectError"
