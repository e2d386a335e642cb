"""The event catalogue: every event type vnode emits, with its JSON Schema (docs/EVENTS.md).

The schemas (draft 2020-12, one per type, describing the whole envelope) ship inside the
package under vnode/events/schemas/, so an installed vnode can hand them out.
"""

from __future__ import annotations

import functools
import json
from importlib.resources import files
from typing import Any

from vnode.events.envelope import ENVELOPE_VERSION

# In the order docs/EVENTS.md presents them.
EVENT_TYPES: tuple[str, ...] = (
    "transfer.completed",
    "admin.credit",
    "admin.debit",
    "payment.pending",
    "payment.succeeded",
    "payment.failed",
    "invoice.paid",
    "rgb.transfer.settled",
    "node.locked",
    "node.unlocked",
)
# Node-wide events: user_id 0, numbered by their own sequence.
NODE_EVENT_TYPES: frozenset[str] = frozenset({"node.locked", "node.unlocked"})
SCHEMA_VERSION = ENVELOPE_VERSION


class UnknownEventType(KeyError):
    pass


def schema_file_name(event_type: str) -> str:
    return f"{event_type}.schema.json"


@functools.cache
def _schema_text(event_type: str) -> str:
    if event_type not in EVENT_TYPES:
        raise UnknownEventType(event_type)
    resource = files("vnode.events") / "schemas" / schema_file_name(event_type)
    return resource.read_text(encoding="utf-8")


def schema_for(event_type: str) -> dict[str, Any]:
    """The JSON Schema of `event_type`'s envelope (a fresh copy each call)."""
    schema: dict[str, Any] = json.loads(_schema_text(event_type))
    return schema


def all_schemas() -> dict[str, dict[str, Any]]:
    return {event_type: schema_for(event_type) for event_type in EVENT_TYPES}
