"""The Merkle sum tree of one epoch, built in a stream with bounded memory (docs/PROOFS.md).

Leaves arrive in their final order (by H(salt)). They are hashed a chunk of `CHUNK_LEAVES` at a
time; only each chunk's root is kept, and the levels above the chunks are stored with the epoch
(`upper`, 40 bytes a node). A user's path is rebuilt from the leaves of one chunk plus `upper`,
so an epoch of a million users keeps about 80 KiB of tree besides its leaves.

The hashing is `vnode/proofs/verifier.py`'s: the builder and the reference verifier share one
definition of the construction.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from vnode.proofs.verifier import U64_MAX, leaf_hash, node_hash, pad_hash

CHUNK_LEAVES = 1024
NODE_BYTES = 40  # 32-byte hash, 8-byte big-endian sum

Node = tuple[bytes, int]


class TreeError(ValueError):
    """The tree cannot be built: a negative or oversized balance, or a sum over 64 bits."""


@dataclass(frozen=True, slots=True)
class BuiltTree:
    root: bytes
    total: int
    leaves: int  # padded count, a power of two
    count: int  # real leaves
    upper: bytes  # the levels from the chunk roots up to the root, NODE_BYTES a node


def padded_size(count: int) -> int:
    return 1 if count <= 1 else 1 << (count - 1).bit_length()


def chunk_size(leaves: int) -> int:
    return min(CHUNK_LEAVES, leaves)


def pad_node(pad_seed: bytes, position: int) -> Node:
    # The padding's random 32 bytes come from a per-epoch secret seed, so they need not be
    # stored one by one: HMAC output cannot be told from random by anyone without the seed.
    random32 = hmac.new(pad_seed, position.to_bytes(8, "big"), hashlib.sha256).digest()
    return pad_hash(random32), 0


def leaf_node(user_id: int, balance: int, salt: bytes) -> Node:
    if not 0 <= balance <= U64_MAX:
        raise TreeError(f"balance of user {user_id} is outside 0..2^64-1")
    return leaf_hash(salt, user_id, balance), balance


def combine(left: Node, right: Node) -> Node:
    (left_hash, left_sum), (right_hash, right_sum) = left, right
    total = left_sum + right_sum
    # Both non-negative and their total in range: so each child is in range too.
    if left_sum < 0 or right_sum < 0 or total > U64_MAX:
        raise TreeError("a sum is negative or overflows 64 bits")
    return node_hash(left_hash, left_sum, right_hash, right_sum), total


def levels(nodes: Sequence[Node]) -> list[list[Node]]:
    """Every level of the subtree over `nodes` (a power of two of them), bottom-up."""
    out = [list(nodes)]
    while len(out[-1]) > 1:
        below = out[-1]
        out.append([combine(below[i], below[i + 1]) for i in range(0, len(below), 2)])
    return out


class TreeBuilder:
    """Takes the `count` leaves of an epoch in order, then `finish` pads and closes the tree."""

    def __init__(self, count: int, pad_seed: bytes) -> None:
        self.count = count
        self.leaves = padded_size(count)
        self._chunk = chunk_size(self.leaves)
        self._pad_seed = pad_seed
        self._buffer: list[Node] = []
        self._position = 0
        self._chunk_roots: list[Node] = []

    def add(self, user_id: int, balance: int, salt: bytes) -> None:
        if self._position >= self.count:
            raise TreeError("more leaves than announced")
        self._push(leaf_node(user_id, balance, salt))

    def _push(self, node: Node) -> None:
        self._buffer.append(node)
        self._position += 1
        if len(self._buffer) == self._chunk:
            self._chunk_roots.append(levels(self._buffer)[-1][0])
            self._buffer = []

    def finish(self) -> BuiltTree:
        if self._position != self.count:
            raise TreeError(f"{self._position} leaves given, {self.count} announced")
        while self._position < self.leaves:
            self._push(pad_node(self._pad_seed, self._position))
        upper = levels(self._chunk_roots)
        root, total = upper[-1][0]
        return BuiltTree(root, total, self.leaves, self.count, encode_levels(upper))


def encode_levels(upper: Sequence[Sequence[Node]]) -> bytes:
    return b"".join(h + s.to_bytes(8, "big") for level in upper for h, s in level)


def _upper_node(upper: bytes, offset: int, index: int) -> Node:
    start = (offset + index) * NODE_BYTES
    return upper[start : start + 32], int.from_bytes(upper[start + 32 : start + NODE_BYTES], "big")


def path(
    chunk_nodes: Sequence[Node], position: int, leaves: int, upper: bytes
) -> list[dict[str, object]]:
    """The bottom-up path of the leaf at `position`, given every node of its chunk."""
    chunk = chunk_size(leaves)
    if len(chunk_nodes) != chunk:
        raise TreeError("a chunk has the wrong number of leaves")
    steps: list[dict[str, object]] = []

    def step(sibling: Node, index: int) -> None:
        # `side` says where the sibling stands: right of an even index, left of an odd one.
        side = "right" if index % 2 == 0 else "left"
        steps.append({"hash": sibling[0].hex(), "sum": sibling[1], "side": side})

    index = position % chunk
    below = levels(chunk_nodes)
    for level in below[:-1]:
        step(level[index ^ 1], index)
        index //= 2
    index, offset, width = position // chunk, 0, leaves // chunk
    if _upper_node(upper, 0, index) != below[-1][0]:
        raise TreeError("the stored tree does not match its leaves")
    while width > 1:
        step(_upper_node(upper, offset, index ^ 1), index)
        offset, width, index = offset + width, width // 2, index // 2
    return steps
