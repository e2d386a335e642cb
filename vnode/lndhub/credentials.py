"""LndHub logins, passwords and tokens: made at random, stored only as hashes.

Logins and passwords are hex, so they never contain the `:` or `@` that BlueWallet's import of
`lndhub://login:password@url` splits on. A password is stored as a salted scrypt hash (memory
hard: 16 MiB per check); a token, 160 random bits that cannot be guessed, as its SHA-256, which
is enough for a secret of that strength and costs nothing per request.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets

# scrypt cost: N=2^log2_n, r=8; the default 2^14 -> 16 MiB and ~50 ms per check on one core
# (settings.lndhub_scrypt_log2_n). Each hash carries its own parameters, so a change of the
# setting applies to passwords issued afterwards, and earlier ones still check.
_R, _P = 8, 1
_MAXMEM = 64 * 1024 * 1024


def new_login() -> str:
    return secrets.token_hex(10)  # 20 hex characters, as the original hub's


def new_password() -> str:
    return secrets.token_hex(16)


def new_token() -> str:
    return secrets.token_hex(20)  # 40 hex characters, as the original hub's


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def hash_password(password: str, log2_n: int) -> str:
    salt = secrets.token_bytes(16)
    n = 2**log2_n
    digest = _scrypt(password, salt, n, _R, _P)
    return f"scrypt${n}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = bytes.fromhex(digest)
        actual = _scrypt(password, bytes.fromhex(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


@functools.cache
def dummy_hash(log2_n: int) -> str:
    """Checked against a login that does not exist, so an unknown login costs as long as a
    wrong password and the timing does not tell which logins exist."""
    return hash_password(secrets.token_hex(16), log2_n)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)
