"""The hostile Lightning phase of `make fuzz`: what a schema fuzzer cannot make.

schemathesis invents JSON; it cannot sign a BOLT 11 invoice, and it cannot make the node lie.
This phase does both against a running service and its simulated node:

1. **Signed invoices** with hostile contents, each posted to `/virtual_decodeinvoice` (read
   key) and `/virtual_sendpayment` (spend key, a funded user): extreme expiries (10^12 s,
   2^40 s, 2^64-1 s, a timestamp in year 3058), extreme amounts (1 msat, exactly 21 million
   BTC, 2^63 msat and 21 million BTC + 1 in the amount prefix, amountless with amt_msat 0,
   2^63-1 and 2^63), RGB amounts beyond 2^63-1, many route hints and hints with maximal fees,
   descriptions of 639 bytes (plain, multi-byte, with NUL and other control characters),
   unknown odd (optional) and even (required) feature bits, every other network, an expired
   invoice, a 639-byte payment metadata, huge min_final_cltv. A known refusal must be answered
   with its code (`invoice_expiry_too_far` for expiries, `wrong_network`, ...); nothing may be
   answered 5xx.
2. **Hostile node answers** (the sim's `hostile` faults, vnode_sim/faults.py), served
   while payments are pending: for every kind, a payment the node *settled* but whose records
   (/getpayment, /listpayments) are hostile, a payment still *held* whose records are hostile,
   and a received invoice whose /listpayments record is hostile. Meanwhile a fresh payment is
   held, released, and must become final in the ledger within a deadline (no worker is stuck
   behind a bad record). Nothing may be booked from a hostile record. Then the faults are
   cleared and every one of those payments must end as the node says (settled -> succeeded
   with a preimage that hashes to the payment hash, held -> failed and refunded, received ->
   credited once, with its amount).

The caller checks `vnode audit` afterwards (proving/fuzz.py does). Counts of everything tried
are in :class:`HostileResult`, for docs/RELIABILITY.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import asyncpg
import httpx

from vnode.lightning import bolt11
from vnode.lightning.bolt11 import Network, RawField, RouteHintHop
from vnode_sim.bolt11 import _sign_words, encode
from vnode_sim.faults import HostileKind
from vnode_sim.invoices import rgb_tags

NETWORKS: Final[tuple[Network, ...]] = tuple(Network)
MAX_MSAT: Final = 21_000_000 * 100_000_000_000
I64_MAX: Final = 2**63 - 1
# Kinds that leave a record valid (a reader ignores unknown fields): these may be booked.
HARMLESS: Final = frozenset({HostileKind.EXTRA_FIELDS})
# How many times each hostile entry may be served: more than any run polls.
HOSTILE_COUNT: Final = 1_000_000
_SIGNATURE_WORDS: Final = 104

R = TypeVar("R")


# --------------------------------------------------------------------------------------------
# Signed hostile invoices


@dataclass(frozen=True)
class HostileInvoice:
    category: str
    label: str
    text: str
    amt_msat: int | None = None  # sent with the invoice (amountless invoices)
    # (HTTP status, error code) both routes must answer, when the refusal is certain.
    expect: tuple[int, str] | None = None


def _key() -> bytes:
    return secrets.token_bytes(32)


def _encode(network: Network, now: int, **fields: Any) -> str:
    preimage = os.urandom(32)
    base: dict[str, Any] = {
        "network": network,
        "amount_msat": 1_000,
        "payment_hash": hashlib.sha256(preimage).hexdigest(),
        "payment_secret": os.urandom(32).hex(),
        "timestamp": now,
        "private_key": _key(),
        "description": "vnode hostile fuzz",
        "expiry_s": 600,
    }
    base.update(fields)
    return encode(**base)


def _resign(text: str, *, hrp: str | None = None, extra: Sequence[int] = ()) -> str:
    """The invoice with another prefix or extra tagged fields, signed again (by a new key:
    only the signature's validity matters, and the payee is nobody the node knows)."""
    old_hrp, words = bolt11._bech32_decode(text)
    signed = [*words[:-_SIGNATURE_WORDS], *extra]
    return _sign_words(hrp or old_hrp, signed, _key())


def _features_field(bits: int) -> list[int]:
    return bolt11._field(5, bolt11._int_to_words(bits))


def _hop(i: int, *, fee_base: int = 1_000, ppm: int = 100, cltv: int = 40) -> RouteHintHop:
    pubkey = bytes([2]) + hashlib.sha256(b"hop %d" % i).digest()
    return RouteHintHop(pubkey.hex(), i + 1, fee_base, ppm, cltv)


def hostile_invoices(network: Network, now: int, asset_id: str) -> list[HostileInvoice]:
    """Every hostile invoice of phase 1, signed, for a node on ``network``."""
    too_far = (422, "invoice_expiry_too_far")
    invalid = (422, "invalid_invoice")
    cases: list[HostileInvoice] = []

    def add(
        category: str,
        label: str,
        text: str,
        amt_msat: int | None = None,
        expect: tuple[int, str] | None = None,
    ) -> None:
        cases.append(HostileInvoice(category, label, text, amt_msat, expect))

    # Expiry (security review H1: a far expiry poisoned every pending payment).
    for expiry in (10**12, 2**40, 2**63, 2**64 - 1, 10**12 + 1):
        add("expiry", f"expiry {expiry} s", _encode(network, now, expiry_s=expiry), expect=too_far)
    add(
        "expiry",
        "timestamp 2^35-1 (year 3058)",
        _encode(network, now, timestamp=2**35 - 1, expiry_s=3600),
        expect=too_far,
    )
    add(
        "expiry",
        "expired an hour ago",
        _encode(network, now - 7200, expiry_s=3600),
        expect=(422, "invoice_expired"),
    )
    add(
        "expiry",
        "timestamp 0, expiring in an hour",
        _encode(network, now, timestamp=0, expiry_s=now + 3600),
    )
    add("expiry", "expiry 0", _encode(network, now, expiry_s=0), expect=(422, "invoice_expired"))
    # Amounts.
    add("amount", "1 msat", _encode(network, now, amount_msat=1))
    add(
        "amount",
        "21 million BTC",
        _encode(network, now, amount_msat=MAX_MSAT),
        expect=(422, "amount_too_large"),
    )
    prefix = "ln" + {"bitcoin": "bc", "testnet": "tb", "signet": "tbs", "regtest": "bcrt"}[network]
    plain = _encode(network, now, amount_msat=None)
    add(
        "amount",
        "2^63 msat in the prefix",
        _resign(plain, hrp=prefix + f"{2**63 * 10}p"),
        expect=invalid,
    )
    add(
        "amount",
        "21 million BTC + 1 in the prefix",
        _resign(plain, hrp=prefix + "21000001"),
        expect=invalid,
    )
    add("amount", "30-digit amount", _resign(plain, hrp=prefix + "9" * 30 + "p"), expect=invalid)
    for amt_msat, expect in (
        (0, (422, "invalid_amount")),
        (I64_MAX, (422, "amount_too_large")),
        (2**63, (422, "invalid_amount")),
        (1, None),
    ):
        add("amount", f"amountless, amt_msat {amt_msat}", plain, amt_msat, expect)
    for units in (2**63, 2**64 - 1):
        add(
            "amount",
            f"RGB amount {units}",
            _encode(network, now, amount_msat=3_000_000, extra_tags=rgb_tags(asset_id, units)),
            expect=invalid,
        )
    add(
        "amount",
        "RGB amount 0",  # was a 500: the ledger's CHECK (asset_amount > 0)
        _encode(network, now, amount_msat=3_000_000, extra_tags=rgb_tags(asset_id, 0)),
        expect=invalid,
    )
    # Route hints.
    add(
        "route_hints",
        "50 hints of one hop",
        _encode(network, now, route_hints=[[_hop(i)] for i in range(50)]),
    )
    add(
        "route_hints",
        "one hint of 12 hops",
        _encode(network, now, route_hints=[[_hop(i) for i in range(12)]]),
    )
    add(
        "route_hints",
        "maximal fees and CLTV",
        _encode(
            network, now, route_hints=[[_hop(1, fee_base=2**32 - 1, ppm=2**32 - 1, cltv=2**16 - 1)]]
        ),
    )
    # Descriptions (639 bytes is the most one field holds).
    add("description", "639 ASCII bytes", _encode(network, now, description="d" * 639))
    add(
        "description",
        "639 bytes of 3-byte characters",
        _encode(network, now, description="€" * 213),
    )
    add(
        "description",
        "NUL and control characters",
        _encode(network, now, description="\x00\x01\x1b[31m\x7f" + "x" * 100),
    )
    add(
        "description",
        "description hash only",
        _encode(network, now, description=None, description_hash=os.urandom(32)),
    )
    # Feature bits.
    add(
        "features",
        "unknown odd bits 101 and 1023",
        _encode(network, now, features={8, 14, 101, 1023}),
    )
    bare = _encode(network, now, features=())
    add(
        "features",
        "unknown even bit 100",
        _resign(bare, extra=_features_field(1 << 100 | 1 << 14 | 1 << 8)),
        expect=invalid,
    )
    add(
        "features",
        "unknown even bit 1022",
        _resign(bare, extra=_features_field(1 << 1022 | 1 << 14)),
        expect=invalid,
    )
    add(
        "features",
        "basic_mpp without payment_secret",
        _resign(bare, extra=_features_field(1 << 16)),
        expect=invalid,
    )
    # Other networks.
    for other in NETWORKS:
        if other != network:
            add("network", f"a {other} invoice", _encode(other, now), expect=(422, "wrong_network"))
    # Other fields.
    add("other", "639-byte payment metadata", _encode(network, now, metadata=b"m" * 639))
    add(
        "other",
        "min_final_cltv 2^64-1",
        _encode(network, now, min_final_cltv_expiry_delta=2**64 - 1),
    )
    add(
        "other",
        "unknown tags 0 and 29",
        _encode(network, now, extra_tags=(RawField(0, (31,) * 100), RawField(29, (0,)))),
    )
    add(
        "other",
        "a duplicate payment hash field",
        _resign(bare, extra=bolt11._field(1, bolt11._bytes_to_words(os.urandom(32)))),
        expect=invalid,
    )
    return cases


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class HostileResult:
    invoices: Counter[str] = field(default_factory=Counter)  # category -> invoices
    requests: Counter[tuple[str, int]] = field(default_factory=Counter)  # (route, status)
    served: dict[str, int] = field(default_factory=dict)  # sim: kind -> hostile records served
    payments: Counter[str] = field(default_factory=Counter)  # group -> payments made
    server_errors: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)  # an expected refusal not answered
    booked_from_hostile: list[str] = field(default_factory=list)
    not_final: list[str] = field(default_factory=list)
    wrong_outcome: list[str] = field(default_factory=list)
    probe_s: float | None = None  # a fresh payment: release -> final in the ledger
    errors: list[str] = field(default_factory=list)  # the phase itself could not run
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds it took

    def mark(self, step: str, since: float) -> float:
        now = time.monotonic()
        self.steps[step] = now - since
        return now

    def reasons(self) -> list[str]:
        reasons = []
        if self.server_errors:
            reasons.append(f"{len(self.server_errors)} hostile input(s) answered 5xx")
        if self.unexpected:
            reasons.append(f"{len(self.unexpected)} hostile input(s) not refused as expected")
        if self.booked_from_hostile:
            reasons.append(
                f"{len(self.booked_from_hostile)} payment(s) booked from a hostile node answer"
            )
        if self.probe_s is None and not self.skipped:
            reasons.append("a fresh payment did not become final behind hostile records")
        if self.not_final:
            reasons.append(f"{len(self.not_final)} payment(s) or receipt(s) never final")
        if self.wrong_outcome:
            reasons.append(
                f"{len(self.wrong_outcome)} payment(s) ended otherwise than the node said"
            )
        reasons += [f"hostile phase: {e}" for e in self.errors]
        return reasons

    def details(self) -> list[str]:
        return [
            *self.server_errors,
            *self.unexpected,
            *self.booked_from_hostile,
            *self.not_final,
            *self.wrong_outcome,
            *self.errors,
        ]


