"""The event envelope every channel carries (version 1; docs/EVENTS.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from vnode.domain.timestamps import format_timestamp

ENVELOPE_VERSION = 1
# Columns of outbox needed to build an envelope, for queries that join it.
OUTBOX_COLUMNS = (
    "o.id AS outbox_id, o.event_id, o.event_type, o.user_id, o.user_seq, o.payload, o.created_at"
)


@dataclass(frozen=True)
class Event:
    outbox_id: int
    event_id: str
    event_type: str
    user_id: int  # 0 for node-wide events
    user_seq: int
    payload: dict[str, Any]
    created_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Event:
        payload = row["payload"]
        return cls(
            row["outbox_id"],
            str(row["event_id"]),
            row["event_type"],
            row["user_id"],
            row["user_seq"],
            orjson.loads(payload) if isinstance(payload, str) else payload,
            row["created_at"],
        )

    def envelope(self) -> dict[str, Any]:
        return {
            "version": ENVELOPE_VERSION,
            "id": self.event_id,
            "type": self.event_type,
            "user_id": self.user_id,
            "seq": self.user_seq,
            "created_at": format_timestamp(self.created_at),
            "data": self.payload,
        }

    def encode(self) -> bytes:
        return orjson.dumps(self.envelope())
