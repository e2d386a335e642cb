"""RGB asset ids as the simulated node reads and makes them.

A real asset id is ``rgb:`` and a Baid64 (base64 with ``~`` and ``_``, in dash-separated
chunks) of the 32-byte contract id with a checksum, e.g.
``rgb:CJkb4YZw-jRiz2sk-~PARPio-wtVYI1c-XAEYCqO-wTfvRZ8``. The sim cannot verify the checksum
without the RGB libraries, so it accepts that alphabet and shape, and :func:`make_asset_id`
builds ids of the same shape for tests and demos.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Final

_ASSET_ID_RE: Final = re.compile(r"rgb:[0-9A-Za-z~_]+(?:-[0-9A-Za-z~_]+)*")
# 32-byte id plus checksum is 40..60 Baid64 characters in every published form.
_MIN_CHARS: Final = 40
_MAX_CHARS: Final = 60
_CHUNK: Final = 8


def is_asset_id(value: str) -> bool:
    if not _ASSET_ID_RE.fullmatch(value):
        return False
    chars = len(value) - len("rgb:") - value.count("-")
    return _MIN_CHARS <= chars <= _MAX_CHARS


def make_asset_id(label: str) -> str:
    """A well-formed, deterministic asset id for ``label`` (the same label, the same id)."""
    contract = hashlib.sha256(b"vnode-sim/asset/" + label.encode()).digest()
    check = hashlib.sha256(contract).digest()[:4]
    text = base64.urlsafe_b64encode(contract + check).decode().rstrip("=").replace("-", "~")
    return "rgb:" + "-".join(text[i : i + _CHUNK] for i in range(0, len(text), _CHUNK))
