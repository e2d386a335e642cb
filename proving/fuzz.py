"""`make fuzz`: schemathesis over /openapi.json with a key of every scope, a money check for the
keys that must never move money, and the property tests of the parsers money depends on.

    python -m proving.fuzz                                   # own throwaway service
    python -m proving.fuzz --max-examples 20 --seed 7        # shorter, reproducible
    python -m proving.fuzz --url http://127.0.0.1:3001 --dsn postgresql://...   # a running one
    python -m proving.fuzz --keys "" --parser-examples 0     # the hostile phase alone

By default it starts a throwaway service (a fresh PostgreSQL database, `vnode sim serve` and one
`vnode serve` against them), creates one API key of each scope (admin, spend, receive, read)
and funds the users of the OpenAPI examples (123456789, 987654321) in BTC and an RGB asset, so
that the examples schemathesis sends name users who could actually pay.

Then, key by key, read and receive first:

1. for `read` and `receive`: a scope probe, one valid money-moving request per endpoint that
   moves money (transfer BTC and RGB, pay an invoice, admin credit and debit, webhook retry),
   each of which must answer 403;
2. `schemathesis run --checks all --continue-on-failure` with that key;
3. for `read` and `receive`: the ledger before and after (every balance and pending amount, the
   system accounts, the number of journal rows, coins, history rows, payments, pending payments
   and receipts) and the checks of `vnode audit` (same function): any change is money moved.

Pass rule (the last line says PASS or FAIL; the exit code is 1 on FAIL):
- no failure of a gating check: no 5xx (`not_a_server_error`), every status, content type,
  header and body as documented (`status_code_conformance`, `content_type_conformance`,
  `response_headers_conformance`, `response_schema_conformance`), no endpoint that ignores its
  authentication (`ignored_auth`);
- no 2xx from an operation above the key's scope (the scope is in each operation's summary), in
  the probe or anywhere in schemathesis' traffic;
- the ledger unchanged by the read and receive keys and the audit clean before and after;
- schemathesis ran to completion without errors, and the parser property tests passed;
- hostile phase: no 5xx, every certain refusal answered with its code, nothing booked from a
  hostile node answer, the fresh payment final within its deadline, every payment and receipt
  of the phase final as the node said once the node answers soundly again.

The other checks (schemathesis' judgement of which requests are valid, `negative_data_rejection`
and `positive_data_acceptance`, and the HTTP method ones) are reported, not gating: the
request schemas cannot say "exactly one amount field" or "a cursor this API gave", so they flag
correct refusals.

4. the hostile Lightning phase (proving/hostile.py), with the spend, read and receive keys:
   signed BOLT 11 invoices with extreme expiry, amounts, route hints, descriptions, feature
   bits and networks posted to /virtual_decodeinvoice and /virtual_sendpayment, and hostile
   node answers served by the simulated node (its `hostile` faults) while payments are
   pending; a fresh payment must become final meanwhile, and every one of them afterwards.

GET /virtual_events is left out of schemathesis: a Server-Sent Events stream never ends, so every
request for a known user would wait for the request timeout. With --url, nothing is started;
--dsn must reach the service's database (keys are created there and revoked at the end, users
funded, money moved by the admin and spend keys): never point it at production, and keep other
traffic away while it runs, or the money check sees that traffic.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import httpx
import typer
from rich.console import Console
from rich.table import Table

from harness.processes import clean_env
from harness.serve import ServeProcess
from proving.hostile import HostileOptions, HostileResult, run_hostile
from proving.stage import Database, stop_serve, wait_sim
from vnode.apikeys import Scope, create_key, revoke_key
from vnode.ledger.audit import run_audit
from vnode.lightning.sim_process import SimProcess
from vnode.loopback import free_port

console = Console(stderr=True)  # progress
out = Console(width=120)  # results
REPO = Path(__file__).resolve().parents[1]

# Read and receive first: the money check needs a ledger nothing else is moving.
SCOPES = (Scope.READ, Scope.RECEIVE, Scope.SPEND, Scope.ADMIN)
NO_MONEY = frozenset({Scope.READ, Scope.RECEIVE})
# The users of the OpenAPI examples: schemathesis sends those bodies first, so with these users
# funded a request that should be refused for its scope would otherwise really move money.
PAYER, PAYEE = 123456789, 987654321
RGB_ASSET = "rgb:CJkb4YZw-jRiz2sk-~PARPio-wtVYI1c-XAEYCqO-wTfvRZ8"
FUND_MSAT, FUND_UNITS = 10**10, 10**6

GATING_CHECKS = frozenset(
    {
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "ignored_auth",
    }
)
# (check, "METHOD /path") pairs the lead has accepted as known; reported, not gating. Empty:
# add an entry only with a note saying why it is acceptable.
KNOWN_FAILURES: frozenset[tuple[str, str]] = frozenset()
EXCLUDED_PATHS = ("/virtual_events",)
REPORT_STEMS = frozenset({*(s.value for s in Scope), "parsers"})
_SCOPE_IN_SUMMARY = re.compile(r"\(scope: (admin|spend|receive|read)\)")


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Example:
    """One failing (or suspicious) exchange, enough to reproduce it with curl."""

    check: str
    operation: str
    method: str
    uri: str
    body: str
    status: int | None
    response: str
    message: str

    def describe(self) -> str:
        request = f"{self.method} {self.uri}" + (f" body={self.body}" if self.body else "")
        return f"{request}\n    -> {self.status} {self.response}\n    {self.message}"


@dataclass
class KeyResult:
    scope: Scope
    seconds: float = 0.0
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    # (check, operation) -> failing cases, and one example of each
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: dict[tuple[str, str], Example] = field(default_factory=dict)
    scope_violations: list[Example] = field(default_factory=list)
    probe: list[str] = field(default_factory=list)  # "POST /x -> 403" per probe request
    errors: list[str] = field(default_factory=list)
    money_changes: list[str] | None = None  # None: not checked for this scope
    completed: bool = False

    def operations_failing(self, check: str) -> list[str]:
        return sorted(op for (c, op) in self.failures if c == check)

    def gating_failures(self) -> set[tuple[str, str]]:
        return {
            key for key in self.failures if key[0] in GATING_CHECKS and key not in KNOWN_FAILURES
        }

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def verdict(self) -> list[str]:
        """Why this key fails the run, besides gating check failures (empty: none)."""
        reasons = []
        if self.scope_violations:
            reasons.append(f"{len(self.scope_violations)} answer(s) above the key's scope")
        if self.money_changes:
            reasons.append(f"money moved ({len(self.money_changes)} change(s))")
        if self.errors:
            reasons.append(f"schemathesis errors: {'; '.join(self.errors)}")
        if not self.completed:
            reasons.append("schemathesis did not run to completion")
        return reasons


@dataclass
class FuzzReport:
    seed: int
    max_examples: int
    keys: list[KeyResult] = field(default_factory=list)
    audit: list[str] = field(default_factory=list)  # differences found by the audit at the end
    parsers: tuple[bool, str] | None = None  # (passed, pytest's summary line)
    hostile: HostileResult | None = None  # None: the hostile phase did not run
    control_seen: bool | None = None  # the money check saw a known transfer (None: not run)
    seconds: float = 0.0
    report_dir: Path | None = None

    def reasons(self) -> list[str]:
        reasons = []
        failing: dict[str, set[str]] = {}
        for k in self.keys:
            for check, operation in k.gating_failures():
                failing.setdefault(check, set()).add(operation)
        for check, operations in sorted(failing.items()):
            reasons.append(f"{check} on {len(operations)} operation(s)")
        reasons += [f"{k.scope.value} key: {why}" for k in self.keys for why in k.verdict()]
        if self.control_seen is False:
            reasons.append("the money check did not see a known 1 msat transfer")
        if self.audit:
            reasons.append(f"audit at the end: {len(self.audit)} difference(s)")
        if self.parsers is not None and not self.parsers[0]:
            reasons.append(f"parser properties: {self.parsers[1]}")
        if self.hostile is not None:
            reasons += self.hostile.reasons()
        return reasons

    @property
    def passed(self) -> bool:
        return not self.reasons()


@dataclass(frozen=True)
class FuzzOptions:
    max_examples: int = 100
    seed: int | None = None
    scopes: tuple[Scope, ...] = SCOPES
    url: str | None = None  # a running service (then dsn is its database)
    dsn: str | None = None
    server_dsn: str | None = None  # own service: a new database on this server (tests)
    report_dir: Path | None = None
    parser_examples: int = 0  # 0: do not run the parser property tests
    request_timeout_s: float = 10.0
    hostile: bool = True  # the hostile Lightning phase (proving/hostile.py)
    hostile_per_kind: int = 1  # payments and receipts per hostile node-answer kind
    hostile_dwell_s: float = 0.0  # hostile records served this long after the fresh payment
    sim_url: str | None = None  # with url: its simulated node (else no hostile node answers)


# --------------------------------------------------------------------------------------------
# The ledger, before and after


_COUNTS = {
    "journal rows": "SELECT count(*) FROM virtual_transactions",
    "coins": "SELECT count(*) FROM user_utxos",
    "spent coins": "SELECT count(*) FROM user_utxos WHERE spent_tx IS NOT NULL",
    "history rows": "SELECT count(*) FROM ln_user_transactions",
    "payments": "SELECT count(*) FROM ln_payments",
    "pending payments": "SELECT count(*) FROM ln_payments WHERE status = 'pending'",
    "invoice receipts": "SELECT count(*) FROM ln_receipts",
    "RGB receipts": "SELECT count(*) FROM rgb_receipts",
}


@dataclass(frozen=True)
class Ledger:
    """Everything that is money: a change in any of it is money moving."""

    balances: dict[tuple[int, str], tuple[int, int]]  # (user, asset) -> (balance, pending)
    system: dict[tuple[int, str], int]
    counts: dict[str, int]
    audit: list[str]

    def changes_since(self, before: Ledger) -> list[str]:
        found = []
        for key in sorted(before.balances.keys() | self.balances.keys()):
            old, new = before.balances.get(key, (0, 0)), self.balances.get(key, (0, 0))
            if old != new:
                found.append(f"user {key[0]} {key[1]}: (balance, pending) {old} -> {new}")
        for key in sorted(before.system.keys() | self.system.keys()):
            old_s, new_s = before.system.get(key, 0), self.system.get(key, 0)
            if old_s != new_s:
                found.append(f"system account {key[0]} {key[1]}: {old_s} -> {new_s}")
        found += [
            f"{name}: {before.counts[name]} -> {n}"
            for name, n in self.counts.items()
            if n != before.counts[name]
        ]
        return found + [f"audit: {d}" for d in self.audit if d not in before.audit]


async def read_ledger(dsn: str) -> Ledger:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            # Zero rows (a node created, nothing held) are no money: left out.
            balances = {
                (r["user_id"], r["asset_id"]): (r["spendable"], r["pending"])
                for r in await conn.fetch(
                    "SELECT user_id, asset_id, spendable, pending FROM ln_user_balances "
                    "WHERE spendable <> 0 OR pending <> 0"
                )
            }
            system = {
                (r["account_id"], r["asset_id"]): r["balance"]
                for r in await conn.fetch(
                    "SELECT account_id, asset_id, balance FROM system_balances WHERE balance <> 0"
                )
            }
            counts = {name: int(await conn.fetchval(sql)) for name, sql in _COUNTS.items()}
        report = await run_audit(conn)  # what `vnode audit` checks, on its own snapshot
    finally:
        await conn.close()
    audit = [
        f"{d.check}: account {d.account} {d.asset_id} expected {d.expected} found {d.found}"
        for d in report.differences
    ]
    return Ledger(balances, system, counts, audit)


# --------------------------------------------------------------------------------------------
# The service under test


@dataclass
class Target:
    url: str
    dsn: str
    keys: dict[Scope, str]
    key_ids: list[int]
    sim_url: str | None = None


@contextlib.asynccontextmanager
async def own_service(workdir: Path, server_dsn: str | None) -> AsyncIterator[tuple[str, str, str]]:
    """A fresh database, `vnode sim serve` and one `vnode serve`; yields (url, dsn, sim url)."""
    database = Database(workdir, server_dsn)
    sim: SimProcess | None = None
    serve: ServeProcess | None = None
    try:
        # The sim starts while the database is made and migrated.
        sim = SimProcess(
            "127.0.0.1",
            free_port(),
            workdir / "sim.log",
            ("--rgb-asset", f"{RGB_ASSET}=1000000000"),
        )
        dsn = await database.start()
        await wait_sim(sim)
        env = {
            "VNODE_DATABASE_URL": dsn,
            "VNODE_MASTER_SEED": secrets.token_hex(32),
            "VNODE_NODE": "sim",
            "VNODE_RLN_URL": sim.url,
            "VNODE_ACCESS_LOG": "false",
            "VNODE_LOG_LEVEL": "WARNING",
            # The inbound webhook answers 503 without a secret; with one it checks signatures,
            # which is what there is to fuzz.
            "VNODE_WEBHOOK_SECRET": "whsec-fuzz-" + secrets.token_urlsafe(24),
            # Lightning Addresses answer 503 not_configured without a public URL; with one
            # they claim names and serve LNURL-pay, which is what there is to fuzz.
            "VNODE_PUBLIC_URL": "http://127.0.0.1",
            # Never deliver events: the admin key registers whatever URLs the fuzzer invents.
            "VNODE_EVENTS_INTERVAL_S": "3600",
            # The hostile phase holds payments at the node: each such send answers 202 after
            # this long (the sim settles others in 20 ms, well within it).
            "VNODE_PAYMENT_WAIT_S": "1",
        }
        serve = ServeProcess(workdir / "serve", admin_key="", env=env)
        serve.start()
        await serve.wait_ready(90.0)
        yield serve.url, dsn, sim.url
    finally:
        if serve is not None:
            await stop_serve(serve)
        if sim is not None:
            await asyncio.to_thread(sim.stop)
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            await database.stop()


async def create_keys(dsn: str) -> tuple[dict[Scope, str], list[int]]:
    conn = await asyncpg.connect(dsn)
    try:
        keys, ids = {}, []
        for scope in Scope:
            info, keys[scope] = await create_key(conn, f"fuzz-{scope.value}", scope)
            ids.append(info.id)
        return keys, ids
    finally:
        await conn.close()


async def revoke_keys(dsn: str, key_ids: list[int]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for key_id in key_ids:
            await revoke_key(conn, key_id)
    finally:
        await conn.close()


async def fund(url: str, admin_key: str) -> None:
    async with httpx.AsyncClient(
        base_url=url, timeout=30.0, headers={"Authorization": f"Bearer {admin_key}"}
    ) as http:
        for user in (PAYER, PAYEE):
            for body in (
                {"amount_msat": FUND_MSAT},
                {"asset_id": RGB_ASSET, "asset_amount": FUND_UNITS},
            ):
                answer = await http.post(
                    "/admin/credit", json={"user_id": user, "reason": "fuzz funding", **body}
                )
                if answer.status_code != 200:
                    raise RuntimeError(f"funding {user}: {answer.status_code} {answer.text}")


async def operation_scopes(url: str) -> dict[str, Scope]:
    """ "METHOD /path" -> the scope its summary names (operations without one are public)."""
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as http:
        document = (await http.get("/openapi.json")).raise_for_status().json()
    scopes = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            found = _SCOPE_IN_SUMMARY.search(operation.get("summary", ""))
            if found:
                scopes[f"{method.upper()} {path}"] = Scope(found.group(1))
    return scopes


# --------------------------------------------------------------------------------------------
# The scope probe: one valid request per money-moving endpoint


async def scope_probe(url: str, keys: dict[Scope, str], scope: Scope) -> KeyResult:
    """Valid requests that would move money between funded users; each must answer 403."""
    result = KeyResult(scope)
    admin = {"Authorization": f"Bearer {keys[Scope.ADMIN]}"}
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as http:
        # A real invoice of the payee: paying it would be an internal payment.
        invoice = (
            (
                await http.post(
                    "/virtual_lninvoice", headers=admin, json={"user_id": PAYEE, "amt_msat": 1000}
                )
            )
            .raise_for_status()
            .json()["invoice"]
        )
        requests: list[tuple[str, dict[str, Any]]] = [
            ("/virtual_transfer", {"from_user_id": PAYER, "to_user_id": PAYEE, "amount_sats": 1}),
            (
                "/virtual_transfer",
                {
                    "from_user_id": PAYER,
                    "to_user_id": PAYEE,
                    "asset_id": RGB_ASSET,
                    "asset_amount": 1,
                },
            ),
            ("/virtual_sendpayment", {"user_id": PAYER, "invoice": invoice}),
            ("/admin/credit", {"user_id": PAYER, "amount_msat": 1, "reason": "fuzz probe"}),
            ("/admin/debit", {"user_id": PAYER, "amount_msat": 1, "reason": "fuzz probe"}),
            ("/admin/webhooks/retry", {}),
        ]
        for path, body in requests:
            answer = await http.post(
                path,
                json=body,
                headers={
                    "Authorization": f"Bearer {keys[scope]}",
                    "Idempotency-Key": "fuzz-probe-" + secrets.token_hex(8),
                },
            )
            result.probe.append(f"POST {path} -> {answer.status_code}")
            if answer.status_code != 403:
                result.scope_violations.append(
                    Example(
                        "scope probe",
                        f"POST {path}",
                        "POST",
                        path,
                        json.dumps(body),
                        answer.status_code,
                        answer.text[:300],
                        "expected 403",
                    )
                )
    return result


async def money_check_control(target: Target) -> bool:
    """The money check must see money move: one 1 msat transfer with the spend key, between
    the two read/receive phases and the others (it proves "unchanged" means something)."""
    before = await read_ledger(target.dsn)
    async with httpx.AsyncClient(base_url=target.url, timeout=30.0) as http:
        answer = await http.post(
            "/virtual_transfer",
            headers={"Authorization": f"Bearer {target.keys[Scope.SPEND]}"},
            json={"from_user_id": PAYER, "to_user_id": PAYEE, "amount_msat": 1},
        )
    after = await read_ledger(target.dsn)
    return answer.status_code == 200 and len(after.changes_since(before)) > 0


# --------------------------------------------------------------------------------------------
# schemathesis


def schemathesis_command(
    url: str, key: str, options: FuzzOptions, seed: int, report_dir: Path, scope: Scope
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{url}/openapi.json",
        "-H",
        f"Authorization: Bearer {key}",
        "--checks",
        "all",
        # An early refusal the schema cannot describe must not stop the fuzzing of the
        # operation: the money endpoints are the ones with the most such refusals.
        "--continue-on-failure",
        "--max-examples",
        str(options.max_examples),
        "--seed",
        str(seed),
        "--request-timeout",
        str(options.request_timeout_s),
        "--generation-database",
        "none",
        "--no-color",
        "--report",
        "json,ndjson",
        "--report-json-path",
        str(report_dir / f"{scope.value}.json"),
        "--report-ndjson-path",
        str(report_dir / f"{scope.value}.ndjson"),
    ]
    for path in EXCLUDED_PATHS:
        command += ["--exclude-path", path]
    return command


async def run_schemathesis(
    target: Target,
    scope: Scope,
    options: FuzzOptions,
    seed: int,
    report_dir: Path,
    scopes_of: dict[str, Scope],
    result: KeyResult,
) -> None:
    command = schemathesis_command(target.url, target.keys[scope], options, seed, report_dir, scope)
    started = time.monotonic()
    with (report_dir / f"{scope.value}.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            cwd=report_dir,
            env={**os.environ, "COLUMNS": "120"},
        )
        await proc.wait()
    result.seconds = time.monotonic() - started
    summary_path = report_dir / f"{scope.value}.json"
    if not summary_path.exists():
        result.errors.append(f"no report (exit {proc.returncode}); see {scope.value}.log")
        return
    summary = json.loads(summary_path.read_text())
    result.completed = bool(summary.get("complete")) and summary.get("stop_reason") == "completed"
    result.errors += [f"{e['title']} (x{e['count']})" for e in summary.get("errors", [])]
    tally_events(report_dir / f"{scope.value}.ndjson", scopes_of, result)


def _text(container: dict[str, Any] | None, limit: int = 300) -> str:
    if not container or "$base64" not in container:
        return ""
    raw = base64.b64decode(container["$base64"])
    text = raw.decode("utf-8", errors="replace")
    return repr(text)[1:-1][:limit] if not text.isprintable() else text[:limit]


def _scenarios(ndjson: Path) -> Iterator[dict[str, Any]]:
    with ndjson.open() as lines:
        for line in lines:
            # Only finished scenarios carry the cases; skip the other events unparsed.
            if line.startswith('{"ScenarioFinished"'):
                recorder = json.loads(line)["ScenarioFinished"].get("recorder")
                if recorder:
                    yield recorder


def tally_events(ndjson: Path, scopes_of: dict[str, Scope], result: KeyResult) -> None:
    """Cases, statuses, failures by check and answers above the key's scope, from every
    exchange schemathesis recorded."""
    for recorder in _scenarios(ndjson):
        operation = recorder["label"]
        required = scopes_of.get(operation)
        for case_id, exchange in recorder.get("interactions", {}).items():
            request, response = exchange.get("request", {}), exchange.get("response") or {}
            status = response.get("status_code")
            result.cases += 1
            if status is not None:
                result.statuses[status] += 1
            example = Example(
                "",
                operation,
                request.get("method", "?"),
                request.get("uri", "?"),
                _text(request.get("body")),
                status,
                _text(response.get("content")),
                "",
            )
            if (
                required is not None
                and not result.scope.allows(required)
                and status is not None
                and 200 <= status < 300
            ):
                result.scope_violations.append(example)
            for check in recorder.get("checks", {}).get(case_id, []):
                if check["status"] != "failure":
                    continue
                failure = check.get("failure_info", {}).get("failure", {})
                key = (check["name"], operation)
                result.failures[key] += 1
                if key not in result.examples:
                    message = (
                        failure.get("title", "")
                        + ": "
                        + " ".join(failure.get("message", "").split())[:300]
                    )
                    result.examples[key] = Example(
                        check["name"],
                        operation,
                        example.method,
                        example.uri,
                        example.body,
                        status,
                        example.response,
                        message,
                    )


# --------------------------------------------------------------------------------------------
# Parser properties (tests/unit/test_fuzz_parsers.py with more examples)


async def run_parser_properties(examples: int, report_dir: Path) -> tuple[bool, str]:
    test_file = REPO / "tests" / "unit" / "test_fuzz_parsers.py"
    env = clean_env({"VNODE_FUZZ_EXAMPLES": str(examples)})
    with (report_dir / "parsers.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pytest",
            str(test_file),
            "-q",
            "-p",
            "no:cacheprovider",
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        await proc.wait()
    lines = [
        line.strip()
        for line in (report_dir / "parsers.log").read_text(errors="replace").splitlines()
        if line.strip()
    ]
    summary = lines[-1].strip("= ") if lines else "no output"
    failed = [
        line.split("::", 1)[1].split(" ", 1)[0]
        for line in lines
        if line.startswith("FAILED ") and "::" in line
    ]
    return proc.returncode == 0, summary + (f" ({', '.join(failed)})" if failed else "")


# --------------------------------------------------------------------------------------------
# The run


async def run_fuzz(options: FuzzOptions) -> FuzzReport:
    seed = options.seed if options.seed is not None else secrets.randbelow(2**31)
    report = FuzzReport(seed, options.max_examples)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="vnode-fuzz-"))
    report_dir = options.report_dir or workdir / "reports"
    report_dir.mkdir(parents=True, exist_ok=True)
    for old in report_dir.glob("*"):
        # The previous run's files would be mistaken for this one's (only ours: the directory
        # may be any the caller named).
        if old.name.endswith((".json", ".ndjson", ".log")) and old.stem in REPORT_STEMS:
            old.unlink()
    report.report_dir = report_dir
    try:
        async with _target(options, workdir) as target:
            console.log(f"service at {target.url}; keys of every scope created")
            await fund(target.url, target.keys[Scope.ADMIN])
            scopes_of = await operation_scopes(target.url)
            # One key at a time, read and receive first: each of those needs a ledger that
            # nothing else moves. The control runs right after them, before money moves.
            for scope in sorted(options.scopes, key=lambda s: s not in NO_MONEY):
                if scope not in NO_MONEY and report.control_seen is None:
                    report.control_seen = await money_check_control(target)
                with console.status(f"schemathesis with the {scope.value} key"):
                    report.keys.append(
                        await _fuzz_one(target, scope, options, seed, report_dir, scopes_of)
                    )
            if report.control_seen is None:
                report.control_seen = await money_check_control(target)
            if options.hostile:
                with console.status("hostile Lightning inputs and node answers"):
                    report.hostile = await run_hostile(
                        target.url,
                        target.sim_url,
                        {scope.value: key for scope, key in target.keys.items()},
                        target.dsn,
                        HostileOptions(
                            PAYER,
                            PAYEE,
                            RGB_ASSET,
                            per_kind=options.hostile_per_kind,
                            dwell_s=options.hostile_dwell_s,
                        ),
                    )
                console.log(f"hostile phase: {report.hostile.seconds:.1f}s")
            report.audit = (await read_ledger(target.dsn)).audit
        if options.parser_examples > 0:
            with console.status(f"parser properties, {options.parser_examples} examples each"):
                report.parsers = await run_parser_properties(options.parser_examples, report_dir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # with it the reports, unless report_dir
        if options.report_dir is None:
            report.report_dir = None
    report.seconds = time.monotonic() - started
    return report


@contextlib.asynccontextmanager
async def _target(options: FuzzOptions, workdir: Path) -> AsyncIterator[Target]:
    async with contextlib.AsyncExitStack() as stack:
        if options.url is not None:
            if options.dsn is None:
                raise ValueError("--url needs --dsn (the service's database)")
            url, dsn, sim_url = options.url.rstrip("/"), options.dsn, options.sim_url
        else:
            with console.status("starting PostgreSQL, vnode sim serve and vnode serve"):
                url, dsn, sim_url = await stack.enter_async_context(
                    own_service(workdir, options.server_dsn)
                )
        keys, ids = await create_keys(dsn)
        try:
            yield Target(url, dsn, keys, ids, sim_url)
        finally:
            await revoke_keys(dsn, ids)  # (a throwaway service goes anyway; a running one keeps)


async def _fuzz_one(
    target: Target,
    scope: Scope,
    options: FuzzOptions,
    seed: int,
    report_dir: Path,
    scopes_of: dict[str, Scope],
) -> KeyResult:
    before = await read_ledger(target.dsn) if scope in NO_MONEY else None
    if scope in NO_MONEY:
        result = await scope_probe(target.url, target.keys, scope)
    else:
        result = KeyResult(scope)
    await run_schemathesis(target, scope, options, seed, report_dir, scopes_of, result)
    if before is not None:
        after = await read_ledger(target.dsn)
        result.money_changes = after.changes_since(before) + [
            f"audit before: {d}" for d in before.audit
        ]
    console.log(f"{scope.value}: {result.cases} cases in {result.seconds:.1f}s")
    return result


# --------------------------------------------------------------------------------------------
# Reporting


def print_report(report: FuzzReport) -> None:
    where = f"; files in {report.report_dir}" if report.report_dir else ""
    table = Table(
        title=f"schemathesis --max-examples {report.max_examples} --seed {report.seed}{where}"
    )
    for column in ("key", "cases", "2xx", "4xx", "5xx", "2xx above scope", "money", "seconds"):
        table.add_column(column, justify="left" if column in ("key", "money") else "right")
    for k in report.keys:
        money = (
            "not checked"
            if k.money_changes is None
            else "unchanged"
            if not k.money_changes
            else f"[red]{len(k.money_changes)} changes[/]"
        )
        table.add_row(
            k.scope.value,
            f"{k.cases:,}",
            *(
                f"{sum(n for s, n in k.statuses.items() if low <= s < low + 100):,}"
                for low in (200, 400, 500)
            ),
            str(len(k.scope_violations)),
            money,
            f"{k.seconds:.0f}",
        )
    out.print(table)
    checks = sorted(
        {c for k in report.keys for c, _ in k.failures}, key=lambda c: (c not in GATING_CHECKS, c)
    )
    if checks:
        by_check = Table(title="operations failing each check, by key")
        by_check.add_column("check")
        by_check.add_column("gates")
        for k in report.keys:
            by_check.add_column(k.scope.value, justify="right")
        for check in checks:
            by_check.add_row(
                check,
                "yes" if check in GATING_CHECKS else "no",
                *(str(len(k.operations_failing(check))) for k in report.keys),
            )
        out.print(by_check)
    for k in report.keys:
        if k.probe:
            out.print(f"scope probe, {k.scope.value} key: " + "; ".join(k.probe), highlight=False)
    _print_findings(report)
    if report.parsers is not None:
        colour = "green" if report.parsers[0] else "red"
        out.print(f"parser properties: [{colour}]{report.parsers[1]}[/]")
    if report.control_seen is not None:
        out.print(
            "money check control (a 1 msat transfer with the spend key): "
            + ("seen" if report.control_seen else "[red]NOT seen[/]")
        )
    if report.hostile is not None:
        print_hostile(report.hostile)
    out.print(f"took {report.seconds:.0f}s")


def print_hostile(result: HostileResult) -> None:
    """What the hostile phase tried, with counts (docs/RELIABILITY.md lists them)."""
    tried = Table(title=f"hostile Lightning inputs ({result.seconds:.0f}s)")
    tried.add_column("what")
    tried.add_column("count", justify="right")
    for category, n in sorted(result.invoices.items()):
        tried.add_row(f"signed invoices: {category} (each to decode and sendpayment)", str(n))
    for kind, n in sorted(result.served.items()):
        tried.add_row(f"node records served hostile: {kind}", f"{n:,}")
    for group, n in sorted(result.payments.items()):
        tried.add_row(f"payments under hostile records: {group}", str(n))
    out.print(tried)
    statuses = ", ".join(
        f"{route} {status}: {n}" for (route, status), n in sorted(result.requests.items())
    )
    out.print(f"answers: {statuses}", highlight=False, soft_wrap=True)
    probe = (
        "[red]not final in time[/]"
        if result.probe_s is None
        else f"final {result.probe_s:.1f}s after the node settled it"
    )
    out.print(f"fresh payment behind hostile records: {probe}")
    out.print(
        "steps: " + ", ".join(f"{step} {seconds:.1f}s" for step, seconds in result.steps.items())
    )
    for note in result.skipped:
        out.print(f"[yellow]note[/] hostile phase skipped {note}")
    for detail in result.details()[:40]:
        out.print(f"[red]FAIL[/] hostile: {detail}", soft_wrap=True, highlight=False)


def _print_findings(report: FuzzReport) -> None:
    """Each failing (check, operation) once, with the first key that hit it and an example."""
    shown: set[tuple[str, str]] = set()
    for gating in (True, False):
        for k in report.keys:
            for key, example in sorted(k.examples.items()):
                is_gating = key[0] in GATING_CHECKS and key not in KNOWN_FAILURES
                if is_gating != gating or key in shown:
                    continue
                shown.add(key)
                label = "[red]FAIL[/]" if gating else "[yellow]note[/]"
                out.print(
                    f"{label} {key[0]} on {key[1]} ({k.scope.value} key, "
                    f"{k.failures[key]} case(s)):\n    {example.describe()}",
                    soft_wrap=True,
                    highlight=False,
                )
    for k in report.keys:
        for example in k.scope_violations[:5]:
            out.print(
                f"[red]FAIL[/] {k.scope.value} key got {example.status} from "
                f"{example.operation}:\n    {example.describe()}",
                soft_wrap=True,
            )
        for change in (k.money_changes or [])[:20]:
            out.print(f"[red]FAIL[/] money moved with the {k.scope.value} key: {change}")
    for difference in report.audit:
        out.print(f"[red]FAIL[/] audit: {difference}")


def main(
    max_examples: Annotated[
        int, typer.Option(help="schemathesis --max-examples (per operation and phase)")
    ] = 100,
    seed: Annotated[
        int | None, typer.Option(help="Random seed (default: a new one, printed)")
    ] = None,
    url: Annotated[str | None, typer.Option(help="A running service (else one is started)")] = None,
    dsn: Annotated[str | None, typer.Option(help="With --url: the service's database")] = None,
    keys: Annotated[
        str, typer.Option(help="Scopes to fuzz with, comma-separated")
    ] = "read,receive,spend,admin",
    report_dir: Annotated[
        Path,
        typer.Option(
            help="Where schemathesis' reports and logs go (the previous run's are replaced)"
        ),
    ] = Path(".schemathesis/fuzz"),
    parser_examples: Annotated[
        int, typer.Option(help="Hypothesis examples per parser property test (0: skip them)")
    ] = 3000,
    hostile: Annotated[
        bool, typer.Option(help="Hostile Lightning inputs and node answers (proving/hostile.py)")
    ] = True,
    hostile_per_kind: Annotated[
        int, typer.Option(help="Payments and receipts per hostile node-answer kind")
    ] = 3,
    hostile_dwell_s: Annotated[
        float,
        typer.Option(
            help="Seconds the hostile node answers go on after the fresh payment is final"
        ),
    ] = 10.0,
    sim_url: Annotated[
        str | None,
        typer.Option(help="With --url: its simulated node, for the hostile node answers"),
    ] = None,
) -> None:
    """schemathesis with a key of each scope, the money check, and the parser properties."""
    try:
        scopes = tuple(Scope(s.strip()) for s in keys.split(",") if s.strip())
    except ValueError:
        raise typer.BadParameter("--keys takes admin, spend, receive and read") from None
    if url is not None and dsn is None:
        raise typer.BadParameter("--url needs --dsn (keys, funding and the money check)")
    report = asyncio.run(
        run_fuzz(
            FuzzOptions(
                max_examples=max_examples,
                seed=seed,
                scopes=scopes,
                url=url,
                dsn=dsn,
                report_dir=report_dir.resolve(),
                parser_examples=parser_examples,
                hostile=hostile,
                hostile_per_kind=hostile_per_kind,
                hostile_dwell_s=hostile_dwell_s,
                sim_url=sim_url,
            )
        )
    )
    print_report(report)
    reasons = report.reasons()
    if reasons:
        print("FAIL: " + "; ".join(reasons), flush=True)
        raise typer.Exit(1)
    print("PASS", flush=True)


if __name__ == "__main__":
    typer.run(main)
