"""The proofs' endpoints (vnode/api/routes_proofs.py) in the real app: public statements beside
what the node holds, a user's inclusion proof that a verifier written from issue 16's text
accepts with the key GET /proofs/key gives, and a balance statement signed by the user's own
node key; refusals with their codes."""

from __future__ import annotations

import hashlib
import json

import httpx
from coincurve import PublicKeyXOnly

from tests import proofs_verifier
from tests.integration.proofs.support import publish_now
from tests.support import bearer, new_user_id
from vnode.apikeys import Scope


async def _fund(client: httpx.AsyncClient, user: int, amount_msat: int) -> None:
    response = await client.post(
        "/admin/credit", json={"user_id": user, "amount_msat": amount_msat, "reason": "fund"}
    )
    assert response.status_code == 200, response.text


async def test_a_users_proof_verifies_with_the_published_key(
    app_client: httpx.AsyncClient, scoped_keys: dict[Scope, str]
) -> None:
    user = new_user_id()
    await _fund(app_client, user, 123_456_000)
    services = app_client.app.state.services  # type: ignore[attr-defined]
    (btc, *_) = await publish_now(services.pool, services.signer)

    transport = httpx.ASGITransport(app=app_client.app)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url="http://vnode") as anonymous:
        pubkey = (await anonymous.get("/proofs/key")).json()["pubkey"]
        overview = (await anonymous.get("/proofs")).json()
        one = await anonymous.get(f"/proofs/BTC/{btc.epoch}")
        # A read key is needed for a user's proof.
        assert (await anonymous.post("/virtual_proof", json={"user_id": user})).status_code == 401
    assert pubkey == services.signer.proof_pubkey()
    (row,) = [a for a in overview["assets"] if a["statement"]["asset_id"] == "BTC"]
    assert row["owed"] == row["statement"]["total"] >= 123_456_000
    assert one.json()["statement"] == btc.statement and one.json()["pruned"] is False

    read = bearer(scoped_keys[Scope.READ])
    answer = await app_client.post("/virtual_proof", json={"user_id": user}, headers=read)
    assert answer.status_code == 200, answer.text
    proof = answer.json()
    assert proof["balance"] == 123_456_000 and proof["user_id"] == user
    assert proofs_verifier.check(proof, pubkey)
    proof["balance"] += 1
    assert not proofs_verifier.check(proof, pubkey)


async def test_a_balance_statement_is_signed_by_the_users_node_key(
    app_client: httpx.AsyncClient, scoped_keys: dict[Scope, str]
) -> None:
    user = new_user_id()
    await _fund(app_client, user, 5_000)
    read = bearer(scoped_keys[Scope.READ])
    answer = await app_client.post("/virtual_statement", json={"user_id": user}, headers=read)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    statement = body["statement"]
    node = (await app_client.post("/virtual_node", json={"user_id": user})).json()
    assert statement["node_pubkey"] == node["pubkey"]
    assert statement["balances"] == [{"asset_id": "BTC", "balance": 5_000, "spendable": 5_000}]
    assert isinstance(statement["last_tx_id"], int)
    digest = hashlib.sha256(
        json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    ).digest()
    xonly = PublicKeyXOnly(bytes.fromhex(node["pubkey"])[1:])
    assert xonly.verify(bytes.fromhex(body["signature"]), digest)
    statement["balances"][0]["balance"] += 1
    tampered = hashlib.sha256(
        json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    ).digest()
    assert not xonly.verify(bytes.fromhex(body["signature"]), tampered)


async def test_refusals_have_their_codes(app_client: httpx.AsyncClient) -> None:
    services = app_client.app.state.services  # type: ignore[attr-defined]
    await publish_now(services.pool, services.signer)
    stranger = new_user_id()
    cases = [
        ("post", "/virtual_proof", {"user_id": stranger}, 404, "no_proof"),
        ("post", "/virtual_proof", {"user_id": 1, "epoch": 10**15}, 404, "no_proof"),
        ("post", "/virtual_proof", {"user_id": 1, "epoch": 0}, 422, "invalid_request"),
        ("post", "/virtual_proof", {"user_id": 1, "asset_id": "ETH"}, 422, "invalid_asset_id"),
        ("post", "/virtual_statement", {"user_id": stranger}, 404, "unknown_user"),
        ("post", "/virtual_statement", {"user_id": "x"}, 422, "invalid_user_id"),
        ("get", "/proofs/BTC/0", None, 422, "invalid_request"),
        ("get", "/proofs/BTC/999999999999", None, 404, "no_proof"),
        ("get", "/proofs/ETH/1", None, 422, "invalid_asset_id"),
    ]
    for method, path, body, status, code in cases:
        if method == "post":
            response = await app_client.post(path, json=body)
        else:
            response = await app_client.get(path)
        assert response.status_code == status, (path, body, response.text)
        assert response.json()["error"]["code"] == code, (path, body, response.text)
