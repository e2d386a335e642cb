"""BIP32 serialisation, for checking vnode/keys/bip32.py against the published test vectors.

The vectors are written as xprv/xpub strings: base58check over version, depth, parent
fingerprint (HASH160 of the parent's public key), child number, chain code and key. The service
never serialises a key, so this lives here rather than in vnode/ (ADR 0016).
"""

from __future__ import annotations

import hashlib

from vnode.keys.bip32 import ExtendedKey

XPRV_VERSION = bytes.fromhex("0488ADE4")
XPUB_VERSION = bytes.fromhex("0488B21E")

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def to_xprv(key: ExtendedKey) -> str:
    return _serialize(key, XPRV_VERSION, b"\x00" + key.private_key)


def to_xpub(key: ExtendedKey) -> str:
    return _serialize(key, XPUB_VERSION, key.public_key())


def parent_fingerprint(key: ExtendedKey) -> bytes:
    """First 4 bytes of HASH160(parent public key); zeros for a master key."""
    return hash160(key.parent_pubkey)[:4] if key.parent_pubkey else b"\x00" * 4


def _serialize(key: ExtendedKey, version: bytes, key_data: bytes) -> str:
    payload = (
        version
        + bytes([key.depth])
        + parent_fingerprint(key)
        + key.child_number.to_bytes(4, "big")
        + key.chain_code
        + key_data
    )
    return b58check_encode(payload)


def b58check_encode(payload: bytes) -> str:
    data = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, rem = divmod(n, 58)
        out.append(_B58_ALPHABET[rem])
    # Each leading zero byte is encoded as a literal "1".
    pad = len(data) - len(data.lstrip(b"\x00"))
    return "1" * pad + "".join(reversed(out))


def b58check_decode(text: str) -> bytes:
    n = 0
    for ch in text:
        digit = _B58_ALPHABET.find(ch)
        if digit < 0:
            raise ValueError(f"invalid base58 character {ch!r}")
        n = n * 58 + digit
    pad = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    data = b"\x00" * pad + body
    payload, checksum = data[:-4], data[-4:]
    if hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != checksum:
        raise ValueError("bad base58check checksum")
    return payload


def hash160(data: bytes) -> bytes:
    """RIPEMD160(SHA256(data))."""
    return _ripemd160(hashlib.sha256(data).digest())


def _hashlib_ripemd160(data: bytes) -> bytes:
    return hashlib.new("ripemd160", data).digest()


# --- RIPEMD-160 fallback ----------------------------------------------------
# OpenSSL 3 moved RIPEMD-160 to the "legacy" provider, so hashlib may lack it.
# This pure-Python version only hashes 32-byte inputs here, so speed is moot.

