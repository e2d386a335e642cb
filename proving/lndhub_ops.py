"""The load's LndHub traffic (issue 12): what BlueWallet, Zeus or Alby send for a user.

A few users get LndHub credentials (`POST /virtual_lndhub_account`) and log in. In the mix they
pay with `/lndhub/payinvoice`: outside invoices of the sim (plain, failed, held, unroutable, as
the bot's payments) and other LndHub users' invoices made with `/lndhub/addinvoice` (settled in
the ledger); some payments are sent twice, one after the other or at the same time, as a wallet
that retries does. They read `/lndhub/balance` and `/lndhub/gettxs`, and refresh their tokens
or log in again now and then.

LndHub has no Idempotency-Key: `/payinvoice` is idempotent per (account, invoice), and a
repeat after a final failure is a new attempt. So the books do not trust any one answer: after
the answers, the client asks `/virtual_payment` what exists (the user's latest payment of the
invoice) and follows it until final, as the bot's payments are followed. The checks
(proving/verify.py) then hold these payments to the bot's rules: paid at most once whatever was
repeated, refunded only on final failure, the ledger and the node agreeing.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from proving.model import DATABASE_UNAVAILABLE, NODE_UNAVAILABLE, Answer, PaymentCase, Stats
from vnode.apikeys import Scope
from vnode.lndhub import wire as lndhub_wire

if TYPE_CHECKING:
    from proving.load import LoadGenerator

RETRY_S = 0.5
POLL_S = 0.5
REPEAT_CONCURRENT = 0.15  # share of payments sent twice at once
REPEAT_AFTER = 0.15  # share sent again once answered
IN_FLIGHT_CODES = (200, 202)  # /virtual_payment: final, or still pending


@dataclass
class HubUser:
    """A wallet: the user's LndHub credentials and its current tokens (never printed)."""

    user: int
    login: str
    password: str
    access: str = ""
    refresh: str = ""


def hub_answer(status: int, data: object) -> Answer:
    """An LndHub answer in the books' terms: a refusal `{"error": true, "code": N}` gets the
    stable code `lndhub_N` (503: node_unavailable or database_unavailable, as vnode's own);
    202 code 9, in transit, is not a refusal. A list (gettxs) is kept under `items`."""
    if not isinstance(data, dict):
        return Answer(status, {"items": data if isinstance(data, list) else []})
    if data.get("error") is True and status >= 400:
        code = f"lndhub_{data.get('code')}"
        if status == 503:
            # Both are LndHub's code 6: the database's leaves the effect unknown (a replay with
            # the same key resolves it), the node's means nothing moved.
            down = data.get("message") == lndhub_wire.DATABASE_DOWN_MESSAGE
            code = DATABASE_UNAVAILABLE if down else NODE_UNAVAILABLE
        return Answer(status, {**data, "error": {"code": code}})
    return Answer(status, data)


