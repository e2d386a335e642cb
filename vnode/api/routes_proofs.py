"""Proofs of liabilities (issue 16, docs/PROOFS.md): the signed statements, public and without a
key, beside what the node holds; a user's inclusion proof and signed balance statement (scope
read). The statements are published by the proofs worker and `vnode proofs publish`."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from vnode.api import models
from vnode.api.deps import ReadKey, ServicesDep
from vnode.api.errors import documented_errors
from vnode.api.responses import json_response
from vnode.api.schemas import AssetId, ProofBody, UserBody
from vnode.errors import ErrorCode
from vnode.ledger import solvency
from vnode.proofs import store

router = APIRouter(tags=["proofs"])


@router.get(
    "/proofs/key",
    summary="The operator's proof key (no authentication)",
    description="The x-only public key (BIP340) that signs every epoch's statement; `vnode "
    "proofs key` prints the same. Derived from the master seed (m/7633'/1000'/0').",
    responses={**models.documented(models.ProofKey)},
)
async def proof_key(services: ServicesDep) -> Response:
    return json_response({"pubkey": services.signer.proof_pubkey()})


@router.get(
    "/proofs",
    summary="Every asset's newest signed statement, owed against held (no authentication)",
    description="Per asset, the newest epoch's statement and signature, the total users are "
    "owed in it (`owed`) and what the node could spend at the monitor's last look "
    "(`node_spendable`, null while unknown), and the shortfall. A statement proves what is "
    "owed, not that the node's coins exist (docs/PROOFS.md).",
    responses={**models.documented(models.ProofsOverview)},
)
async def proofs(services: ServicesDep) -> Response:
    epochs = await store.latest_epochs(services.pool)
    spendable = services.monitor.spendable
    held = spendable.balances
    owed = {e.statement["asset_id"]: int(e.statement["total"]) for e in epochs}
    rows = {row.asset_id: row for row in solvency.compare(owed, held or {})}
    assets = [
        {
            **e.as_json(),
            "owed": owed[asset],
            "node_spendable": rows[asset].node_spendable if held is not None else None,
            "shortfall": rows[asset].shortfall if held is not None else None,
        }
        for e in epochs
        for asset in [e.statement["asset_id"]]
    ]
    age = round(time.time() - spendable.checked_at, 1) if spendable.checked_at else None
    return json_response(
        {"pubkey": services.signer.proof_pubkey(), "node_checked_age_s": age, "assets": assets}
    )


@router.get(
    "/proofs/{asset_id}/{epoch}",
    summary="One epoch's signed statement (no authentication)",
    responses={
        **models.documented(models.ProofEpoch),
        **documented_errors(
            ErrorCode.INVALID_REQUEST, ErrorCode.INVALID_ASSET_ID, ErrorCode.NO_PROOF
        ),
    },
)
async def proof_epoch(
    asset_id: Annotated[AssetId, Path(description="'BTC' or an RGB asset id")],
    epoch: Annotated[int, Path(ge=1, le=2**63 - 1, description="the epoch's number")],
    services: ServicesDep,
) -> Response:
    found = await store.epoch(services.pool, asset_id, epoch)
    return json_response(found.as_json())


@router.post(
    "/virtual_proof",
    summary="A user's inclusion proof in an epoch (scope: read)",
    description="The user's leaf (balance, salt) and the path of sibling hashes and sums up to "
    "the signed root of the asset's newest epoch, or of `epoch`. Check it with `vnode proofs "
    "verify FILE` or the standalone reference verifier (docs/PROOFS.md).",
    responses={
        **models.documented(models.InclusionProof),
        **documented_errors(
            ErrorCode.INVALID_JSON,
            ErrorCode.INVALID_REQUEST,
            ErrorCode.INVALID_USER_ID,
            ErrorCode.INVALID_ASSET_ID,
            ErrorCode.NO_PROOF,
            ErrorCode.PROOF_PRUNED,
        ),
    },
)
async def virtual_proof(body: ProofBody, _key: ReadKey, services: ServicesDep) -> Response:
    proof = await store.inclusion_proof(services.pool, body.user_id, body.asset_id, body.epoch)
    return json_response(proof)


@router.post(
    "/virtual_statement",
    summary="A user's balances, signed by the user's node key (scope: read)",
    description="Every balance of the user and the id of the user's last journal entry, "
    "signed with BIP340 Schnorr over SHA-256 of the statement's canonical JSON by the key "
    "behind the user's vn_ pubkey (its x-only form), so the user can later prove what the "
    "service told them.",
    responses={
        **models.documented(models.BalanceStatement),
        **documented_errors(
            ErrorCode.INVALID_JSON,
            ErrorCode.INVALID_REQUEST,
            ErrorCode.INVALID_USER_ID,
            ErrorCode.UNKNOWN_USER,
        ),
    },
)
async def virtual_statement(body: UserBody, _key: ReadKey, services: ServicesDep) -> Response:
    return json_response(
        await store.balance_statement(services.pool, services.signer, body.user_id)
    )
