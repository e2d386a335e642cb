"""Minimal BIP32 private derivation (secp256k1 via coincurve).

Only what virtual nodes need: master key from seed, private child derivation (hardened and
normal) and the public key (ADR 0016). The xprv/xpub serialisation, base58check and RIPEMD-160
that the published test vectors are written in live with those tests
(tests/unit/keys/bip32_serialize.py): nothing in the service serialises a key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field

from coincurve import PrivateKey

HARDENED = 0x80000000
# Order of the secp256k1 group.
CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class InvalidKeyError(ValueError):
    """IL was 0 or >= n, or the child key was 0 (probability < 2^-127)."""


def hardened(index: int) -> int:
    """Index `index` of the hardened range, i.e. `index'` / `indexH`."""
    if not 0 <= index < HARDENED:
        raise ValueError(f"hardened index out of range: {index}")
    return index | HARDENED


@dataclass(frozen=True, slots=True, repr=False)
class ExtendedKey:
    """An extended private key. repr never shows key material."""

    private_key: bytes = field(compare=False)
    chain_code: bytes = field(compare=False)
    depth: int = 0
    # The parent's compressed public key (empty for a master key): what BIP32 serialisation
    # fingerprints. Kept whole, so deriving hashes nothing it does not need.
    parent_pubkey: bytes = b""
    child_number: int = 0

    def __post_init__(self) -> None:
        if len(self.private_key) != 32 or len(self.chain_code) != 32:
            raise ValueError("private key and chain code must be 32 bytes")
        if not 0 <= self.depth <= 255:
            raise ValueError("depth must fit in one byte")
        if len(self.parent_pubkey) not in (0, 33):
            raise ValueError("parent public key must be 33 bytes, or empty for a master key")
        if not 0 <= self.child_number <= 0xFFFFFFFF:
            raise ValueError("child number must fit in 32 bits")

    def __repr__(self) -> str:
        return (
            f"ExtendedKey(depth={self.depth}, child_number={self.child_number:#x}, "
            "private_key=<redacted>)"
        )

    def public_key(self) -> bytes:
        """33-byte compressed SEC1 public key."""
        return PrivateKey(self.private_key).public_key.format(compressed=True)


def _hmac_sha512(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha512).digest()


def master_from_seed(seed: bytes) -> ExtendedKey:
    """BIP32 master key: HMAC-SHA512(key=b"Bitcoin seed", seed)."""
    if not 16 <= len(seed) <= 64:
        raise ValueError("BIP32 seed must be 16..64 bytes")
    digest = _hmac_sha512(b"Bitcoin seed", seed)
    il, ir = digest[:32], digest[32:]
    k = int.from_bytes(il, "big")
    if k == 0 or k >= CURVE_ORDER:
        raise InvalidKeyError("seed yields an invalid master key; use another seed")
    return ExtendedKey(private_key=il, chain_code=ir)


def derive_child(key: ExtendedKey, index: int) -> ExtendedKey:
    """CKDpriv. Hardened indexes (>= 2^31) commit to the private key."""
    if not 0 <= index <= 0xFFFFFFFF:
        raise ValueError(f"child index out of range: {index}")
    if key.depth == 255:
        raise ValueError("maximum derivation depth reached")
    parent_pub = key.public_key()
    if index >= HARDENED:
        data = b"\x00" + key.private_key + index.to_bytes(4, "big")
    else:
        data = parent_pub + index.to_bytes(4, "big")
    digest = _hmac_sha512(key.chain_code, data)
    il, ir = digest[:32], digest[32:]
    tweak = int.from_bytes(il, "big")
    child = (tweak + int.from_bytes(key.private_key, "big")) % CURVE_ORDER
    # BIP32 says "proceed with the next index"; callers here use fixed paths, so
    # surfacing the (astronomically unlikely) case is safer than silently skipping.
    if tweak >= CURVE_ORDER or child == 0:
        raise InvalidKeyError(f"index {index} yields an invalid child key")
    return ExtendedKey(
        private_key=child.to_bytes(32, "big"),
        chain_code=ir,
        depth=key.depth + 1,
        parent_pubkey=parent_pub,
        child_number=index,
    )


def derive_path(key: ExtendedKey, path: Sequence[int]) -> ExtendedKey:
    for index in path:
        key = derive_child(key, index)
    return key