class LndHubOps:
    def __init__(self, load: LoadGenerator) -> None:
        self.load = load
        self.hub_users: list[HubUser] = []
        # Every /payinvoice answer by outcome (paid, in_transit, failed, refused_<code>, lost):
        # the report shows them, and the tests fail if the LndHub traffic silently did nothing.
        self.outcomes: Counter[str] = Counter()

    # ------------------------------------------------------------------------ HTTP

    async def request(
        self,
        op: str,
        path: str,
        hub: HubUser | None,
        *,
        json: dict[str, Any] | None = None,
        form: dict[str, str] | None = None,
        get: bool = False,
        money: bool = False,
        stats: Stats | None = None,
    ) -> Answer:
        """One LndHub request to one of the processes (Bearer token of `hub`), recorded."""
        load = self.load
        headers = {"Authorization": f"Bearer {hub.access}"} if hub is not None else {}
        target = load.targets.pick()
        load.targets.money_in_flight[target] += int(money)  # a kill should cut payments too
        url = load.targets.urls[target] + path
        started = time.perf_counter()
        try:
            if get:
                response = await load.http.get(url, headers=headers)
            else:
                response = await load.http.post(url, json=json, data=form, headers=headers)
            answer = hub_answer(response.status_code, orjson.loads(response.content or b"{}"))
        except (httpx.HTTPError, orjson.JSONDecodeError) as exc:
            answer = Answer(None, {}, type(exc).__name__)
        finally:
            load.targets.money_in_flight[target] -= int(money)
        (stats or load.stats).record(op, time.perf_counter() - started, answer)
        return answer

    # ------------------------------------------------------------------------ accounts

    async def setup(self, users: list[int]) -> None:
        """Credentials for each user (spend scope) and a first login, before the clock."""
        for user in users:
            body = {"user_id": user, "scope": "spend"}
            for _ in range(20):
                made = await self.load.call(
                    "lndhub_account",
                    "/virtual_lndhub_account",
                    body,
                    Scope.SPEND,
                    stats=self.load.setup_stats,
                )
                if made.status == 200:
                    break
                if made.known:
                    raise RuntimeError(f"LndHub account of {user} refused: {made.summary()}")
                await asyncio.sleep(RETRY_S)
            else:
                raise RuntimeError(f"LndHub account of {user}: no answer")
            hub = HubUser(user, str(made.body["login"]), str(made.body["password"]))
            if not await self.login(hub, self.load.setup_stats):
                raise RuntimeError(f"LndHub login of {user} failed")
            self.hub_users.append(hub)

    async def login(self, hub: HubUser, stats: Stats | None = None) -> bool:
        # Form-encoded, as BlueWallet sends it (the JSON shape is used for the refresh).
        answer = await self.request(
            "lndhub_auth",
            "/lndhub/auth?type=auth",
            None,
            form={"login": hub.login, "password": hub.password},
            stats=stats,
        )
        return self._took(hub, answer)

    def _took(self, hub: HubUser, answer: Answer) -> bool:
        if answer.status != 200:
            return False
        hub.access = str(answer.body["access_token"])
        hub.refresh = str(answer.body["refresh_token"])
        return True

    async def auth(self) -> None:
        """A wallet refreshing its tokens (each refresh token works once; one consumed by a
        lost answer or a racing refresh is answered 401), else logging in again."""
        if not self.hub_users:
            return
        hub = self.load.rng.choice(self.hub_users)
        if self.load.rng.random() < 0.7 and hub.refresh:
            refreshed = await self.request(
                "lndhub_auth",
                "/lndhub/auth?type=refresh_token",
                None,
                json={"refresh_token": hub.refresh},
            )
            if self._took(hub, refreshed):
                return
        await self.login(hub)

    # ------------------------------------------------------------------------ reads

    async def read(self) -> None:
        if not self.hub_users:
            return
        hub = self.load.rng.choice(self.hub_users)
        if self.load.rng.random() < 0.5:
            answer = await self.request("lndhub_balance", "/lndhub/balance", hub, get=True)
            btc = answer.body.get("BTC")
            available = btc.get("AvailableBalance") if isinstance(btc, dict) else None
            if answer.status == 200 and not (isinstance(available, int) and available >= 0):
                self.load.model.problems.append(f"lndhub balance of {hub.user}: {answer.body}")
            return
        answer = await self.request("lndhub_gettxs", "/lndhub/gettxs?limit=50", hub, get=True)
        if answer.status != 200:
            return
        # gettxs lists payments in flight or succeeded: a hash twice would be a double payment.
        hashes = [orjson.dumps(tx.get("payment_hash")) for tx in answer.body["items"]]
        if len(hashes) != len(set(hashes)):
            self.load.model.problems.append(f"lndhub gettxs of {hub.user} lists a hash twice")

    # ------------------------------------------------------------------------ payments

    async def pay(self) -> None:
        load = self.load
        if len(self.hub_users) < 2:
            return
        payer, payee = load.rng.sample(self.hub_users, 2)
        variant = load.pick(load.options.lndhub_variants)
        if variant == "internal":
            amount_sat = load.rng.randint(1, 100)
            made = await self.request(
                "lndhub_addinvoice",
                "/lndhub/addinvoice",
                payee,
                json={"amt": str(amount_sat), "memo": "proving"},  # Zeus sends text numbers
            )
            if made.status != 200:
                return  # no invoice handed out (node unavailable, a lost answer)
            invoice, payment_hash = str(made.body["payment_request"]), str(made.body["hash"])
            amount, internal_payee = amount_sat * 1000, payee.user
        else:
            amount = load.rng.randint(1_000, 100_000)
            outside = await load.outside_invoice(variant, amount)
            if outside is None:
                return
            (invoice, payment_hash), internal_payee = outside, None
        case = PaymentCase(
            load.key("h"),
            payer.user,
            payment_hash,
            invoice,
            amount,
            variant,
            sends=[f"{time.strftime('%H:%M:%S')} invoice made"],
            via="lndhub",
            payee=internal_payee,
        )
        load.model.payments.append(case)
        if variant == "slow":
            load.spawn("release", load.release_later(payment_hash))
        dice = load.rng.random()
        if dice < REPEAT_CONCURRENT:
            answers = list(
                await asyncio.gather(
                    self._pay_once(case, payer, "lndhub_payinvoice"),
                    self._pay_once(case, payer, "lndhub_payinvoice (concurrent repeat)"),
                )
            )
        else:
            answers = [await self._pay_once(case, payer, "lndhub_payinvoice")]
            if dice < REPEAT_CONCURRENT + REPEAT_AFTER:
                answers.append(await self._pay_once(case, payer, "lndhub_payinvoice (repeat)"))
        case.retries = sum(1 for send in case.sends if "(retry)" in send)
        known = [a for a in answers if a is not None]
        case.answer = known[-1] if len(known) == len(answers) else None
        case.paid_answers = sum(1 for a in known if a.status == 200)
        # A 202 (code 9) or a failure (code 10) says a payment was made; so may a lost answer.
        claimed = any(_outcome(a) in ("paid", "in_transit", "failed") for a in known)
        await self._settle(case, claimed)

    async def _pay_once(self, case: PaymentCase, hub: HubUser, op: str) -> Answer | None:
        """`/payinvoice` until an answer comes (a lost one is sent again, as wallets retry;
        a 401 because a refresh replaced the token: log in again and send again)."""
        deadline = time.monotonic() + self.load.options.unknown_deadline_s
        body = {"invoice": case.invoice}
        sends = 0
        while True:
            answer = await self.request(op, "/lndhub/payinvoice", hub, json=body, money=True)
            case.sends.append(f"{time.strftime('%H:%M:%S')} {op}: {answer.summary()}")
            self.outcomes[_outcome(answer)] += 1
            if answer.known and answer.status != 401:
                return answer
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(RETRY_S if answer.status == 401 else self.load.retry_delay(sends))
            sends += 1
            if answer.status == 401:
                await self.login(hub)
            op = "lndhub_payinvoice (retry)"

    async def _settle(self, case: PaymentCase, claimed: bool) -> None:
        """What exists, as `/virtual_payment` says (the user's latest payment of the invoice),
        followed until final. Told "in flight" or "failed" yet nothing exists: a problem."""
        load = self.load
        query = {"user_id": case.user, "payment_hash": case.payment_hash}
        last_release = time.monotonic()
        while True:
            looked = await load.call("payment_poll", "/virtual_payment", query, Scope.READ)
            if looked.status == 200:
                case.exists, case.final = True, str(looked.body.get("status"))
                fee = looked.body.get("fee_msat")
                case.fee_msat = int(fee) if isinstance(fee, int) else None
                return
            if looked.status == 202:
                case.exists = True
            elif looked.known and not claimed and not case.exists:
                return  # refused, and nothing was made
            if time.monotonic() > load.follow_until:
                if claimed and not case.exists:
                    load.model.problems.append(
                        f"lndhub payment {case.key} was answered as made, yet none exists; "
                        f"sends: {', '.join(case.sends)}"
                    )
                return
            if case.exists and time.monotonic() - last_release > load.options.hold_s + 2.0:
                # Held by a fault meant for another payment: let it go.
                await load.sim_call(
                    "release",
                    "/_sim/release",
                    {"payment_hash": case.payment_hash, "outcome": "succeed"},
                )
                last_release = time.monotonic()
            await asyncio.sleep(POLL_S)


def _outcome(answer: Answer) -> str:
    """What a /payinvoice answer says of the payment: 200 paid; 202, or 409 code 9 (a repeat
    meeting the first still in flight), in transit; 400 code 10 failed and refunded."""
    if not answer.known:
        return "lost"
    if answer.status == 200:
        return "paid"
    if answer.status == 202 or answer.code == "lndhub_9":
        return "in_transit"
    if answer.code == "lndhub_10":
        return "failed"
    return f"refused_{answer.code}"
