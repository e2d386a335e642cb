"""What the load generator saw: every answer, per operation, and the cases whose money the
ledger must show exactly as the client was told (the model the end checks compare with)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from vnode.errors import ErrorCode

NODE_UNAVAILABLE = ErrorCode.NODE_UNAVAILABLE.value
DATABASE_UNAVAILABLE = ErrorCode.DATABASE_UNAVAILABLE.value


@dataclass(frozen=True)
class Answer:
    """An HTTP answer, or (status None) the name of the transport error that replaced it."""

    status: int | None
    body: dict[str, Any]
    transport: str | None = None

    @property
    def code(self) -> str | None:
        """The refusal's stable `error.code`, a transport error's name, or None on success."""
        if self.status is None:
            return f"transport:{self.transport}"
        if self.status < 400:
            return None
        error = self.body.get("error")
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            return str(error["code"])
        return f"http_{self.status}"

    @property
    def known(self) -> bool:
        """Does the answer say what happened? Not when none came (a transport error), nor on
        a 5xx other than 503 node_unavailable (the documented "nothing moved"): a 500 of a
        dropped database connection, or a 503 database_unavailable, leaves the effect unknown,
        and a client sends again with the same Idempotency-Key until an answer says."""
        if self.status is None:
            return False
        return self.status < 500 or self.code == NODE_UNAVAILABLE

    def summary(self) -> str:
        return f"{self.status or 'lost'} {self.code or ''}".strip()


@dataclass
class TransferCase:
    key: str
    sender: int
    recipient: int
    amount_msat: int
    # The refusal this request was built to provoke (overdraft, self, unknown sender), if any.
    expected_code: str | None = None
    answer: Answer | None = None
    retries: int = 0
    sends: list[str] = field(default_factory=list)  # each attempt's answer, in order

    def body(self) -> dict[str, Any]:
        # The memo carries the key, so the journal row of this request can be found.
        return {
            "from_user_id": self.sender,
            "to_user_id": self.recipient,
            "amount_msat": self.amount_msat,
            "memo": self.key,
        }

    @property
    def accepted(self) -> bool:
        return self.answer is not None and self.answer.status == 200


@dataclass
class PaymentCase:
    key: str
    user: int
    payment_hash: str
    invoice: str
    amount_msat: int
    variant: str  # ok | fail | slow | noroute | internal (LndHub: another load user's invoice)
    answer: Answer | None = None  # the sendpayment answer the client ended up with
    final: str | None = None  # succeeded | failed, once the client saw it
    fee_msat: int | None = None
    retries: int = 0
    sends: list[str] = field(default_factory=list)  # each attempt's answer, in order
    # "api" (/virtual_sendpayment with an Idempotency-Key) or "lndhub" (/lndhub/payinvoice,
    # idempotent per account and invoice; a repeat after a final failure is a new attempt).
    via: str = "api"
    payee: int | None = None  # an internal invoice's user (credited in the ledger)
    # LndHub: whether vnode made a payment at all, learned from /virtual_payment after the
    # answers (a lost or refused repeat says nothing about an earlier attempt).
    exists: bool = False
    paid_answers: int = 0  # LndHub answers "paid" (200), repeats included

    @property
    def accepted(self) -> bool:
        """vnode took the payment on (200 final or 202 pending): a ledger row must exist."""
        if self.via == "lndhub":
            return self.exists
        return self.answer is not None and self.answer.status in (200, 202)

    @property
    def internal(self) -> bool:
        return self.payee is not None


@dataclass
class InboundCase:
    user: int
    amount_msat: int
    payment_hash: str
    invoice: str
    paid: bool | None = None  # the outside payer's answer; None while unknown


@dataclass
class OpStats:
    latencies_s: list[float] = field(default_factory=list)
    ok: int = 0
    errors: int = 0

    def percentile_ms(self, pct: float) -> float:
        if not self.latencies_s:
            return math.nan
        ordered = sorted(self.latencies_s)
        index = min(len(ordered) - 1, math.ceil(len(ordered) * pct / 100) - 1)
        return 1000 * ordered[max(0, index)]

    @property
    def max_ms(self) -> float:
        return 1000 * max(self.latencies_s) if self.latencies_s else math.nan


@dataclass(frozen=True)
class ServerError:
    op: str
    status: int
    code: str | None
    request_id: str | None
    allowed: bool  # 503 node_unavailable while the chaos controller had the node locked
    # A 5xx whose effect is unknown (a database failover, `make ha`: resolved by a replay)
    unknown_outcome: bool = False


class Stats:
    """Latency and outcome per operation, errors by code, 5xx answers, late starts."""

    def __init__(self, allow_node_unavailable: bool, allow_unknown_outcome: bool = False) -> None:
        self.allow_node_unavailable = allow_node_unavailable
        # `make ha`: a 5xx that leaves the effect unknown is expected while the database fails
        # over; it is counted apart, and the end checks prove each was resolved by a replay.
        self.allow_unknown_outcome = allow_unknown_outcome
        self.ops: dict[str, OpStats] = defaultdict(OpStats)
        self.errors_by_code: Counter[str] = Counter()
        self.server_errors: list[ServerError] = []
        self.scheduled = 0
        self.late_starts = 0
        self.max_late_s = 0.0

    def record(self, op: str, latency_s: float, answer: Answer) -> None:
        stats = self.ops[op]
        stats.latencies_s.append(latency_s)
        code = answer.code
        if code is None:
            stats.ok += 1
            return
        stats.errors += 1
        label = code if answer.status is None else f"{answer.status} {code}"
        self.errors_by_code[label] += 1
        if answer.status is not None and answer.status >= 500:
            request_id = answer.body.get("request_id")
            unknown = not answer.known
            self.server_errors.append(
                ServerError(
                    op,
                    answer.status,
                    code,
                    str(request_id) if request_id else None,
                    allowed=(
                        self.allow_node_unavailable
                        and code == NODE_UNAVAILABLE
                        and answer.status == 503
                    )
                    or (self.allow_unknown_outcome and unknown),
                    unknown_outcome=unknown,
                )
            )

    def late(self, lateness_s: float, threshold_s: float) -> None:
        self.scheduled += 1
        self.max_late_s = max(self.max_late_s, lateness_s)
        if lateness_s > threshold_s:
            self.late_starts += 1

    @property
    def requests(self) -> int:
        return sum(len(s.latencies_s) for s in self.ops.values())

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.ops.values())

    @property
    def forbidden_server_errors(self) -> list[ServerError]:
        return [e for e in self.server_errors if not e.allowed]


@dataclass
class Model:
    """The client's own books: funding, and every money request with the answer it got."""

    funding_msat: dict[int, int] = field(default_factory=dict)
    transfers: list[TransferCase] = field(default_factory=list)
    payments: list[PaymentCase] = field(default_factory=list)
    inbound: list[InboundCase] = field(default_factory=list)
    # Problems seen while the load ran (a replay that answered differently, a negative balance).
    problems: list[str] = field(default_factory=list)

    def expected_balances(self, fee_of: Any) -> dict[int, int]:
        """Per user, what the ledger must hold once every payment is final."""
        balance: Counter[int] = Counter(self.funding_msat)
        for t in self.transfers:
            if t.accepted:
                balance[t.sender] -= t.amount_msat
                balance[t.recipient] += t.amount_msat
        for p in self.payments:
            if p.accepted and p.final == "succeeded":
                if p.payee is not None:  # settled in the ledger, no fee
                    balance[p.user] -= p.amount_msat
                    balance[p.payee] += p.amount_msat
                else:
                    balance[p.user] -= p.amount_msat + fee_of(p.amount_msat)
        for i in self.inbound:
            if i.paid:
                balance[i.user] += i.amount_msat
        return dict(balance)
