"""Real answers of the running app fit the response models (vnode/api/models.py) exactly.

The models are declared once and serve the OpenAPI document and `vnode.client`; most of the
bodies they describe are built elsewhere, by the money functions in SQL or by Python services.
So every answer below must: be the model the OpenAPI document names for its path and status,
validate against it, and carry no key the model lacks (at every level of nesting). A field added
to a body but not to its model, or a model field no body has, fails here.
"""

from __future__ import annotations

import inspect
import types
from typing import Any, Union, get_args, get_origin

import httpx
from fastapi import FastAPI
from pydantic import BaseModel

from tests.integration.proofs.support import publish_now
from tests.lightning_support import SimControl
from tests.support import RGB_ASSET, new_user_id
from vnode.api import models


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return [annotation]
    if get_origin(annotation) in (Union, types.UnionType, tuple, list):
        return [m for arg in get_args(annotation) for m in _models_in(arg)]
    return []


def _fits_exactly(model: type[BaseModel], data: Any, where: str) -> None:
    model.model_validate(data)
    assert isinstance(data, dict)
    unknown = set(data) - set(model.model_fields)
    assert not unknown, f"{where}: {model.__name__} has no field {sorted(unknown)}"
    for name, info in model.model_fields.items():
        value = data.get(name)
        for inner in _models_in(info.annotation):
            items = value if isinstance(value, list) else [value] if value is not None else []
            for i, item in enumerate(items):
                _fits_exactly(inner, item, f"{where}.{name}[{i}]")


