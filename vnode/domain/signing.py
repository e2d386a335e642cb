"""HMAC-SHA256 webhook signatures: `X-VNode-Signature: t=<unix>,v1=<hex>` over "<t>.<raw body>".

The same scheme signs vnode's outgoing webhooks, so a receiver verifies both the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

SIGNATURE_HEADER = "X-VNode-Signature"
# ASCII digits, at most 12 (unix seconds up to the year 33658): a 400-digit `t` parsed as an int
# but overflowed the float arithmetic of the window check (a 500, security review L7), and
# str.isdigit()/int() would also take other scripts' digits.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class SignatureError(ValueError):
    pass


def sign(secret: bytes, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify(
    secret: bytes, header: str | None, body: bytes, window_s: int, now: float | None = None
) -> bytes:
    """Check the header; returns the signature bytes (the replay-protection key)."""
    if not header:
        raise SignatureError("missing signature header")
    parts: dict[str, str] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, value)
    timestamp = parts.get("t", "")
    try:
        if not _TIMESTAMP.fullmatch(timestamp):
            raise ValueError(timestamp)
        t = int(timestamp)
        given = bytes.fromhex(parts["v1"])
    except (KeyError, ValueError):
        raise SignatureError("malformed signature header") from None
    current = time.time() if now is None else now
    if abs(current - t) > window_s:
        raise SignatureError("signature timestamp outside the allowed window")
    expected = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, given):
        raise SignatureError("signature does not match")
    return given
