"""The typed client (vnode/client.py) against the real app in-process and the simulated node."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.payments.test_payments import reserve_for
from tests.lightning_support import SimControl
from tests.support import ADMIN_KEY, RGB_ASSET, new_user_id
from vnode.client import RetryPolicy, VNodeClient, VNodeError, VNodeUnavailable


@pytest.fixture
async def vnode(app_client: httpx.AsyncClient) -> AsyncIterator[VNodeClient]:
    transport = httpx.ASGITransport(app=app_client.app)  # type: ignore[attr-defined]
    async with VNodeClient("http://vnode", ADMIN_KEY, transport=transport) as client:
        yield client


async def test_fund_transfer_and_balances(vnode: VNodeClient) -> None:
    alice, bob = new_user_id(), new_user_id()
    credit = await vnode.admin_credit(alice, amount_msat=10_000_000, reason="welcome")
    assert credit.kind == "admin_credit" and credit.user_id == alice
    assert credit.amount_msat == 10_000_000 and credit.balance.balance_msat == 10_000_000

    node = await vnode.node(alice)
    assert node.node_id == f"vn_{alice}" and len(node.pubkey) == 66

    sent = await vnode.transfer(alice, bob, amount_sats=5000, memo="tip")
    assert sent.status == "completed" and sent.fee_msat == 0
    assert (sent.from_node_id, sent.to_node_id) == (f"vn_{alice}", f"vn_{bob}")
    assert sent.amount_msat == 5_000_000 and sent.amount_sats == 5000
    assert sent.sender_balance.balance_msat == 5_000_000

    bal = await vnode.asset_balance(str(bob))
    assert bal.user_id == bob and bal.balance_msat == bal.spendable_msat == 5_000_000
    assert bal.spendable_base_units == 5_000_000 and bal.pending_msat == 0

    await vnode.admin_credit(bob, asset_id=RGB_ASSET, asset_amount=70, reason="rgb")
    every = await vnode.balances(f"vn_{bob}")
    btc, rgb = every.get("BTC"), every.get(RGB_ASSET)
    assert btc is not None and btc.balance_sats == 5000
    assert rgb is not None and rgb.balance == rgb.spendable_base_units == 70

    debit = await vnode.admin_debit(bob, amount_msat=1_000_000, reason="fix")
    assert debit.balance.balance_msat == 4_000_000


async def test_history_paging(vnode: VNodeClient) -> None:
    alice, bob = new_user_id(), new_user_id()
    await vnode.admin_credit(alice, amount_msat=1_000_000, reason="fund")
    for i in range(4):
        await vnode.transfer(alice, bob, amount_msat=1000 + i, memo=f"m{i}")
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = await vnode.history(alice, limit=2, cursor=cursor)
        pages += 1
        seen.extend(entry.id for entry in page.transactions)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == 5 and seen == sorted(seen, reverse=True) and pages >= 3
    newest = (await vnode.history(alice, limit=1)).transactions[0]
    assert newest.direction == "out" and newest.amount_msat == 1003 and newest.memo == "m3"


async def test_idempotent_replay_and_reuse(vnode: VNodeClient) -> None:
    alice, bob = new_user_id(), new_user_id()
    await vnode.admin_credit(alice, amount_msat=100_000, reason="fund")
    key = f"client-test-{alice}"
    first = await vnode.transfer(alice, bob, amount_msat=40_000, idempotency_key=key)
    again = await vnode.transfer(alice, bob, amount_msat=40_000, idempotency_key=key)
    assert again == first
    assert (await vnode.asset_balance(alice)).balance_msat == 60_000
    with pytest.raises(VNodeError) as caught:
        await vnode.transfer(alice, bob, amount_msat=1, idempotency_key=key)
    assert caught.value.code == "idempotency_key_reused" and caught.value.status == 409


async def test_error_mapping(vnode: VNodeClient) -> None:
    alice, bob = new_user_id(), new_user_id()
    await vnode.admin_credit(alice, amount_msat=1000, reason="fund")
    with pytest.raises(VNodeError) as caught:
        await vnode.transfer(alice, bob, amount_msat=2000)
    error = caught.value
    assert (error.status, error.code) == (409, "insufficient_balance")
    assert error.message and error.request_id
    assert error.idempotency_key is not None  # generated, so a retry is always possible
    assert not isinstance(error, VNodeUnavailable)

    with pytest.raises(VNodeError) as caught:
        await vnode.asset_balance(new_user_id())
    assert (caught.value.status, caught.value.code) == (404, "unknown_user")
    with pytest.raises(VNodeError) as caught:
        await vnode.transfer(alice, bob, amount_msat=1, amount_sats=1)
    assert caught.value.code == "amount_fields"
    with pytest.raises(VNodeError) as caught:
        await vnode.history(alice, cursor="nope")
    assert caught.value.code == "invalid_cursor"


async def test_wrong_key_and_non_json_answers(app_client: httpx.AsyncClient) -> None:
    transport = httpx.ASGITransport(app=app_client.app)  # type: ignore[attr-defined]
    async with VNodeClient("http://vnode", "wrong-" + "x" * 30, transport=transport) as bad:
        with pytest.raises(VNodeError) as caught:
            await bad.balances(new_user_id())
        assert (caught.value.status, caught.value.code) == (401, "unauthorized")

    def plain(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>bad gateway</html>")

    async with VNodeClient(
        "http://vnode", ADMIN_KEY, transport=httpx.MockTransport(plain)
    ) as proxied:
        with pytest.raises(VNodeError) as caught:
            await proxied.node(1)
        assert (caught.value.status, caught.value.code) == (502, "unexpected_response")


async def test_pay_outside_invoice_and_ln_invoice(vnode: VNodeClient, sim_node: str) -> None:
    alice = new_user_id()
    await vnode.admin_credit(alice, amount_msat=1_000_000, reason="fund")
    invoice = await SimControl(sim_node).invoice(100_000)
    paid = await vnode.send_payment(alice, invoice)
    assert paid.status == "succeeded" and paid.kind == "external"
    assert paid.preimage is not None
    assert hashlib.sha256(bytes.fromhex(paid.preimage)).hexdigest() == paid.payment_hash
    assert paid.fee_msat == paid.fee_reserve_msat == reserve_for(100_000) == 51_000
    assert await vnode.payment(alice, paid.payment_hash) == paid
    assert (await vnode.asset_balance(alice)).balance_msat == 1_000_000 - 100_000 - 51_000

    bob = new_user_id()
    created = await vnode.ln_invoice(bob, amt_msat=50_000, description="coffee")
    assert created.invoice.startswith("ln") and len(created.payment_hash) == 64
    assert created.node_id == f"vn_{bob}" and created.amount_msat == 50_000
    internal = await vnode.send_payment(alice, created.invoice)
    assert internal.status == "succeeded" and internal.kind == "internal"
    assert (await vnode.asset_balance(bob)).balance_msat == 50_000

    btc = await vnode.rgb_invoice(bob, "BTC", duration_seconds=600)
    assert btc.kind == "bolt11" and btc.payment_hash is not None

    with pytest.raises(VNodeError) as caught:
        await vnode.payment(alice, "00" * 32)
    assert caught.value.code == "unknown_payment"


async def test_decode_invoice_quotes_without_moving_money(
    vnode: VNodeClient, sim_node: str
) -> None:
    sim = SimControl(sim_node)
    outside = await sim.invoice(2_000_000)
    quote = await vnode.decode_invoice(outside)
    assert quote.amount_msat == quote.invoice_amount_msat == 2_000_000
    # M4: the default reserve covers LDK's own fee cap, 50 sat + 1%, and the quote says so.
    assert not quote.internal and quote.fee_reserve_msat == 50_000 + 20_000
    assert quote.fee_reserve_rule is not None and "50000 msat + 1%" in quote.fee_reserve_rule
    assert quote.total_msat == 2_070_000 and len(quote.payment_hash) == 64
    small = await vnode.decode_invoice(await sim.invoice(1000))
    assert small.fee_reserve_msat == reserve_for(1000) == 50_010

    bob, carol = new_user_id(), new_user_id()
    ours = await vnode.ln_invoice(bob, description="tea")
    amountless = await vnode.decode_invoice(ours.invoice)
    assert amountless.internal and amountless.description == "tea"
    assert amountless.amount_msat is None and amountless.fee_reserve_msat is None
    priced = await vnode.decode_invoice(ours.invoice, amt_msat=7000)
    assert priced.amount_msat == priced.total_msat == 7000 and priced.fee_reserve_msat == 0

    with pytest.raises(VNodeError) as caught:
        await vnode.decode_invoice(outside, amt_msat=1)
    assert caught.value.code == "amount_mismatch"
    with pytest.raises(VNodeError) as caught:
        await vnode.decode_invoice("lnbc1notaninvoice")
    assert (caught.value.status, caught.value.code) == (422, "invalid_invoice")
    # Quoting never reserved or paid anything: the invoice is still payable.
    await vnode.admin_credit(carol, amount_msat=10_000, reason="fund")
    assert (await vnode.send_payment(carol, ours.invoice, amt_msat=7000)).status == "succeeded"


async def test_ready(vnode: VNodeClient) -> None:
    readiness = await vnode.ready()
    assert readiness.ready and readiness.checks is not None
    assert readiness.checks["database"] == "ok"


async def test_transport_failure_is_unavailable(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "never-log-" + "s" * 30
    quick = RetryPolicy(attempts=3, base_s=0.01, cap_s=0.02)
    async with VNodeClient("http://127.0.0.1:9", secret, timeout_s=2, retry=quick) as down:
        assert secret not in repr(down)
        with pytest.raises(VNodeUnavailable) as caught:
            await down.transfer(1, 2, amount_msat=1000, idempotency_key="retry-me")
        assert down.resends == 2  # sent three times in all, with the same key, then raised
        assert isinstance(caught.value, VNodeError)
        assert caught.value.status == 0 and caught.value.code == "transport_error"
        assert caught.value.idempotency_key == "retry-me"
        with pytest.raises(VNodeUnavailable) as generated:
            await down.send_payment(1, "lnbc1")
        assert generated.value.idempotency_key
        resent = down.resends
        with pytest.raises(VNodeUnavailable):
            await down.ready()
        assert down.resends == resent  # /readyz is never resent: its 503 is an answer
    assert secret not in caplog.text
    assert secret not in str(caught.value) and secret not in repr(caught.value)


def test_the_client_imports_no_server_code() -> None:
    """The bot imports vnode.client alone: its models (vnode/api/models.py, the server's own)
    must not pull in FastAPI, the database driver or the service."""
    probe = (
        "import sys, json, vnode.client; print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('fastapi', 'starlette', 'asyncpg', 'uvicorn')"
        " or m.startswith(('vnode.app', 'vnode.ledger', 'vnode.payments', 'vnode.db')))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


async def test_limits_and_a_limit_refusal(vnode: VNodeClient) -> None:
    """The admin limit calls, and a limit_exceeded refusal with its fields (docs/LIMITS.md)."""
    alice, bob = new_user_id(), new_user_id()
    await vnode.admin_credit(alice, amount_msat=10_000, reason="fund")
    limits = await vnode.set_limits(alice, {"send_max_msat": 2_000, "fee_max_msat": 0})
    assert limits.effective.send_max_msat == 2_000 and limits.send_headroom_msat == 2_000
    with pytest.raises(VNodeError) as refused:
        await vnode.transfer(alice, bob, amount_msat=2_001)
    assert refused.value.status == 409 and refused.value.code == "limit_exceeded"
    assert refused.value.fields["limit"] == "send_max_msat"
    assert refused.value.fields["headroom_msat"] == 2_000
    cleared = await vnode.set_limits(alice, {"send_max_msat": None})
    assert cleared.overrides.send_max_msat is None and cleared.overrides.fee_max_msat == 0
    assert (await vnode.limits(f"vn_{alice}")) == cleared
