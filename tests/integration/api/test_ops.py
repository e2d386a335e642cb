"""Health, readiness, metrics, the OpenAPI document, the 500 answer and what reaches the log."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import make_settings
from tests.integration.api.test_api_transfer import fund
from tests.integration.api.test_auth import ENDPOINTS
from tests.lightning_support import SimControl
from tests.support import ADMIN_KEY, bearer, new_user_id
from vnode.app import create_app
from vnode.errors import ErrorCode
from vnode.logs import JsonFormatter


async def test_healthz_and_readyz(app_client: httpx.AsyncClient) -> None:
    assert (await app_client.get("/healthz")).json() == {"status": "ok"}
    ready = await app_client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["checks"] == {
        "database": "ok",
        "migrations": "current",
        "node": "ready",
        "workers": "ok",
    }
    assert body["status"] == "ready"
    assert body["node"]["simulated"] is True and "SIMULATED" in body["warning"]
    assert body["node"]["network"] == "regtest"
    btc = next(row for row in body["solvency"]["assets"] if row["asset_id"] == "BTC")
    assert btc["node_spendable"] >= btc["owed"] and btc["shortfall"] == 0
    assert body["workers"]["payment-reconciler"]["last_success_age_s"] is not None


async def test_readyz_reports_pending_migrations(fresh_db: str, tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path), fresh_db)
    async with app.router.lifespan_context(app):
        conn = await asyncpg.connect(fresh_db)
        await conn.execute("DELETE FROM schema_migrations WHERE version = 2")
        await conn.close()
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            response = await client.get("/readyz", headers=bearer(ADMIN_KEY))
            anonymous = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == "1 pending"
    # L3: without a key, only the verdict.
    assert anonymous.status_code == 503 and anonymous.json() == {"status": "not_ready"}


async def test_metrics_count_requests_and_transfers(app_client: httpx.AsyncClient) -> None:
    alice, bob = new_user_id(), new_user_id()
    await fund(app_client, alice, 10)
    await app_client.post(
        "/virtual_transfer", json={"from_user_id": alice, "to_user_id": bob, "amount_msat": 1}
    )
    await app_client.post(
        "/virtual_transfer", json={"from_user_id": alice, "to_user_id": bob, "amount_msat": 100}
    )
    text = (await app_client.get("/metrics")).text
    assert 'vnode_http_requests_total{method="POST",route="/virtual_transfer",status="200"}' in text
    assert 'route="/virtual_transfer",status="409"' in text
    assert 'vnode_http_request_duration_seconds_bucket{le="0.001",method="POST"' in text
    assert 'vnode_transfers_total{asset="BTC",outcome="completed"}' in text
    assert 'vnode_transfers_total{asset="BTC",outcome="insufficient_balance"}' in text


def _stage_counts(text: str) -> dict[str, float]:
    return {
        sample.labels["stage"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "vnode_payment_stage_seconds"
        for sample in family.samples
        if sample.name.endswith("_count")
    }


async def test_metrics_time_each_stage_of_a_payment(
    app_client: httpx.AsyncClient, sim_node: str
) -> None:
    alice = new_user_id()
    await fund(app_client, alice, 1_000_000)
    before = _stage_counts((await app_client.get("/metrics")).text)
    paid = await app_client.post(
        "/virtual_sendpayment",
        json={"user_id": alice, "invoice": await SimControl(sim_node).invoice(100_000)},
    )
    assert paid.status_code == 200 and paid.json()["status"] == "succeeded"
    after = _stage_counts((await app_client.get("/metrics")).text)
    added = {stage: after[stage] - before.get(stage, 0) for stage in after}
    # One of each stage up to the send; the wait for the end at least one sleep and one check.
    assert added["read_invoice"] == added["reserve"] == added["send"] == 1
    assert added["poll_sleep"] >= 1 and added["check"] >= 1


async def test_openapi_documents_every_endpoint_scope_and_error(
    app_client: httpx.AsyncClient,
) -> None:
    spec = (await app_client.get("/openapi.json")).json()
    mentioned = json.dumps(spec)
    for method, path, scope, _ in ENDPOINTS:
        operation = spec["paths"][path][method.lower()]
        assert f"scope: {scope.value}" in operation["summary"], path
        assert operation.get("security"), path
        assert {"401", "403", "413", "500"} <= set(operation["responses"]), path
    for code in ErrorCode:
        assert f"`{code.value}`" in mentioned or code in (
            ErrorCode.NOT_FOUND,
            ErrorCode.METHOD_NOT_ALLOWED,
            ErrorCode.PAYLOAD_TOO_LARGE,
            ErrorCode.UNAVAILABLE,
        ), code
    transfer = spec["paths"]["/virtual_transfer"]["post"]
    assert "Idempotency-Key" in [p["name"] for p in transfer["parameters"]]
    assert "409" in transfer["responses"]
    assert "insufficient_balance" in transfer["responses"]["409"]["description"]


async def test_unknown_route_and_method(app_client: httpx.AsyncClient) -> None:
    missing = await app_client.post("/nope", json={})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = await app_client.get("/virtual_transfer")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


async def test_unexpected_error_answers_500_with_only_the_request_id(
    fresh_db: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A corrupted cached balance trips the database's guard: 500, details only in the log."""
    app = create_app(make_settings(tmp_path, access_log=True), fresh_db)
    alice, bob = new_user_id(), new_user_id()
    caplog.set_level(logging.INFO)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t", headers=bearer(ADMIN_KEY)
        ) as client,
    ):
        await fund(client, alice, 1000)
        conn = await asyncpg.connect(fresh_db)
        await conn.execute("UPDATE ln_user_balances SET spendable = 5000 WHERE user_id = $1", alice)
        await conn.close()
        response = await client.post(
            "/virtual_transfer",
            json={"from_user_id": alice, "to_user_id": bob, "amount_msat": 2000},
        )
    assert response.status_code == 500
    body = response.json()
    assert body["error"]["code"] == "internal_error"
    assert "corruption" not in response.text and "Traceback" not in response.text
    assert response.headers["x-request-id"] == body["request_id"]
    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records]
    failure = [line for line in lines if line["msg"] == "unhandled error"]
    assert failure and failure[0]["request_id"] == body["request_id"]
    assert "ledger corruption" in failure[0]["exc"]
    access = [line for line in lines if line["msg"] == "request" and line.get("status") == 500]
    assert access and access[0]["route"] == "/virtual_transfer"
    # No key ever reaches the log, not even the admin key used on every request.
    assert ADMIN_KEY not in "\n".join(formatter.format(r) for r in caplog.records)


async def test_out_of_range_ids_are_the_callers_error(app_client: httpx.AsyncClient) -> None:
    """Found by schemathesis: an id past bigint answered 500 instead of 422."""
    huge = 2**90
    answers = [
        await app_client.delete(f"/admin/webhooks/{huge}"),
        await app_client.get("/admin/webhooks/failed", params={"webhook_id": huge}),
        await app_client.post("/admin/webhooks/retry", json={"webhook_id": huge}),
    ]
    for response in answers:
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_request"
