"""The load generator: a mixed load at a fixed offered rate (open loop), spread over the vnode
processes, that keeps its own books of every money request (proving/model.py).

Open loop: requests are started on a clock, whatever the service's latency, so a slow service
meets the same offered rate instead of a politely slowed client; a start later than planned
(the generator itself lagging) is counted. Every money request carries an Idempotency-Key; one
whose answer was lost (a killed process, a dropped connection) is sent again with the same key
until an answer comes, as a real client would, and that answer is the one the books keep.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx
from coincurve import PrivateKey

from proving.lndhub_ops import LndHubOps
from proving.model import (
    DATABASE_UNAVAILABLE,
    NODE_UNAVAILABLE,
    Answer,
    InboundCase,
    Model,
    PaymentCase,
    Stats,
    TransferCase,
)
from vnode.apikeys import Scope
from vnode.lightning import bolt11
from vnode.lightning.base import Network
from vnode.lnurl import wire as lnurl_wire
from vnode_sim.invoices import issue_invoice

# Share of each operation in the offered load (weights, not necessarily summing to 1).
DEFAULT_MIX: dict[str, float] = {
    "transfer": 34,  # between two funded users
    "refusal": 3,  # a transfer built to be refused: overdraft, to oneself, unknown sender
    "replay": 3,  # an answered transfer sent again with its key: must answer the same
    "sendpayment": 12,  # an outside invoice paid through the node
    "receive": 10,  # a user's invoice, paid by the outside world
    "lnurl": 5,  # a user's Lightning Address paid through LNURL-pay by the outside world
    # LndHub (issue 12, proving/lndhub_ops.py): a wallet's /payinvoice (outside and internal
    # invoices, some repeated), its reads, and its logins and token refreshes.
    "lndhub_pay": 8,
    "lndhub_read": 4,
    "lndhub_auth": 2,
    "assetbalance": 14,
    "balances": 8,
    "history": 16,
}
# External payments: plain, failed by the node, held by the node (slow), no route at all.
PAY_VARIANTS: dict[str, float] = {"ok": 70, "fail": 10, "slow": 10, "noroute": 10}
# LndHub payments: the same, plus another LndHub user's invoice (settled in the ledger).
LNDHUB_VARIANTS: dict[str, float] = {
    "ok": 45,
    "fail": 10,
    "slow": 15,  # more than the bot's: a hold outlasts /payinvoice's wait, answered 202
    "noroute": 10,
    "internal": 20,
}
REFUSALS = ("overdraft", "self_transfer", "unknown_sender")
USER_BASE = 7_000_000_000
UNKNOWN_USER_BASE = 8_000_000_000  # never funded, never paid to: stays without a node
OVERDRAFT_MSAT = 10**15
RETRY_S = 0.5
RETRY_MAX_S = 4.0
POLL_S = 0.5
LATE_S = 0.1  # a start this much after its planned time counts as late


@dataclass
class LoadOptions:
    rate: float = 50.0
    duration_s: float = 60.0
    users: int = 100
    seed: int = 1
    fund_msat: int = 1_000_000_000
    invoice_expiry_s: int = 600  # of the outside invoices users pay (chaos: short, see there)
    hold_s: float = 1.5  # how long a "slow" payment is held by the node before its release
    unknown_deadline_s: float = 120.0  # give up learning a lost answer after this long
    allow_node_unavailable: bool = False
    allow_unknown_outcome: bool = False  # `make ha`: 5xx answers of a failover (model.Stats)
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    pay_variants: dict[str, float] = field(default_factory=lambda: dict(PAY_VARIANTS))
    # Users with LndHub credentials (each login is a memory-hard hash: a few, not all).
    lndhub_users: int = 12
    lndhub_variants: dict[str, float] = field(default_factory=lambda: dict(LNDHUB_VARIANTS))


class Targets:
    """Where requests go: round robin over the processes a health check would call up; counts
    the money requests in flight at each (the chaos controller kills a process that has some,
    so that kills cut requests whose effect the client must then learn)."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.up = [True] * len(urls)
        self.money_in_flight = [0] * len(urls)
        self._turn = itertools.count()

    def pick(self) -> int:
        live = [i for i, up in enumerate(self.up) if up] or list(range(len(self.urls)))
        return live[next(self._turn) % len(live)]

    def set_up(self, index: int, up: bool) -> None:
        self.up[index] = up