class Answers:
    """Checks answers against the model the app's OpenAPI document names for them."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        app: FastAPI = client.app  # type: ignore[attr-defined]
        self.client = client
        self.spec = app.openapi()
        self.seen: dict[str, set[tuple[str, int]]] = {}

    def model_of(self, path: str, method: str, status: int) -> type[models.Answer]:
        documented = self.spec["paths"][path][method]["responses"][str(status)]
        name = documented["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        model = getattr(models, name)
        assert inspect.isclass(model) and issubclass(model, models.Answer)
        return model

    async def post(
        self,
        path: str,
        body: dict[str, Any],
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        response = await self.client.post(path, json=body, headers=headers)
        return self.check(path, "post", response, status)

    def check(
        self, path: str, method: str, response: httpx.Response, status: int
    ) -> dict[str, Any]:
        assert response.status_code == status, (path, response.text)
        model = self.model_of(path, method, status)
        answer: dict[str, Any] = response.json()
        _fits_exactly(model, answer, path)
        self.seen.setdefault(model.__name__, set()).add((path, status))
        return answer


async def test_every_answer_fits_its_model(app_client: httpx.AsyncClient, sim_node: str) -> None:
    answers, sim = Answers(app_client), SimControl(sim_node)
    alice, bob = new_user_id(), new_user_id()
    await answers.post("/virtual_node", {"user_id": alice})
    await answers.post(
        "/admin/credit", {"user_id": alice, "amount_msat": 20_000_000, "reason": "fund"}
    )
    await answers.post(
        "/admin/credit",
        {"user_id": alice, "asset_id": RGB_ASSET, "asset_amount": 500, "reason": "fund rgb"},
    )
    await answers.post("/admin/debit", {"user_id": alice, "amount_msat": 1000, "reason": "fix"})
    await answers.post(
        "/admin/debit",
        {"user_id": alice, "asset_id": RGB_ASSET, "asset_amount": 1, "reason": "fix rgb"},
    )
    await answers.post(
        "/virtual_transfer",
        {"from_user_id": alice, "to_user_id": bob, "amount_sats": 5, "memo": "tip"},
    )
    await answers.post(
        "/virtual_transfer",
        {"from_user_id": alice, "to_user_id": bob, "asset_id": RGB_ASSET, "asset_amount": 7},
    )
    await answers.post("/virtual_assetbalance", {"user_id": bob})
    await answers.post("/virtual_assetbalance", {"user_id": bob, "asset_id": RGB_ASSET})
    await answers.post("/virtual_balances", {"user_id": alice})

    # Lightning: an outside payment that succeeds, one that fails, one still pending; an
    # RGB payment; an internal one; invoices of each kind and quotes.
    await answers.post(
        "/virtual_sendpayment", {"user_id": alice, "invoice": await sim.invoice(100_000)}
    )
    await sim.faults(next_payment="fail")
    failed = await answers.post(
        "/virtual_sendpayment", {"user_id": alice, "invoice": await sim.invoice(2000)}
    )
    assert failed["status"] == "failed"
    await answers.post(
        "/virtual_payment", {"user_id": alice, "payment_hash": failed["payment_hash"]}
    )
    await sim.faults(next_payment="hold")
    held = await answers.post(
        "/virtual_sendpayment", {"user_id": alice, "invoice": await sim.invoice(3000)}, status=202
    )
    await answers.post(
        "/virtual_payment", {"user_id": alice, "payment_hash": held["payment_hash"]}, status=202
    )
    await sim.release(held["payment_hash"], "fail")
    rgb = await sim.invoice(3_000_000, asset_id=RGB_ASSET, asset_amount=50)
    await answers.post("/virtual_decodeinvoice", {"invoice": rgb})
    await answers.post("/virtual_sendpayment", {"user_id": alice, "invoice": rgb})

    btc = await answers.post(
        "/virtual_lninvoice", {"user_id": bob, "amt_msat": 9000, "description": "coffee"}
    )
    await answers.post(
        "/virtual_lninvoice", {"user_id": bob, "asset_id": RGB_ASSET, "asset_amount": 3}
    )
    amountless = await answers.post("/virtual_lninvoice", {"user_id": bob})
    await answers.post("/virtual_decodeinvoice", {"invoice": amountless["invoice"]})
    await answers.post("/virtual_decodeinvoice", {"invoice": btc["invoice"]})
    await answers.post("/virtual_sendpayment", {"user_id": alice, "invoice": btc["invoice"]})
    await answers.post("/virtual_rgbinvoice", {"user_id": bob, "asset_id": "BTC"})
    await answers.post("/virtual_rgbinvoice", {"user_id": bob, "asset_id": RGB_ASSET})
    await answers.post("/virtual_lndhub_account", {"user_id": bob, "scope": "invoice"})

    # Per-user limits: set (the answer of the change) and read.
    await answers.post("/admin/limits", {"user_id": bob, "receive_30d_msat": 10**12})
    answers.check(
        "/admin/limits/{user_id}", "get", await app_client.get(f"/admin/limits/{bob}"), 200
    )

    # History after all of it: transfers both ways, operator moves, payments.
    for user in (alice, bob):
        page = await answers.post("/virtual_history", {"user_id": user, "limit": 200})
        assert page["next_cursor"] is None
    first = await answers.post("/virtual_history", {"user_id": alice, "limit": 1})
    assert first["next_cursor"] is not None

    # Proofs of liabilities (issue 16): an epoch of every asset, then each answer about it.
    services = app_client.app.state.services  # type: ignore[attr-defined]
    await publish_now(services.pool, services.signer)
    proof = await answers.post("/virtual_proof", {"user_id": alice})
    await answers.post("/virtual_statement", {"user_id": alice})
    epoch = proof["statement"]["epoch"]
    for path, url in [
        ("/proofs/key", "/proofs/key"),
        ("/proofs", "/proofs"),
        ("/proofs/{asset_id}/{epoch}", f"/proofs/BTC/{epoch}"),
    ]:
        answers.check(path, "get", await app_client.get(url), 200)

    answers.check("/readyz", "get", await app_client.get("/readyz"), 200)
    transport = httpx.ASGITransport(app=app_client.app)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url="http://vnode") as anonymous:
        answers.check("/readyz", "get", await anonymous.get("/readyz"), 200)

    # Every response model was met in a real answer.
    public = {
        name
        for name, value in vars(models).items()
        if inspect.isclass(value)
        and issubclass(value, models.Answer)
        and value is not models.Answer
        and not name.startswith("_")
    }
    nested = {  # checked inside the others
        "BalanceAfter",
        "AssetBalance",
        "HistoryEntry",
        "LimitValues",
        "LimitUsage",
        "ProofStatement",
        "ProofStep",
        "ProofAsset",
        "StatementBalance",
        "UserStatement",
    }
    # Answered only with VNODE_PUBLIC_URL set: test_addresses.py checks them with this class.
    elsewhere = {"LightningAddress"}
    assert set(answers.seen) == public - nested - elsewhere, answers.seen


def test_the_documented_examples_fit_their_models() -> None:
    for model in (
        models.VirtualNode,
        models.Transfer,
        models.UserLimits,
        models.LightningAddress,
        models.ProofKey,
        models.ProofEpoch,
        models.ProofsOverview,
        models.InclusionProof,
        models.BalanceStatement,
    ):
        examples = model.model_json_schema()["examples"]
        for example in examples:
            _fits_exactly(model, example, model.__name__)
