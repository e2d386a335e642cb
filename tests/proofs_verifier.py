"""A verifier of vnode's inclusion proofs written from the text of issue 16 alone, importing
nothing of vnode: the tests hold the service's proofs (and vnode/proofs/verifier.py) to it, so
that an independent reader of the construction agrees with what the service publishes.

Construction (issue 16): integers u64 big-endian, H = SHA-256, tags ASCII.
  leaf = H("vnode-pol-leaf" || salt || u64(user_id) || u64(b)), sum b
  node = H("vnode-pol-node" || hl || u64(sl) || hr || u64(sr)), sum sl + sr (no overflow)
  the statement's signature: BIP340 over H(canonical JSON: sorted keys, no spaces)
  path bottom-up; `side` is where the sibling stands.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

from coincurve import PublicKeyXOnly


def _q(n: int) -> bytes:
    return struct.pack(">Q", n)  # raises struct.error outside 0..2^64-1


def check(proof: dict[str, Any], pubkey: str) -> bool:
    """True when the proof holds; False on any failed check or malformed field."""
    try:
        return _check(proof, pubkey)
    except (KeyError, TypeError, ValueError, struct.error):
        return False


def _is_u64(n: object) -> bool:
    return type(n) is int and 0 <= n < 2**64


def _check(proof: dict[str, Any], pubkey: str) -> bool:
    st = proof["statement"]
    wanted = {"asset_id", "epoch", "root", "total", "leaves", "created_at", "ledger_position"}
    if set(st) != wanted or set(proof) != {
        "statement",
        "signature",
        "user_id",
        "balance",
        "salt",
        "path",
    }:
        return False
    message = hashlib.sha256(json.dumps(st, sort_keys=True, separators=(",", ":")).encode())
    if not PublicKeyXOnly(bytes.fromhex(pubkey)).verify(
        bytes.fromhex(proof["signature"]), message.digest()
    ):
        return False
    if not all(_is_u64(x) for x in (proof["balance"], proof["user_id"], st["total"])):
        return False
    salt = bytes.fromhex(proof["salt"])
    if len(salt) != 32:
        return False
    h = hashlib.sha256(
        b"vnode-pol-leaf" + salt + _q(proof["user_id"]) + _q(proof["balance"])
    ).digest()
    s = proof["balance"]
    for step in proof["path"]:
        sib, sib_sum = bytes.fromhex(step["hash"]), step["sum"]
        if len(sib) != 32 or not _is_u64(sib_sum) or s + sib_sum >= 2**64:
            return False
        if step["side"] == "right":
            h = hashlib.sha256(b"vnode-pol-node" + h + _q(s) + sib + _q(sib_sum)).digest()
        elif step["side"] == "left":
            h = hashlib.sha256(b"vnode-pol-node" + sib + _q(sib_sum) + h + _q(s)).digest()
        else:
            return False
        s += sib_sum
    return bool(
        2 ** len(proof["path"]) == st["leaves"] and h.hex() == st["root"] and s == st["total"]
    )