_MASK = 0xFFFFFFFF
# Message word order, left and right lines.
_RL = (
    *range(16),
    7, 4, 13, 1, 10, 6, 15, 3, 12, 0, 9, 5, 2, 14, 11, 8,
    3, 10, 14, 4, 9, 15, 8, 1, 2, 7, 0, 6, 13, 11, 5, 12,
    1, 9, 11, 10, 0, 8, 12, 4, 13, 3, 7, 15, 14, 5, 6, 2,
    4, 0, 5, 9, 7, 12, 2, 10, 14, 1, 3, 8, 11, 6, 15, 13,
)  # fmt: skip
_RR = (
    5, 14, 7, 0, 9, 2, 11, 4, 13, 6, 15, 8, 1, 10, 3, 12,
    6, 11, 3, 7, 0, 13, 5, 10, 14, 15, 8, 12, 4, 9, 1, 2,
    15, 5, 1, 3, 7, 14, 6, 9, 11, 8, 12, 2, 10, 0, 4, 13,
    8, 6, 4, 1, 3, 11, 15, 0, 5, 12, 2, 13, 9, 7, 10, 14,
    12, 15, 10, 4, 1, 5, 8, 7, 6, 2, 13, 14, 0, 3, 9, 11,
)  # fmt: skip
# Rotation amounts, left and right lines.
_SL = (
    11, 14, 15, 12, 5, 8, 7, 9, 11, 13, 14, 15, 6, 7, 9, 8,
    7, 6, 8, 13, 11, 9, 7, 15, 7, 12, 15, 9, 11, 7, 13, 12,
    11, 13, 6, 7, 14, 9, 13, 15, 14, 8, 13, 6, 5, 12, 7, 5,
    11, 12, 14, 15, 14, 15, 9, 8, 9, 14, 5, 6, 8, 6, 5, 12,
    9, 15, 5, 11, 6, 8, 13, 12, 5, 12, 13, 14, 11, 8, 5, 6,
)  # fmt: skip
_SR = (
    8, 9, 9, 11, 13, 15, 15, 5, 7, 7, 8, 11, 14, 14, 12, 6,
    9, 13, 15, 7, 12, 8, 9, 11, 7, 7, 12, 7, 6, 15, 13, 11,
    9, 7, 15, 11, 8, 6, 6, 14, 12, 13, 5, 14, 13, 13, 7, 5,
    15, 5, 8, 11, 14, 14, 6, 14, 6, 9, 12, 9, 12, 5, 15, 8,
    8, 5, 12, 9, 12, 5, 14, 6, 8, 13, 6, 5, 15, 13, 11, 11,
)  # fmt: skip
_KL = (0x00000000, 0x5A827999, 0x6ED9EBA1, 0x8F1BBCDC, 0xA953FD4E)
_KR = (0x50A28BE6, 0x5C4DD124, 0x6D703EF3, 0x7A6D76E9, 0x00000000)


def _f(rnd: int, x: int, y: int, z: int) -> int:
    if rnd == 0:
        return x ^ y ^ z
    if rnd == 1:
        return (x & y) | (~x & z)
    if rnd == 2:
        return (x | (~y & _MASK)) ^ z
    if rnd == 3:
        return (x & z) | (y & ~z)
    return x ^ (y | (~z & _MASK))


def _rol(x: int, s: int) -> int:
    return ((x << s) | (x >> (32 - s))) & _MASK


def _compress(h: list[int], block: bytes) -> None:
    x = [int.from_bytes(block[i : i + 4], "little") for i in range(0, 64, 4)]
    al, bl, cl, dl, el = h
    ar, br, cr, dr, er = h
    for j in range(80):
        rnd = j >> 4
        t = _rol((al + _f(rnd, bl, cl, dl) + x[_RL[j]] + _KL[rnd]) & _MASK, _SL[j])
        al, bl, cl, dl, el = el, (t + el) & _MASK, bl, _rol(cl, 10), dl
        t = _rol((ar + _f(4 - rnd, br, cr, dr) + x[_RR[j]] + _KR[rnd]) & _MASK, _SR[j])
        ar, br, cr, dr, er = er, (t + er) & _MASK, br, _rol(cr, 10), dr
    h[:] = [
        (h[1] + cl + dr) & _MASK,
        (h[2] + dl + er) & _MASK,
        (h[3] + el + ar) & _MASK,
        (h[4] + al + br) & _MASK,
        (h[0] + bl + cr) & _MASK,
    ]


def ripemd160_py(data: bytes) -> bytes:
    """Pure-Python RIPEMD-160 (used only when hashlib lacks it)."""
    h = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0]
    msg = data + b"\x80" + b"\x00" * ((55 - len(data)) % 64)
    msg += (8 * len(data) & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")
    for i in range(0, len(msg), 64):
        _compress(h, msg[i : i + 64])
    return b"".join(v.to_bytes(4, "little") for v in h)


try:
    hashlib.new("ripemd160", b"")
    _ripemd160 = _hashlib_ripemd160
except ValueError:
    _ripemd160 = ripemd160_py