def foreign_invoice(amount_msat: int, expiry_s: int) -> tuple[str, str]:
    """A valid regtest invoice of a node nobody can route to: the node fails it at once."""
    key = PrivateKey()
    issued = issue_invoice(
        private_key=key.secret,
        payee_pubkey=key.public_key.format(compressed=True).hex(),
        network=Network.REGTEST,
        now=int(time.time()),
        amount_msat=amount_msat,
        expiry_s=expiry_s,
        description="proving: no route",
    )
    return issued.text, issued.payment_hash


class LoadGenerator:
    """Funds the users, runs the open-loop load, follows payments until final, keeps the books
    (`model`) and the figures (`stats` for vnode, `sim_stats` for the outside world)."""

    def __init__(
        self,
        options: LoadOptions,
        targets: Targets,
        sim_url: str,
        keys: dict[Scope, str],
        admin_key: str,
    ) -> None:
        self.options = options
        self.targets = targets
        self.sim_url = sim_url
        self.keys = {**keys, Scope.ADMIN: admin_key}
        self.rng = random.Random(options.seed)
        self.users = [USER_BASE + i for i in range(1, options.users + 1)]
        self.model = Model()
        self.stats = Stats(options.allow_node_unavailable, options.allow_unknown_outcome)
        self.sim_stats = Stats(allow_node_unavailable=True)  # the outside world's calls
        self.setup_stats = Stats(allow_node_unavailable=False)  # funding, before the clock
        self._ids = itertools.count(1)
        self._run_id = f"{options.seed}-{int(time.time())}"
        self._tasks: set[asyncio.Task[None]] = set()
        self._follow_until = float("inf")
        self._http: httpx.AsyncClient | None = None
        self._sim: httpx.AsyncClient | None = None
        self.lndhub = LndHubOps(self)

    async def __aenter__(self) -> LoadGenerator:
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=100)
        timeout = httpx.Timeout(60.0, connect=5.0, pool=None)
        self._http = httpx.AsyncClient(limits=limits, timeout=timeout)
        self._sim = httpx.AsyncClient(base_url=self.sim_url, limits=limits, timeout=timeout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
        if self._sim is not None:
            await self._sim.aclose()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    @property
    def http(self) -> httpx.AsyncClient:
        assert self._http is not None
        return self._http

    @property
    def follow_until(self) -> float:
        """The drain's deadline for following payments (infinite while the load runs)."""
        return self._follow_until

    # ---------------------------------------------------------------------------- HTTP

    async def call(
        self,
        op: str,
        path: str,
        body: dict[str, Any],
        scope: Scope,
        *,
        key: str | None = None,
        stats: Stats | None = None,
    ) -> Answer:
        """POST to one of the vnode processes; the answer, recorded under `op`."""
        assert self._http is not None
        headers = {"Authorization": f"Bearer {self.keys[scope]}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        target = self.targets.pick()
        money = 1 if key is not None else 0
        self.targets.money_in_flight[target] += money
        started = time.perf_counter()
        try:
            answer = await _post(self._http, self.targets.urls[target] + path, body, headers)
        finally:
            self.targets.money_in_flight[target] -= money
        (stats or self.stats).record(op, time.perf_counter() - started, answer)
        return answer

    async def sim_call(self, op: str, path: str, body: dict[str, Any]) -> Answer:
        """POST to the sim's control API (the outside world, and the faults)."""
        assert self._sim is not None
        started = time.perf_counter()
        answer = await _post(self._sim, path, body, {})
        self.sim_stats.record(op, time.perf_counter() - started, answer)
        return answer

    async def _learn(
        self,
        op: str,
        path: str,
        body: dict[str, Any],
        key: str,
        first: Answer,
        sends: list[str],
        *,
        payment: bool,
    ) -> tuple[Answer | None, int]:
        """Send again with the same key until an answer says what happened (None: gave up)."""
        answer, retries = first, 0
        sends.append(f"{time.strftime('%H:%M:%S')} {first.summary()}")
        deadline = time.monotonic() + self.options.unknown_deadline_s
        while _ambiguous(answer, replay=retries > 0, payment=payment):
            if time.monotonic() > deadline:
                return None, retries
            await asyncio.sleep(self.retry_delay(retries))
            retries += 1
            answer = await self.call(f"{op} (retry)", path, body, Scope.SPEND, key=key)
            sends.append(f"{time.strftime('%H:%M:%S')} {answer.summary()}")
        return answer, retries

    def retry_delay(self, retries: int) -> float:
        """How long to wait before the next send of a request whose outcome is unknown:
        exponential from RETRY_S up to RETRY_MAX_S, with jitter, as a real client must (a
        database failover leaves every request of 20 s unknown at once; resending each every
        0.5 s would bury the service, and the load generator, under the resends)."""
        ceiling = min(RETRY_MAX_S, RETRY_S * 2**retries)
        return self.rng.uniform(RETRY_S, max(RETRY_S, ceiling))

    # ---------------------------------------------------------------------------- phases

    async def fund(self) -> None:
        """Credit every user through the admin API (idempotent, so a retry is harmless)."""
        semaphore = asyncio.Semaphore(8)

        async def credit(user: int) -> None:
            body = {
                "user_id": user,
                "amount_msat": self.options.fund_msat,
                "reason": "proving funding",
            }
            async with semaphore:
                for _ in range(20):
                    answer = await self.call(
                        "admin_credit",
                        "/admin/credit",
                        body,
                        Scope.ADMIN,
                        key=f"fund-{user}",
                        stats=self.setup_stats,
                    )
                    if answer.status == 200:
                        self.model.funding_msat[user] = self.options.fund_msat
                        return
                    if answer.known:
                        raise RuntimeError(f"funding {user} refused: {answer.body}")
                    await asyncio.sleep(RETRY_S)
                raise RuntimeError(f"funding {user}: no answer")

        await asyncio.gather(*(credit(user) for user in self.users))
        if any(self.options.mix.get(op) for op in ("lndhub_pay", "lndhub_read", "lndhub_auth")):
            await self.lndhub.setup(self.users[: self.options.lndhub_users])
        if self.options.mix.get("lnurl"):
            await asyncio.gather(*(self._claim_address(user) for user in self.users))

    async def _claim_address(self, user: int) -> None:
        """The user's Lightning Address (its node exists once funded); claiming it again is
        harmless, so a lost answer is simply asked again."""
        body = {"user_id": user, "name": address_name(user)}
        for _ in range(20):
            answer = await self.call(
                "address", "/virtual_address", body, Scope.RECEIVE, stats=self.setup_stats
            )
            if answer.status == 200:
                return
            if answer.known:
                raise RuntimeError(f"address of {user} refused: {answer.body}")
            await asyncio.sleep(RETRY_S)
        raise RuntimeError(f"address of {user}: no answer")

    async def run(
        self, progress: Callable[[float], None] | None = None, progress_every_s: float = 5.0
    ) -> float:
        """Start operations on the clock for `duration_s`; returns the seconds it took."""
        names = list(self.options.mix)
        weights = [self.options.mix[n] for n in names]
        interval_s = 1.0 / self.options.rate
        started = time.perf_counter()
        next_progress = progress_every_s
        for n in itertools.count():
            planned = started + n * interval_s
            if planned - started >= self.options.duration_s:
                break
            delay = planned - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            self.stats.late(time.perf_counter() - planned, LATE_S)
            op = self.rng.choices(names, weights)[0]
            self.spawn(op, self._operation(op))
            if progress is not None and planned - started >= next_progress:
                progress(planned - started)
                next_progress += progress_every_s
        return time.perf_counter() - started

    async def drain(self, timeout_s: float) -> None:
        """Let every started operation finish (payments followed until final, lost answers
        learned), within `timeout_s`; anything still unknown then stays unknown."""
        self._follow_until = time.monotonic() + timeout_s
        await self.sim_call("faults", "/_sim/faults", {"next_payment": None})
        deadline = time.monotonic() + timeout_s
        while self._tasks and time.monotonic() < deadline:
            await self.release_held()
            if self._tasks:
                await asyncio.wait(
                    set(self._tasks), timeout=max(0.1, min(2.0, deadline - time.monotonic()))
                )

    async def release_held(self) -> int:
        """Finish every payment the node holds (a hold fault may land on any payment)."""
        assert self._sim is not None
        try:
            state = (await self._sim.get("/_sim/state")).json()
        except (httpx.HTTPError, ValueError):
            return 0
        held = [p["payment_hash"] for p in state.get("payments", []) if p.get("held")]
        for payment_hash in held:
            await self.sim_call(
                "release", "/_sim/release", {"payment_hash": payment_hash, "outcome": "succeed"}
            )
        return len(held)

    def spawn(self, op: str, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(self._guard(op, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, op: str, work: Coroutine[Any, Any, None]) -> None:
        # A bug of the harness must fail the run loudly, not vanish with its task.
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.model.problems.append(f"harness error in {op}: {exc!r}")

    def _operation(self, op: str) -> Coroutine[Any, Any, None]:
        handlers: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            "transfer": self._transfer,
            "refusal": self._refusal,
            "replay": self._replay,
            "sendpayment": self._sendpayment,
            "receive": self._receive,
            "lnurl": self._lnurl,
            "lndhub_pay": self.lndhub.pay,
            "lndhub_read": self.lndhub.read,
            "lndhub_auth": self.lndhub.auth,
            "assetbalance": self._read_balance,
            "balances": self._read_balances,
            "history": self._read_history,
        }
        return handlers[op]()

    def key(self, kind: str) -> str:
        return f"{kind}-{self._run_id}-{next(self._ids)}"

    # ---------------------------------------------------------------------------- transfers

    async def _transfer(self) -> None:
        sender, recipient = self.rng.sample(self.users, 2)
        case = TransferCase(self.key("t"), sender, recipient, self.rng.randint(1_000, 50_000))
        await self._send_transfer(case, "transfer")

    async def _refusal(self) -> None:
        kind = self.rng.choice(REFUSALS)
        sender, recipient = self.rng.sample(self.users, 2)
        amount = self.rng.randint(1_000, 50_000)
        if kind == "overdraft":
            case = TransferCase(
                self.key("r"), sender, recipient, OVERDRAFT_MSAT, "insufficient_balance"
            )
        elif kind == "self_transfer":
            case = TransferCase(self.key("r"), sender, sender, amount, "self_transfer")
        else:
            stranger = UNKNOWN_USER_BASE + self.rng.randint(1, 10**6)
            case = TransferCase(self.key("r"), stranger, recipient, amount, "unknown_user")
        await self._send_transfer(case, "refusal_probe")

    async def _send_transfer(self, case: TransferCase, op: str) -> None:
        self.model.transfers.append(case)
        first = await self.call(op, "/virtual_transfer", case.body(), Scope.SPEND, key=case.key)
        case.answer, case.retries = await self._learn(
            op, "/virtual_transfer", case.body(), case.key, first, case.sends, payment=False
        )

    async def _replay(self) -> None:
        """An answered transfer again, same key and body: the first answer must come back."""
        answered = [
            t
            for t in self.model.transfers[-500:]
            if t.answer is not None and t.answer.status is not None
        ]
        if not answered:
            return
        case = self.rng.choice(answered)
        first = case.answer
        assert first is not None
        again = await self.call(
            "replay", "/virtual_transfer", case.body(), Scope.SPEND, key=case.key
        )
        if not again.known or (again.status == 503 and first.status != 503):
            return  # no answer this time; the first one stands
        same = again.status == first.status and (
            again.body.get("transfer_id") == first.body.get("transfer_id")
            if first.status == 200
            else again.code == first.code
        )
        if not same:
            self.model.problems.append(
                f"replay of {case.key} answered {again.status} {again.code or ''} "
                f"{again.body.get('transfer_id', '')}, first answer was {first.status} "
                f"{first.code or ''} {first.body.get('transfer_id', '')}"
            )

    # ---------------------------------------------------------------------------- payments

    def pick(self, weights: dict[str, float]) -> str:
        names = list(weights)
        return self.rng.choices(names, [weights[n] for n in names])[0]

    async def outside_invoice(self, variant: str, amount: int) -> tuple[str, str] | None:
        """An invoice of the outside world for this variant of payment (invoice, hash), with
        the node's fault for it set; None when the sim made none."""
        expiry_s = self.options.invoice_expiry_s
        if variant == "noroute":
            return foreign_invoice(amount, expiry_s)
        made = await self.sim_call(
            "invoice", "/_sim/invoice", {"amt_msat": amount, "expiry_sec": expiry_s}
        )
        if made.status != 200:
            return None
        if variant in ("fail", "slow"):
            # The node's next payment fails or is held; another payment racing this one may
            # take the fault instead, which is as good a test.
            fault = "fail" if variant == "fail" else "hold"
            await self.sim_call("faults", "/_sim/faults", {"next_payment": fault})
        return made.body["invoice"], made.body["payment_hash"]

    async def _sendpayment(self) -> None:
        variant = self.pick(self.options.pay_variants)
        user = self.rng.choice(self.users)
        amount = self.rng.randint(1_000, 100_000)
        made = await self.outside_invoice(variant, amount)
        if made is None:
            return
        invoice, payment_hash = made
        case = PaymentCase(
            self.key("p"),
            user,
            payment_hash,
            invoice,
            amount,
            variant,
            sends=[f"{time.strftime('%H:%M:%S')} invoice made"],
        )
        self.model.payments.append(case)
        if variant == "slow":
            self.spawn("release", self.release_later(payment_hash))
        body = {"user_id": user, "invoice": invoice}
        first = await self.call(
            "sendpayment", "/virtual_sendpayment", body, Scope.SPEND, key=case.key
        )
        case.answer, case.retries = await self._learn(
            "sendpayment", "/virtual_sendpayment", body, case.key, first, case.sends, payment=True
        )
        if case.retries and case.answer is not None and case.answer.code is not None:
            await self._check_refused_replay(case)
        if case.answer is not None and case.answer.status in (200, 202):
            await self._follow(case, case.answer)

    async def _check_refused_replay(self, case: PaymentCase) -> None:
        """A replay (first answer lost) that was refused: a careful client asks whether the
        payment exists after all. If it does, the replay contradicted the first attempt (the
        idempotency contract says a replay returns the first answer): a problem, and from
        here on the books follow the payment that exists."""
        query = {"user_id": case.user, "payment_hash": case.payment_hash}
        for _ in range(20):
            looked = await self.call("payment_poll", "/virtual_payment", query, Scope.READ)
            if looked.known:
                break
            await asyncio.sleep(RETRY_S)
        if looked.status in (200, 202) and case.answer is not None:
            self.model.problems.append(
                f"replay of payment {case.key} (invoice expiry {self.options.invoice_expiry_s}"
                f" s) was answered {case.answer.summary()}, yet the payment exists "
                f"({looked.body.get('status')}): the replay did not return the first answer; "
                f"sends: {', '.join(case.sends)}"
            )
            case.answer = looked

    async def release_later(self, payment_hash: str) -> None:
        await asyncio.sleep(self.options.hold_s)
        outcome = "succeed" if self.rng.random() < 0.8 else "fail"
        # NotHeld when the hold fault went to another payment: that one is released by its
        # follower, this one was never slow.
        await self.sim_call(
            "release", "/_sim/release", {"payment_hash": payment_hash, "outcome": outcome}
        )

    async def _follow(self, case: PaymentCase, answer: Answer) -> None:
        """Poll /virtual_payment until the payment is final (or the drain's deadline)."""
        sent = time.monotonic()
        last_release = sent
        query = {"user_id": case.user, "payment_hash": case.payment_hash}
        while answer.status != 200:
            if time.monotonic() > self._follow_until:
                return
            if time.monotonic() - last_release > self.options.hold_s + 2.0:
                # Held by a fault meant for another payment: let it go.
                await self.sim_call(
                    "release",
                    "/_sim/release",
                    {"payment_hash": case.payment_hash, "outcome": "succeed"},
                )
                last_release = time.monotonic()
            await asyncio.sleep(POLL_S)
            polled = await self.call("payment_poll", "/virtual_payment", query, Scope.READ)
            if polled.status in (200, 202):
                answer = polled
            elif polled.known:
                self.model.problems.append(
                    f"payment {case.payment_hash[:16]} ({case.key}) was accepted, but "
                    f"/virtual_payment answered {polled.status} {polled.code}"
                )
                return
        case.final = str(answer.body.get("status"))
        fee = answer.body.get("fee_msat")
        case.fee_msat = int(fee) if isinstance(fee, int) else None

    # ---------------------------------------------------------------------------- receiving

    async def _receive(self) -> None:
        user = self.rng.choice(self.users)
        amount = self.rng.randint(1_000, 100_000)
        made = await self.call(
            "lninvoice",
            "/virtual_lninvoice",
            {"user_id": user, "amt_msat": amount, "expiry_sec": 600},
            Scope.RECEIVE,
        )
        if made.status != 200:
            return  # no invoice handed out: nothing can be paid, nothing credited
        case = InboundCase(user, amount, made.body["payment_hash"], made.body["invoice"])
        self.model.inbound.append(case)
        paid = await self.sim_call("pay", "/_sim/pay", {"invoice": case.invoice})
        # 200: the node received it; a refusal (locked node): nothing arrived. A lost answer
        # is looked up in the sim's state at the end.
        case.paid = True if paid.status == 200 else (False if paid.known else None)

    async def _lnurl(self) -> None:
        """A payer's wallet: payRequest, callback with a comment, the invoice checked as a
        wallet checks it (amount, description hash), then paid by the outside world; the
        books expect it credited once, like any invoice of the user."""
        user = self.rng.choice(self.users)
        amount = self.rng.randint(1_000, 100_000)
        name = address_name(user)
        found = await self.get("lnurlp", f"/.well-known/lnurlp/{name}")
        if found.status != 200:
            return  # the process was killed under the request: nothing was made
        if found.body.get("tag") != "payRequest":
            self.model.problems.append(f"lnurl: no payRequest for {name}: {found.body}")
            return
        made = await self.get("lnurl_callback", f"/lnurlp/{name}/callback?amount={amount}")
        if made.status != 200 or "pr" not in made.body:
            # No invoice handed out (the node unavailable, a lost answer): nothing to pay.
            return
        invoice = bolt11.decode(str(made.body["pr"]))
        metadata = str(found.body.get("metadata"))
        if invoice.amount_msat != amount or not invoice.matches_description(metadata):
            self.model.problems.append(f"lnurl: {name}'s invoice is not what was asked")
            return
        case = InboundCase(user, amount, invoice.payment_hash, invoice.text)
        self.model.inbound.append(case)
        paid = await self.sim_call("pay", "/_sim/pay", {"invoice": case.invoice})
        case.paid = True if paid.status == 200 else (False if paid.known else None)

    async def get(self, op: str, path: str) -> Answer:
        """GET a public LNURL endpoint of one of the processes; recorded under `op`. A LUD
        ERROR body is a refusal; its 503 counts as node_unavailable or database_unavailable."""
        assert self._http is not None
        target = self.targets.pick()
        started = time.perf_counter()
        try:
            response = await self._http.get(self.targets.urls[target] + path)
            data = response.json()
            answer = Answer(response.status_code, data if isinstance(data, dict) else {})
        except (httpx.HTTPError, ValueError) as exc:
            answer = Answer(None, {}, type(exc).__name__)
        if answer.body.get("status") == "ERROR":
            # A refusal the LUDs answer with 200 is counted as the refusal it is. A 503 is the
            # node's (nothing made) or the database's (unknown: an invoice may have been made,
            # but none was handed out, so nothing is paid).
            code = "lnurl_error"
            if answer.status == 503:
                down = answer.body.get("reason") == lnurl_wire.DATABASE_DOWN_REASON
                code = DATABASE_UNAVAILABLE if down else NODE_UNAVAILABLE
            status = 422 if answer.status == 200 else answer.status
            answer = Answer(status, {"error": {"code": code}})
        self.stats.record(op, time.perf_counter() - started, answer)
        return answer

    # ---------------------------------------------------------------------------- reads

    async def _read_balance(self) -> None:
        user = self.rng.choice(self.users)
        answer = await self.call(
            "assetbalance", "/virtual_assetbalance", {"user_id": user}, Scope.READ
        )
        self._check_non_negative(user, answer)

    async def _read_balances(self) -> None:
        await self.call(
            "balances", "/virtual_balances", {"user_id": self.rng.choice(self.users)}, Scope.READ
        )

    async def _read_history(self) -> None:
        await self.call(
            "history",
            "/virtual_history",
            {"user_id": self.rng.choice(self.users), "limit": 20},
            Scope.READ,
        )

    def _check_non_negative(self, user: int, answer: Answer) -> None:
        if answer.status != 200:
            return
        for name in ("balance_msat", "pending_msat", "spendable_msat"):
            value = answer.body.get(name)
            if isinstance(value, int) and value < 0:
                self.model.problems.append(f"user {user}: {name} {value} < 0")


def address_name(user: int) -> str:
    return f"proving-{user}"


def _ambiguous(answer: Answer, *, replay: bool, payment: bool) -> bool:
    """Does this answer leave the request's effect unknown?"""
    if not answer.known:
        return True
    # vnode checks the node's readiness before it looks the key up, so a replayed payment can
    # be answered 503 although the first attempt reserved: only a first 503 means "nothing".
    return payment and replay and answer.status == 503 and answer.code == NODE_UNAVAILABLE


async def _post(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str]
) -> Answer:
    try:
        response = await client.post(url, json=body, headers=headers)
    except httpx.HTTPError as exc:
        return Answer(None, {}, type(exc).__name__)
    try:
        data = response.json()
    except ValueError:
        data = {}
    return Answer(response.status_code, data if isinstance(data, dict) else {})
