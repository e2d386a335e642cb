"""User ids, virtual node ids and asset ids: parsing and the one canonical form of each."""

from __future__ import annotations

import re

MAX_USER_ID = 2**63 - 1
BTC = "BTC"
NODE_PREFIX = "vn_"

_DECIMAL = re.compile(r"[1-9][0-9]{0,18}")
# RGB contract ids as the RGB Lightning Node prints them, e.g. rgb:CJkb4YZw-jRiz2sk-~PARPio-...
_RGB_ASSET = re.compile(r"rgb:[A-Za-z0-9_~!$-]{8,120}")


def node_id(user_id: int) -> str:
    return f"{NODE_PREFIX}{user_id}"


def parse_user_id(value: object) -> int:
    """A Telegram user id from a JSON integer, a decimal string or a vn_ node id.

    Booleans, floats, signs, spaces and leading zeros are refused: one id has one spelling.
    """
    if isinstance(value, bool):
        raise ValueError("a user id is a number, not a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.removeprefix(NODE_PREFIX)
        if not _DECIMAL.fullmatch(text):
            raise ValueError("a user id is a positive decimal number or vn_<number>")
        number = int(text)
    else:
        raise ValueError("a user id is an integer, a decimal string or vn_<number>")
    if not 0 < number <= MAX_USER_ID:
        raise ValueError("a user id is between 1 and 2^63-1")
    return number


def parse_asset_id(value: object) -> str:
    if value == BTC:
        return BTC
    if isinstance(value, str) and _RGB_ASSET.fullmatch(value):
        return value
    raise ValueError("an asset id is 'BTC' or an RGB asset id 'rgb:...'")