# --------------------------------------------------------------------------------------------
# The run


@dataclass(frozen=True)
class HostileOptions:
    payer: int
    payee: int
    asset_id: str
    per_kind: int = 1  # payments (and receipts) of each hostile kind
    # How long the hostile records keep being served after the fresh payment is final: more
    # reconciler and watcher passes over them (the short test needs none).
    dwell_s: float = 0.0
    probe_deadline_s: float = 10.0
    settle_deadline_s: float = 30.0
    request_timeout_s: float = 30.0


@dataclass
class _Service:
    """The service's API, by key, and the sim's control API."""

    api: httpx.AsyncClient
    sim: httpx.AsyncClient
    keys: dict[str, str]  # scope -> key
    result: HostileResult

    async def call(
        self, scope: str, path: str, body: dict[str, Any], label: str = ""
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[scope]}"}
        if path == "/virtual_sendpayment":
            headers["Idempotency-Key"] = "hostile-" + secrets.token_hex(8)
        answer = await self.api.post(path, json=body, headers=headers)
        self.result.requests[(path, answer.status_code)] += 1
        if answer.status_code >= 500:
            self.result.server_errors.append(
                f"POST {path} {label or body}: {answer.status_code} {answer.text[:300]}"
            )
        return answer

    async def control(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = await self.sim.post(path, json=body)
        if answer.status_code != 200:
            raise RuntimeError(f"sim {path} {body}: {answer.status_code} {answer.text[:300]}")
        payload: dict[str, Any] = answer.json()
        return payload


async def run_hostile(
    url: str, sim_url: str | None, keys: dict[str, str], dsn: str, options: HostileOptions
) -> HostileResult:
    result = HostileResult()
    started = time.monotonic()
    timeout = httpx.Timeout(options.request_timeout_s)
    async with (
        httpx.AsyncClient(base_url=url, timeout=timeout) as api,
        httpx.AsyncClient(base_url=sim_url or "http://127.0.0.1:9", timeout=timeout) as sim,
    ):
        service = _Service(api, sim, keys, result)
        try:
            await _invoices_phase(service, options)
            result.mark("signed invoices", started)
            if sim_url is None:
                result.skipped.append("node answers: no simulated node (--sim-url) to serve them")
            else:
                await _node_answers_phase(service, dsn, options)
        except (httpx.HTTPError, RuntimeError, TimeoutError, asyncpg.PostgresError) as exc:
            result.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            if sim_url is not None:
                with contextlib.suppress(httpx.HTTPError):
                    await sim.post("/_sim/faults", json={"hostile": None, "next_payment": None})
    result.seconds = time.monotonic() - started
    return result


async def _network(service: _Service) -> Network:
    # The service says which network it is on in its decode answers; ask it with a fresh
    # invoice of each network, and keep the one that is not refused as wrong_network.
    now = int(time.time())
    for network in NETWORKS:
        answer = await service.api.post(
            "/virtual_decodeinvoice",
            json={"invoice": _encode(network, now)},
            headers={"Authorization": f"Bearer {service.keys['read']}"},
        )
        if answer.status_code == 200:
            return network
    raise RuntimeError("no network's invoice is accepted by /virtual_decodeinvoice")


async def _invoices_phase(service: _Service, options: HostileOptions) -> None:
    network = await _network(service)
    cases = hostile_invoices(network, int(time.time()), options.asset_id)
    await _gather([_try_invoice(service, case, options) for case in cases], limit=8)


async def _try_invoice(service: _Service, case: HostileInvoice, options: HostileOptions) -> None:
    service.result.invoices[case.category] += 1
    body: dict[str, Any] = {"invoice": case.text}
    if case.amt_msat is not None:
        body["amt_msat"] = case.amt_msat
    label = f"[{case.category}: {case.label}]"
    decoded = await service.call("read", "/virtual_decodeinvoice", body, label)
    sent = await service.call(
        "spend", "/virtual_sendpayment", {"user_id": options.payer, **body}, label
    )
    if case.expect is not None:
        for route, answer in (("decodeinvoice", decoded), ("sendpayment", sent)):
            code = _error_code(answer)
            if (answer.status_code, code) != case.expect:
                service.result.unexpected.append(
                    f"{route} {label}: expected {case.expect[0]} {case.expect[1]}, got "
                    f"{answer.status_code} {code or answer.text[:200]}"
                )


def _error_code(answer: httpx.Response) -> str | None:
    try:
        payload = answer.json()
    except ValueError:
        return None
    error = payload.get("error") if isinstance(payload, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


@dataclass
class _Tracked:
    group: str  # settled, held, received
    kind: HostileKind
    payment_hash: str
    amount_msat: int
    preimage: str | None = None


async def _node_answers_phase(service: _Service, dsn: str, options: HostileOptions) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    try:
        await _node_answers(service, pool, options)
    finally:
        await pool.close()


async def _node_answers(service: _Service, pool: asyncpg.Pool, options: HostileOptions) -> None:
    step = time.monotonic()
    kinds = [kind for kind in HostileKind for _ in range(options.per_kind)]
    # Payments the node will settle (settled) and keep in flight (held): both with hostile
    # records from before the node's first answer about them.
    invoices = await _gather(
        [service.control("/_sim/invoice", {"amt_msat": 1_000 + i}) for i in range(2 * len(kinds))],
        limit=8,
    )
    groups = ["settled"] * len(kinds) + ["held"] * len(kinds)
    tracked = [
        _Tracked(group, kind, made["payment_hash"], 1_000 + i)
        for i, (group, kind, made) in enumerate(zip(groups, kinds + kinds, invoices, strict=True))
    ]
    await _gather(
        [
            service.control(
                "/_sim/faults",
                {"hostile": item.kind.value, "count": HOSTILE_COUNT, "target": item.payment_hash},
            )
            for item in tracked
        ],
        limit=8,
    )
    await service.control("/_sim/faults", {"next_payment": "hold", "count": len(tracked)})
    answers = await _gather(
        [
            service.call(
                "spend",
                "/virtual_sendpayment",
                {"user_id": options.payer, "invoice": made["invoice"]},
                "[held payment]",
            )
            for made in invoices
        ]
    )
    for item, answer in zip(tracked, answers, strict=True):
        service.result.payments[item.group] += 1
        if answer.status_code != 202:
            service.result.errors.append(
                f"a held payment was answered {answer.status_code}: {answer.text[:200]}"
            )
    settled = [item for item in tracked if item.group == "settled"]
    released = await _gather(
        [
            service.control(
                "/_sim/release", {"payment_hash": item.payment_hash, "outcome": "succeed"}
            )
            for item in settled
        ],
        limit=8,
    )
    for item, record in zip(settled, released, strict=True):
        item.preimage = record.get("preimage")
    # Invoices of a user, paid from outside, whose /listpayments records are hostile.
    received = list(
        await asyncio.gather(
            *(_received(service, options, kind, 2_000 + i) for i, kind in enumerate(kinds))
        )
    )
    step = service.result.mark("payments under hostile records", step)

    # The probe: a fresh payment the node settles must be final in the ledger in time.
    await _probe(service, options)
    step = service.result.mark("fresh payment", step)
    if options.dwell_s > 0:
        await asyncio.sleep(options.dwell_s)  # the workers keep reading hostile records
        step = service.result.mark("dwell", step)

    # Nothing was booked from a hostile record meanwhile.
    for item in [*tracked, *received]:
        state = await _state(service, pool, item, options.payer)
        if item.kind not in HARMLESS and state not in ("pending", "not credited"):
            service.result.booked_from_hostile.append(
                f"{item.group} {item.payment_hash[:12]} ({item.kind}): {state}"
            )
    faults = await service.sim.get("/_sim/faults")
    service.result.served = dict(faults.json()["hostile_served"])

    # The node answers soundly again: everything must end as the node says.
    await service.control("/_sim/faults", {"hostile": None})
    await service.control("/_sim/release_all", {"outcome": "fail"})
    expected = {"settled": "succeeded", "held": "failed", "received": "credited"}
    deadline = time.monotonic() + options.settle_deadline_s
    waiting = [*tracked, *received]
    while waiting and time.monotonic() < deadline:
        states = await _gather(
            [_state(service, pool, item, options.payer) for item in waiting], limit=8
        )
        waiting = [
            item
            for item, state in zip(waiting, states, strict=True)
            if state != expected[item.group]
        ]
        if waiting:
            await asyncio.sleep(0.2)
    for item in waiting:
        state = await _state(service, pool, item, options.payer)
        where = f"{item.group} {item.payment_hash[:12]} ({item.kind})"
        if state in ("pending", "not credited"):
            service.result.not_final.append(
                f"{where}: {state} after {options.settle_deadline_s:.0f}s"
            )
        else:
            service.result.wrong_outcome.append(
                f"{where}: {state}, the node said {expected[item.group]}"
            )
    for item in tracked:
        if item.group == "settled" and item not in waiting:
            await _check_preimage(service, item, options.payer)
    service.result.mark("all final afterwards", step)


async def _received(
    service: _Service, options: HostileOptions, kind: HostileKind, amount_msat: int
) -> _Tracked:
    answer = await service.call(
        "receive",
        "/virtual_lninvoice",
        {"user_id": options.payee, "amt_msat": amount_msat, "description": "hostile fuzz"},
    )
    if answer.status_code != 200:
        raise RuntimeError(f"/virtual_lninvoice: {answer.status_code} {answer.text[:200]}")
    invoice = answer.json()
    item = _Tracked("received", kind, invoice["payment_hash"], amount_msat)
    # Hostile before it is paid: the watcher never sees a sound record of the success.
    await service.control(
        "/_sim/faults",
        {
            "hostile": kind.value,
            "count": HOSTILE_COUNT,
            "target": item.payment_hash,
            "route": "/listpayments",
        },
    )
    await service.control("/_sim/pay", {"invoice": invoice["invoice"]})
    service.result.payments["received"] += 1
    return item


async def _probe(service: _Service, options: HostileOptions) -> None:
    made = await service.control("/_sim/invoice", {"amt_msat": 4_321})
    await service.control("/_sim/faults", {"next_payment": "hold", "count": 1})
    answer = await service.call(
        "spend",
        "/virtual_sendpayment",
        {"user_id": options.payer, "invoice": made["invoice"]},
        "[probe]",
    )
    if answer.status_code != 202:
        service.result.errors.append(f"the probe payment was answered {answer.status_code}")
        return
    await service.control(
        "/_sim/release", {"payment_hash": made["payment_hash"], "outcome": "succeed"}
    )
    released = time.monotonic()
    deadline = released + options.probe_deadline_s
    while time.monotonic() < deadline:
        polled = await service.call(
            "read",
            "/virtual_payment",
            {"user_id": options.payer, "payment_hash": made["payment_hash"]},
            "[probe poll]",
        )
        if polled.status_code == 200:
            if polled.json().get("status") == "succeeded":
                service.result.probe_s = time.monotonic() - released
            else:
                service.result.wrong_outcome.append(f"probe: {polled.text[:200]}")
            return
        await asyncio.sleep(0.1)


async def _state(service: _Service, pool: asyncpg.Pool, item: _Tracked, payer: int) -> str:
    """pending, succeeded or failed (a payment); not credited or credited (a receipt)."""
    if item.group == "received":
        row = await pool.fetchrow(
            "SELECT count(*) AS n, sum(amount_msat) AS amount FROM ln_receipts "
            "WHERE payment_hash = $1 AND source = 'node'",
            item.payment_hash,
        )
        assert row is not None
        if row["n"] == 0:
            return "not credited"
        if row["n"] == 1 and row["amount"] == item.amount_msat:
            return "credited"
        return f"credited {row['n']} time(s), {row['amount']} msat"
    answer = await service.call(
        "read", "/virtual_payment", {"user_id": payer, "payment_hash": item.payment_hash}, "[state]"
    )
    if answer.status_code == 202:
        return "pending"
    status = answer.json().get("status") if answer.status_code == 200 else None
    return str(status) if status else f"HTTP {answer.status_code}"


async def _check_preimage(service: _Service, item: _Tracked, payer: int) -> None:
    answer = await service.call(
        "read",
        "/virtual_payment",
        {"user_id": payer, "payment_hash": item.payment_hash},
        "[preimage]",
    )
    preimage = answer.json().get("preimage")
    if (
        preimage != item.preimage
        or not isinstance(preimage, str)
        or hashlib.sha256(bytes.fromhex(preimage)).hexdigest() != item.payment_hash
    ):
        service.result.wrong_outcome.append(
            f"settled {item.payment_hash[:12]} ({item.kind}): preimage {preimage!r}, the node's "
            f"is {item.preimage!r}"
        )


async def _gather(calls: Sequence[Awaitable[R]], limit: int = 32) -> list[R]:
    """All the calls, at most ``limit`` at a time (each held payment waits for its answer)."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Awaitable[R]) -> R:
        async with gate:
            return await call

    return list(await asyncio.gather(*(one(c) for c in calls)))
