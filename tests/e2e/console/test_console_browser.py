"""The operator console in a real headless Chromium against a real `vnode serve`: log in, look at
every page, credit a user with a reason, retry a dead webhook delivery, log out. What the test
checks is what a person sees (the figures on the page against the ledger), and each page is
saved as a screenshot (test-output/screenshots, kept by CI)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from harness.browser import headless_chromium, save_screenshot
from tests.conftest import TEST_SEED
from tests.integration.events.test_webhooks import LOCAL, deliveries, subscribe
from tests.integration.events.webhook_receiver import WebhookReceiver
from tests.lightning_support import SimControl
from tests.support import ADMIN_KEY, ServeProcess, bearer, new_user_id, wait_until
from vnode.console.pages import amount
from vnode.events.delivery import deliver_once
from vnode.events.fanout import fan_out_once
from vnode.events.webhooks import Endpoint, WebhookChannel
from vnode.ledger import solvency


@dataclass
class Console:
    url: str
    port: int
    api: httpx.AsyncClient
    pool: asyncpg.Pool
    dsn: str


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as hooks:
        yield hooks


@pytest.fixture
async def served(fresh_db: str, tmp_path: Path) -> AsyncIterator[Console]:
    # Its event workers make one pass at the start and none after: the test fans out and
    # delivers with the same code (vnode/events), so it can give up on deliveries at once.
    env = {
        "VNODE_MASTER_SEED": TEST_SEED,
        "VNODE_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
        "VNODE_EVENTS_INTERVAL_S": "3600",
    }
    server = ServeProcess(fresh_db, tmp_path / "serve", extra_env=env)
    pool = await asyncpg.create_pool(fresh_db, min_size=1, max_size=2)
    assert pool is not None
    try:
        await server.wait_ready()
        async with httpx.AsyncClient(base_url=server.url, headers=bearer(ADMIN_KEY)) as api:
            yield Console(server.url, server.port, api, pool, fresh_db)
    finally:
        await pool.close()
        server.stop()


def arrived_at(driver: WebDriver, suffix: str) -> None:
    """Wait (10 s at most) until the page a click led to is `...suffix`: a click that submits
    a form may return before the next page is there."""
    WebDriverWait(driver, 10).until(lambda d: str(d.current_url).endswith(suffix))


def shown(driver: WebDriver, css: str) -> None:
    """Wait (10 s at most) until an element of the next page is there."""
    WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, css))


def text_of(driver: WebDriver, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def submit_with_reason(driver: WebDriver, form_css: str, reason: str) -> None:
    form = driver.find_element(By.CSS_SELECTOR, form_css)
    form.find_element(By.NAME, "reason").send_keys(reason)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


async def spendable(pool: asyncpg.Pool, user_id: int) -> int:
    found = await pool.fetchval(
        "SELECT spendable FROM ln_user_balances WHERE user_id = $1 AND asset_id = 'BTC'", user_id
    )
    return int(found)


async def test_an_operator_logs_in_looks_credits_retries_and_logs_out(
    served: Console, receiver: WebhookReceiver, browser: WebDriver
) -> None:
    api, pool, url = served.api, served.pool, served.url
    hook = await subscribe(api, receiver)
    receiver.fail_all()
    alice, bob = new_user_id(), new_user_id()
    for user, msat in ((alice, 50_000_000), (bob, 1_000)):
        credit = {"user_id": user, "amount_msat": msat, "reason": "welcome"}
        assert (await api.post("/admin/credit", json=credit)).status_code == 200
    for sats in (1000, 2000, 3000):
        move = {"from_user_id": alice, "to_user_id": bob, "amount_sats": sats}
        assert (await api.post("/virtual_transfer", json=move)).status_code == 200
    # An outside invoice paid through the simulated node beside the service (port + 1).
    invoice = await SimControl(f"http://127.0.0.1:{served.port + 1}").invoice(100_000)
    paid = await api.post("/virtual_sendpayment", json={"user_id": alice, "invoice": invoice})
    assert paid.status_code == 200 and paid.json()["status"] == "succeeded", paid.text
    payment_id = paid.json()["payment_id"]

    # Every event's delivery to the failing endpoint (two credits, both sides of three
    # transfers, the payment's), given up on at once (as after the retry period) by the
    # delivery code itself: the dead letters the console retries.
    made_dead = {str(row["event_id"]) for row in await pool.fetch("SELECT event_id FROM outbox")}
    events = len(made_dead)
    assert events >= 9
    channel = WebhookChannel(Endpoint(hook["id"], hook["url"], hook["secret"]), LOCAL)

    await fan_out_once(pool, redis_enabled=False)  # (all_dead counts the deliveries)

    async def all_dead() -> bool:
        await deliver_once(pool, channel.endpoint.channel, channel.send, dead_after_s=0)
        found = await deliveries(served.dsn, hook["id"])
        return len(found) == events and {r["status"] for r in found} == {"dead"}

    await wait_until(all_dead, 60, "the endpoint's deliveries to be dead")

    # No session: the console sends a person to the login form.
    browser.get(url + "/console")
    assert browser.current_url.endswith("/console/login")
    save_screenshot(browser, "console-login")
    browser.find_element(By.ID, "key").send_keys(ADMIN_KEY)
    browser.find_element(By.ID, "login").click()
    arrived_at(browser, "/console")

    # Overview: what users are owed is the ledger's figure; the node is the simulated one.
    owed = await solvency.liabilities(pool)
    assert text_of(browser, "#solvency tr[data-asset=BTC] .owed") == amount(owed["BTC"])
    assert text_of(browser, "#node-state") == "ready"
    assert "SIMULATED" in text_of(browser, "#simulated")
    assert text_of(browser, "#dead-count") == str(events)
    assert text_of(browser, "#pending-count") == "0"
    assert "console-traffic" in browser.page_source  # the roll-up worker's heartbeat
    save_screenshot(browser, "console-overview")

    # Traffic: the three transfers are on the plot (minutes not rolled up yet are read live).
    browser.get(url + "/console/traffic?window=hour")
    plots = browser.find_elements(By.CSS_SELECTOR, "svg.plot")
    assert len(plots) >= 5
    transfers = plots[0].find_element(By.CSS_SELECTOR, "polyline title")
    assert transfers.get_attribute("textContent") == "transfers: 3 in view"
    save_screenshot(browser, "console-traffic")

    browser.get(url + "/console/payments")
    assert "No payment is pending" in text_of(browser, "#pending-payments")
    save_screenshot(browser, "console-payments")
    browser.get(url + f"/console/payments/{payment_id}")
    assert text_of(browser, "#payment-status") == "succeeded"
    assert amount(100_000) in text_of(browser, "#payment")
    assert "payment.succeeded" in text_of(browser, "#payment-events")
    save_screenshot(browser, "console-payment")

    # Users: find alice by her vn_ id; her page shows the ledger's balance.
    browser.get(url + "/console/users")
    browser.find_element(By.ID, "q").send_keys(f"vn_{alice}")
    browser.find_element(By.ID, "search").click()
    arrived_at(browser, f"/console/users/{alice}")
    before = await spendable(pool, alice)
    assert before < 50_000_000 - 6_000_000 - 100_000  # the payment and its fee
    assert text_of(browser, "#balances tr[data-asset=BTC] .spendable") == amount(before)
    rows = await pool.fetchval(
        "SELECT count(*) FROM ln_user_transactions WHERE user_id = $1", alice
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "#history tbody tr")) == rows
    save_screenshot(browser, "console-user")

    # A credit with a reason: booked once, shown on her page and in the audit trail.
    browser.find_element(By.ID, "amount").send_keys("1234000")
    submit_with_reason(browser, "#move-form", "goodwill for a stuck payment")
    shown(browser, "#outcome")
    assert text_of(browser, "#outcome") == "ok"
    save_screenshot(browser, "console-credit-done")
    browser.back()  # the form as it was: submitting it again books nothing more
    shown(browser, "#move-submit")
    browser.find_element(By.ID, "move-submit").click()
    shown(browser, "#replayed")
    assert await spendable(pool, alice) == before + 1_234_000
    browser.get(url + f"/console/users/{alice}")
    assert text_of(browser, "#balances tr[data-asset=BTC] .spendable") == amount(before + 1_234_000)

    # Alerts and webhooks: Retry puts the dead letters back; the endpoint now takes them.
    receiver.fail_all(on=False)
    browser.get(url + "/console/alerts")
    assert text_of(browser, f"#webhooks tr[data-webhook='{hook['id']}'] .dead") == str(events)
    save_screenshot(browser, "console-alerts")
    submit_with_reason(browser, "#webhooks form", "endpoint fixed")
    shown(browser, "#outcome")
    assert text_of(browser, "#outcome") == f"ok: {events} deliveries queued again"

    async def delivered() -> bool:
        await deliver_once(pool, channel.endpoint.channel, channel.send)
        # Every dead one; the console's credit below makes one more event, which may arrive too.
        return made_dead <= {r.id for r in receiver.received}

    await wait_until(delivered, 20, "the retried deliveries to arrive")
    browser.get(url + "/console/alerts")
    assert "No dead delivery" in text_of(browser, "#dead-letters")

    browser.get(url + "/console/keys")
    assert "VNODE_ADMIN_KEY" not in text_of(browser, "#keys")  # only stored keys are listed
    save_screenshot(browser, "console-keys")

    browser.get(url + "/console/actions")
    trail = text_of(browser, "#actions")
    assert "goodwill for a stuck payment" in trail and "endpoint fixed" in trail
    assert trail.count("credit") == 1
    save_screenshot(browser, "console-actions")

    # A phone-sized window still shows the overview's figures.
    browser.set_window_size(390, 844)
    browser.get(url + "/console")
    assert text_of(browser, "#node-state") == "ready"
    save_screenshot(browser, "console-overview-phone")

    # The system's dark setting gives the dark theme (a browser of its own, logged in anew).
    with headless_chromium(dark=True) as dark:
        dark.get(url + "/console/login")
        dark.find_element(By.ID, "key").send_keys(ADMIN_KEY)
        dark.find_element(By.ID, "login").click()
        shown(dark, "#node-state")
        assert text_of(dark, "#node-state") == "ready"
        background = dark.execute_script("return getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(15, 18, 22)", background
        save_screenshot(dark, "console-overview-dark")

    browser.find_element(By.ID, "logout").click()
    arrived_at(browser, "/console/login")
    browser.get(url + f"/console/users/{alice}")
    assert browser.current_url.endswith("/console/login")
    save_screenshot(browser, "console-logged-out")
