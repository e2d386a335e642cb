"""The Merkle sum tree (vnode/proofs/tree.py) against the reference verifier and against a
verifier written from issue 16's text alone (tests/proofs_verifier.py): every leaf's path
verifies; any flipped byte, sibling sum, balance or statement field fails; the builder refuses a
negative or oversized sum."""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

import pytest

from tests import proofs_verifier
from vnode.keys import SoftwareSigner
from vnode.proofs import verifier
from vnode.proofs.tree import (
    CHUNK_LEAVES,
    TreeBuilder,
    TreeError,
    chunk_size,
    combine,
    leaf_node,
    pad_node,
    path,
)

SIGNER = SoftwareSigner(bytes.fromhex("22" * 32))
PUBKEY = SIGNER.proof_pubkey()


Leaf = tuple[int, int, bytes]  # user id, balance, salt


def _leaves(balances: list[int]) -> list[Leaf]:
    leaves = [(i + 1, b, secrets.token_bytes(32)) for i, b in enumerate(balances)]
    # The published order: by SHA-256 of the salt.
    return sorted(leaves, key=lambda leaf: hashlib.sha256(leaf[2]).digest())


def _proofs(balances: list[int], positions: list[int] | None = None) -> list[dict[str, Any]]:
    """Build the tree of `balances`, sign its statement, answer the proofs at `positions`."""
    leaves, pad_seed = _leaves(balances), secrets.token_bytes(32)
    builder = TreeBuilder(len(leaves), pad_seed)
    for leaf in leaves:
        builder.add(*leaf)
    tree = builder.finish()
    statement = {
        "asset_id": "BTC",
        "epoch": 7,
        "root": tree.root.hex(),
        "total": tree.total,
        "leaves": tree.leaves,
        "created_at": "2026-12-06T17:00:00.000000Z",
        "ledger_position": 99,
    }
    signature = SIGNER.sign_proof(verifier.statement_digest(statement)).hex()
    chunk = chunk_size(tree.leaves)
    out = []
    for position in range(len(leaves)) if positions is None else positions:
        start = position - position % chunk
        nodes = [leaf_node(*leaf) for leaf in leaves[start : start + chunk]]
        nodes += [pad_node(pad_seed, p) for p in range(start + len(nodes), start + chunk)]
        user_id, balance, salt = leaves[position]
        out.append(
            {
                "statement": statement,
                "signature": signature,
                "user_id": user_id,
                "balance": balance,
                "salt": salt.hex(),
                "path": path(nodes, position, tree.leaves, tree.upper),
            }
        )
    return out


def _both_accept(proof: dict[str, Any]) -> bool:
    independent = proofs_verifier.check(proof, PUBKEY)
    try:
        verifier.verify_proof(proof, PUBKEY)
        reference = True
    except verifier.ProofError:
        reference = False
    assert independent == reference, proof
    return reference


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 37])
def test_every_leaf_of_a_small_tree_verifies(count: int) -> None:
    balances = [0 if i % 4 == 0 else 1000 * i for i in range(count)]
    proofs = _proofs(balances)
    assert sorted(p["balance"] for p in proofs) == sorted(balances)
    for proof in proofs:
        assert _both_accept(proof)
        assert proof["statement"]["total"] == sum(balances)


def test_leaves_across_chunks_and_padding_verify() -> None:
    count = 2 * CHUNK_LEAVES + 5  # three chunks of leaves, a fourth of padding only
    edges = [0, 1, CHUNK_LEAVES - 1, CHUNK_LEAVES, 2 * CHUNK_LEAVES, count - 1]
    proofs = _proofs([i * 7 for i in range(count)], edges)
    assert proofs[0]["statement"]["leaves"] == 4 * CHUNK_LEAVES
    assert all(_both_accept(p) for p in proofs)


def test_the_reference_verifier_checks_the_expected_balance() -> None:
    (proof,) = _proofs([5, 6], [0])
    verifier.verify_proof(proof, PUBKEY, expected_balance=proof["balance"])
    with pytest.raises(verifier.ProofError, match="not"):
        verifier.verify_proof(proof, PUBKEY, expected_balance=proof["balance"] + 1)


def test_flipping_any_byte_of_a_proof_makes_it_fail() -> None:
    (proof,) = _proofs([3000, 0, 12, 999_999, 5], [2])
    text = verifier.canonical(proof)
    for index in range(len(text)):
        flipped = bytearray(text)
        flipped[index] ^= 0x01
        try:
            tampered = json.loads(flipped)
        except ValueError:
            continue  # no longer JSON: nothing to verify
        assert not _both_accept(tampered), (index, text[index : index + 1])


def test_changed_sums_balances_and_statements_fail() -> None:
    (proof,) = _proofs([10, 20, 30, 40, 50], [1])
    changes: list[dict[str, Any]] = []
    for i in range(len(proof["path"])):
        for delta in (1, -1, 2**64):
            path = [dict(step) for step in proof["path"]]
            path[i]["sum"] += delta
            changes.append({**proof, "path": path})
    for delta in (1, -1, -proof["balance"] - 1):
        changes.append({**proof, "balance": proof["balance"] + delta})
    for key, value in [("total", 1), ("epoch", 1), ("ledger_position", 1), ("leaves", 8)]:
        statement = {**proof["statement"], key: proof["statement"][key] + value}
        changes.append({**proof, "statement": statement})
    changes.append({**proof, "user_id": proof["user_id"] + 1})
    changes.append({**proof, "path": proof["path"][:-1]})
    for changed in changes:
        assert not _both_accept(changed)


def test_the_builder_refuses_negative_and_oversized_sums() -> None:
    for balances in ([5, -1, 7], [2**64], [2**63, 2**63], [2**64 - 1, 1]):
        builder = TreeBuilder(len(balances), secrets.token_bytes(32))
        with pytest.raises(TreeError):
            for leaf in _leaves(balances):
                builder.add(*leaf)
            builder.finish()
    with pytest.raises(TreeError):
        combine((b"\0" * 32, -5), (b"\0" * 32, 10))


def test_the_builder_takes_exactly_the_leaves_announced() -> None:
    builder = TreeBuilder(1, secrets.token_bytes(32))
    with pytest.raises(TreeError):
        builder.finish()
    builder.add(1, 1, b"\1" * 32)
    with pytest.raises(TreeError):
        builder.add(2, 1, b"\2" * 32)
