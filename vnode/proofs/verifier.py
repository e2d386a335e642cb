"""The reference verifier of vnode's proofs of liabilities (docs/PROOFS.md).

It imports only the standard library and coincurve, so it can be copied out of the repository
and run by someone who trusts nothing else of vnode (tests/unit/test_layering.py keeps it so):

    python verifier.py proof.json --pubkey <operator's x-only key> [--balance N]

It checks that the proof's path leads from the user's leaf to the signed root, that every sum
on the way is a non-negative 64-bit integer and adds up (no sibling can carry a negative or
inflated share), that the statement is signed by the operator's proof key and that the balance
is the one the user expects. The builder (`vnode/proofs/tree.py`) uses the hashing functions
defined here, so the construction is written once.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Mapping
from typing import Any

from coincurve import PublicKeyXOnly

U64_MAX = 2**64 - 1
LEAF_TAG = b"vnode-pol-leaf"
PAD_TAG = b"vnode-pol-pad"
NODE_TAG = b"vnode-pol-node"
STATEMENT_KEYS = frozenset(
    {"asset_id", "epoch", "root", "total", "leaves", "created_at", "ledger_position"}
)
PROOF_KEYS = frozenset({"statement", "signature", "user_id", "balance", "salt", "path"})


class ProofError(ValueError):
    """The proof does not show what it claims; the message says which check failed."""


def u64(value: int) -> bytes:
    # The hot path of building a tree: to_bytes itself refuses a negative or too large value.
    # Callers check that untrusted values are ints first (`_int`).
    try:
        return value.to_bytes(8, "big")
    except (OverflowError, AttributeError):
        raise ProofError(f"not an unsigned 64-bit integer: {value!r}") from None


def leaf_hash(salt: bytes, user_id: int, balance: int) -> bytes:
    if len(salt) != 32:
        raise ProofError("a salt is 32 bytes")
    return hashlib.sha256(LEAF_TAG + salt + u64(user_id) + u64(balance)).digest()


def pad_hash(random32: bytes) -> bytes:
    return hashlib.sha256(PAD_TAG + random32).digest()


def node_sum(left_sum: int, right_sum: int) -> int:
    total = left_sum + right_sum
    # Both non-negative and their total in range: so each child is in range too.
    if left_sum < 0 or right_sum < 0 or total > U64_MAX:
        raise ProofError("a sum is negative or overflows 64 bits")
    return total


def node_hash(left: bytes, left_sum: int, right: bytes, right_sum: int) -> bytes:
    return hashlib.sha256(NODE_TAG + left + u64(left_sum) + right + u64(right_sum)).digest()


def canonical(statement: Mapping[str, Any]) -> bytes:
    """The statement's signed bytes: JSON with sorted keys and no spaces."""
    return json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def statement_digest(statement: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(canonical(statement)).digest()


def _hex(value: object, size: int, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size or value != value.lower():
        raise ProofError(f"{what} must be {2 * size} lower-case hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ProofError(f"{what} is not hex") from None


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U64_MAX:
        raise ProofError(f"{what} must be an integer in 0..2^64-1")
    return value


def verify_signature(statement: Mapping[str, Any], signature_hex: str, pubkey_hex: str) -> None:
    signature = _hex(signature_hex, 64, "signature")
    try:
        key = PublicKeyXOnly(_hex(pubkey_hex, 32, "public key"))
        good = key.verify(signature, statement_digest(statement))
    except ValueError:
        good = False
    if not good:
        raise ProofError("the statement's signature is not the operator's")


def verify_proof(
    proof: Mapping[str, Any], pubkey_hex: str, expected_balance: int | None = None
) -> Mapping[str, Any]:
    """Check `proof` against the operator's x-only public key; answer its statement.

    Raises ProofError on the first check that fails.
    """
    if not isinstance(proof, Mapping) or set(proof) != PROOF_KEYS:
        raise ProofError(f"a proof has exactly the keys {sorted(PROOF_KEYS)}")
    statement = proof["statement"]
    if not isinstance(statement, Mapping) or set(statement) != STATEMENT_KEYS:
        raise ProofError(f"a statement has exactly the keys {sorted(STATEMENT_KEYS)}")
    for name in ("epoch", "total", "leaves", "ledger_position"):
        _int(statement[name], f"statement.{name}")
    leaves = statement["leaves"]
    if leaves < 1 or leaves & (leaves - 1):
        raise ProofError("statement.leaves must be a power of two")
    root = _hex(statement["root"], 32, "statement.root")
    verify_signature(statement, proof["signature"], pubkey_hex)
    balance = _int(proof["balance"], "balance")
    if expected_balance is not None and balance != expected_balance:
        raise ProofError(f"the proof counts a balance of {balance}, not {expected_balance}")
    path = proof["path"]
    if not isinstance(path, list) or 2 ** len(path) != leaves:
        raise ProofError("the path's length does not match the tree's height")
    current = leaf_hash(_hex(proof["salt"], 32, "salt"), _int(proof["user_id"], "user_id"), balance)
    current_sum = balance
    for step in path:
        if not isinstance(step, Mapping) or set(step) != {"hash", "sum", "side"}:
            raise ProofError("a path step has exactly the keys hash, sum, side")
        sibling = _hex(step["hash"], 32, "path hash")
        sibling_sum = _int(step["sum"], "path sum")
        if step["side"] == "left":
            current = node_hash(sibling, sibling_sum, current, current_sum)
        elif step["side"] == "right":
            current = node_hash(current, current_sum, sibling, sibling_sum)
        else:
            raise ProofError("a path step's side is left or right")
        current_sum = node_sum(current_sum, sibling_sum)
    if current != root or current_sum != statement["total"]:
        raise ProofError("the path does not lead to the signed root and total")
    return statement


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a vnode proof of liabilities.")
    parser.add_argument("proof", help="the proof file (JSON)")
    parser.add_argument("--pubkey", required=True, help="the operator's proof key (x-only hex)")
    parser.add_argument("--balance", type=int, help="the balance you expect, in base units")
    args = parser.parse_args(argv)
    with open(args.proof, encoding="utf-8") as fh:
        proof = json.load(fh)
    try:
        statement = verify_proof(proof, args.pubkey, args.balance)
    except ProofError as exc:
        print(f"NOT VERIFIED: {exc}")
        return 1
    print(
        f"verified: balance {proof['balance']} of user {proof['user_id']} is counted in the "
        f"total {statement['total']} of {statement['asset_id']}, epoch {statement['epoch']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
