"""Virtual-node keys: the derivation path of a user and the signer interface.

The signer is a Protocol so an HSM-backed implementation can replace
`SoftwareSigner` without touching callers.
"""

from __future__ import annotations

import functools
import secrets
from typing import NoReturn, Protocol, runtime_checkable

from coincurve import PrivateKey

from vnode.domain.ids import MAX_USER_ID
from vnode.keys.bip32 import (
    HARDENED,
    ExtendedKey,
    derive_child,
    derive_path,
    hardened,
    master_from_seed,
)

# Project-wide purpose segment: m/7633'/... Changing it changes every node key.
VNODE_PURPOSE = 7633
# The operator's proof key (docs/PROOFS.md): m/7633'/1000'/0'. A user's key is four levels
# deep with a second segment of 0 or 1 (bit 62 of the id), so no user ever shares this path.
PROOF_KEY_BRANCH = 1000

MIN_USER_ID = 1

_SEGMENT_BITS = 31
_SEGMENT_MASK = (1 << _SEGMENT_BITS) - 1

NODE_PUBKEY_CACHE_SIZE = 100_000


def user_id_segments(user_id: int) -> tuple[int, int, int]:
    """Split a user id into three 31-bit values (top, mid, low), unhardened.

    A hardened index only carries 31 bits, and 63 bits need three of them:
    `top` is bit 62 (0 for every realistic Telegram id), `mid` bits 61..31,
    `low` bits 30..0. Injective because user_id == top<<62 | mid<<31 | low and
    each part is < 2^31, so it survives `| 0x80000000` unchanged.
    """
    # bool is an int subclass; True must not silently mean user 1.
    if isinstance(user_id, bool) or not isinstance(user_id, int):
        raise TypeError(f"user_id must be int, not {type(user_id).__name__}")
    if not MIN_USER_ID <= user_id <= MAX_USER_ID:
        raise ValueError(f"user_id out of range [{MIN_USER_ID}, {MAX_USER_ID}]: {user_id}")
    return (
        user_id >> (2 * _SEGMENT_BITS),
        (user_id >> _SEGMENT_BITS) & _SEGMENT_MASK,
        user_id & _SEGMENT_MASK,
    )


def user_path(user_id: int) -> tuple[int, ...]:
    """BIP32 path of a user's node key: m/7633'/top'/mid'/low' (all hardened).

    Hardened throughout so a leaked node key never exposes siblings or parents.
    """
    return (hardened(VNODE_PURPOSE), *(s | HARDENED for s in user_id_segments(user_id)))


@runtime_checkable
class Signer(Protocol):
    """Source of virtual-node keys. Implementations must be thread-safe."""

    def node_pubkey(self, user_id: int) -> str:
        """Hex of the 33-byte compressed public key of node vn_{user_id}."""
        ...

    def proof_pubkey(self) -> str:
        """Hex of the x-only public key that signs proof-of-liabilities statements."""
        ...

    def sign_proof(self, digest: bytes) -> bytes:
        """BIP340 Schnorr signature of a 32-byte digest by the proof key."""
        ...

    def sign_as_node(self, user_id: int, digest: bytes) -> bytes:
        """BIP340 Schnorr signature of a 32-byte digest by node vn_{user_id}'s key."""
        ...


class SoftwareSigner:
    """Signer holding the BIP32 account key in process memory.

    The seed itself is not kept: only the m/7633' extended key is, which is
    all that node keys need.
    """

    __slots__ = ("__weakref__", "_account", "_node_pubkey_cached", "_prefix_key", "_proof_key")

    def __init__(self, seed: bytes) -> None:
        # Derived once; every node key lives below it.
        self._account: ExtendedKey = derive_path(master_from_seed(seed), (hardened(VNODE_PURPOSE),))
        # Per-instance caches (a decorator on the method would be shared by all
        # instances and keep them alive). lru_cache is thread-safe.
        # (top, mid) is shared by ~2^31 consecutive ids, so this cache saves two
        # of the three per-user derivations.
        self._prefix_key = functools.lru_cache(maxsize=64)(self._derive_prefix)
        # Hot path: a transfer to a new user needs their node pubkey.
        self._node_pubkey_cached = functools.lru_cache(maxsize=NODE_PUBKEY_CACHE_SIZE)(
            self._derive_node_pubkey
        )
        self._proof_key = PrivateKey(
            derive_path(self._account, (hardened(PROOF_KEY_BRANCH), hardened(0))).private_key
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<secret redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        # Pickling would write key material wherever the pickle goes.
        raise TypeError(f"{type(self).__name__} must not be pickled")

    def _derive_prefix(self, top: int, mid: int) -> ExtendedKey:
        return derive_path(self._account, (top | HARDENED, mid | HARDENED))

    def _node_key(self, user_id: int) -> ExtendedKey:
        top, mid, low = user_id_segments(user_id)
        return derive_child(self._prefix_key(top, mid), low | HARDENED)

    def _derive_node_pubkey(self, user_id: int) -> str:
        return self._node_key(user_id).public_key().hex()

    def proof_pubkey(self) -> str:
        return self._proof_key.public_key_xonly.format().hex()

    def sign_proof(self, digest: bytes) -> bytes:
        return self._proof_key.sign_schnorr(digest, secrets.token_bytes(32))

    def sign_as_node(self, user_id: int, digest: bytes) -> bytes:
        key = PrivateKey(self._node_key(user_id).private_key)
        return key.sign_schnorr(digest, secrets.token_bytes(32))

    def node_pubkey(self, user_id: int) -> str:
        # Validate first so bad ids raise the same way whether cached or not
        # (and True never shares a cache slot with 1).
        user_id_segments(user_id)
        return self._node_pubkey_cached(user_id)

    def cache_info(self) -> functools._CacheInfo:
        """Hit/miss counters of the node pubkey cache, for metrics."""
        return self._node_pubkey_cached.cache_info()
