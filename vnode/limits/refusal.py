"""The per-user limits by name, and a `limit_exceeded` refusal read from a money function's
detail. Pure: imported by the ledger's answer (`ledger/calls.LedgerAnswer`) and the API."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import orjson

# The limits, as the user_limits columns, the API's fields, the VNODE_LIMIT_* settings (upper
# case) and a refusal's `limit` name them. All in msat of BTC.
LIMIT_NAMES: tuple[str, ...] = (
    "send_max_msat",
    "receive_max_msat",
    "balance_max_msat",
    "send_24h_msat",
    "send_30d_msat",
    "receive_24h_msat",
    "receive_30d_msat",
    "fee_max_msat",
)


@dataclass(frozen=True)
class Limits:
    """One value per limit; None: not set (off, or for overrides: the default applies)."""

    send_max_msat: int | None = None
    receive_max_msat: int | None = None
    balance_max_msat: int | None = None
    send_24h_msat: int | None = None
    send_30d_msat: int | None = None
    receive_24h_msat: int | None = None
    receive_30d_msat: int | None = None
    fee_max_msat: int | None = None

    @classmethod
    def from_mapping(cls, values: Any) -> Limits:
        """From a database row or a dict holding (some of) the limit names."""
        if values is None:
            return cls()
        present = set(values.keys())
        return cls(**{name: values[name] for name in LIMIT_NAMES if name in present})

    def updated(self, changes: dict[str, int | None]) -> Limits:
        return replace(self, **changes)

    def as_dict(self) -> dict[str, int | None]:
        return asdict(self)

    @property
    def empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


@dataclass(frozen=True)
class LimitRefusal:
    """Which limit refused, and whose: `party` "self" (the user's own: the sender's send
    limits, or the receive limits of the user an invoice is made for) or "recipient" (the
    receive limits of the user a transfer or an internal payment would credit).

    Of the user's own limit, the figures: its value, what was used of it already (the volume in
    its window, the balance for balance_max_msat; 0 for a per-payment limit), the amount asked
    for (the fee reserve for fee_max_msat) and the headroom left (limit - used, never below 0).
    Of a recipient's, only the amount: the recipient's figures are theirs (their balance and
    volume), so limit_msat, used_msat and headroom_msat are None."""

    limit: str
    limit_msat: int | None
    used_msat: int | None
    amount_msat: int
    headroom_msat: int | None
    party: str = "self"

    @classmethod
    def from_detail(cls, detail: str) -> LimitRefusal:
        """Read the detail vnode_limit_detail or vnode_limit_for_payer wrote
        (vnode/db/functions/35_limits.sql)."""
        data = orjson.loads(detail)

        def number(name: str) -> int | None:
            value = data.get(name)
            return None if value is None else int(value)

        return cls(
            limit=str(data["limit"]),
            limit_msat=number("limit_msat"),
            used_msat=number("used_msat"),
            amount_msat=int(data["amount_msat"]),
            headroom_msat=number("headroom_msat"),
            party=str(data.get("party", "self")),
        )

    @property
    def message(self) -> str:
        if self.party == "recipient":
            return f"{self.amount_msat} msat is over the recipient's {self.limit} limit"
        return (
            f"{self.amount_msat} msat is over the user's {self.limit} limit of "
            f"{self.limit_msat} msat ({self.used_msat} used, {self.headroom_msat} left)"
        )

    def fields(self) -> dict[str, object]:
        """The refusal's fields in the answer's error object, beside code and message; a
        recipient's refusal carries no figures of the recipient's."""
        return {k: v for k, v in asdict(self).items() if v is not None}
