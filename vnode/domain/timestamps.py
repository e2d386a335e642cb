"""The one text form of an instant in vnode's answers and events: UTC, always six decimals, Z.

    2026-11-26T10:00:00.000000Z

The SQL money functions write the same form with `vnode_ts` (vnode/db/functions/00_helpers.sql);
tests/integration/db/test_catalog.py checks that both write the same string for the same instant.
"""

from __future__ import annotations

from datetime import UTC, datetime


def format_timestamp(at: datetime) -> str:
    """`at` in the one text form. A naive datetime is refused: which instant it is is unknown."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("a timestamp needs a time zone")
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def format_unix_timestamp(seconds: float) -> str:
    """Seconds since the epoch (a BOLT 11 expiry, say) in the one text form."""
    return format_timestamp(datetime.fromtimestamp(seconds, UTC))
