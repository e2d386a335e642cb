"""`vnode demo` (issue 17) in a real headless Chromium: two people start the bot, Alice is paid
from outside through the simulated node, sends Bob 5,000 sats with Confirm, Bob is told, and
/balance shows both amounts. Screenshots of the conversation are kept as test output
(test-output/screenshots/demo-*.png; docs/images/demo.png is one of them). One SIGINT stops
the whole demo."""

from __future__ import annotations

import signal
from pathlib import Path

from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from harness.browser import save_screenshot
from harness.processes import VNODE, Process, clean_env
from harness.waits import wait_http_ok
from vnode.datadir import redis_socket, serve_url_file
from vnode.embedded_redis import answers
from vnode.loopback import free_port

# The page redraws a chat when its transcript changes: an element found a moment ago may be gone.
_REDRAWN = (StaleElementReferenceException,)


def _messages(driver: WebDriver, chat: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, f"#chat-{chat} .messages").text)


def shows(driver: WebDriver, chat: str, fragment: str, timeout_s: float = 30) -> None:
    WebDriverWait(driver, timeout_s, ignored_exceptions=_REDRAWN).until(
        lambda d: fragment in _messages(d, chat),
        f"{fragment!r} in the {chat} chat",
    )


def say(driver: WebDriver, chat: str, text: str) -> None:
    box = driver.find_element(By.CSS_SELECTOR, f"#chat-{chat} input.text")
    box.send_keys(text + Keys.ENTER)
    WebDriverWait(driver, 10, ignored_exceptions=_REDRAWN).until(
        lambda d: (
            d.find_element(By.CSS_SELECTOR, f"#chat-{chat} input.text").get_attribute("value") == ""
        ),
        f"{text!r} sent in the {chat} chat",
    )


def tap(driver: WebDriver, chat: str, label: str, timeout_s: float = 30) -> None:
    """Press the newest enabled button with that label in the chat."""

    def pressed(d: WebDriver) -> bool:
        buttons = [
            b
            for b in d.find_elements(By.CSS_SELECTOR, f"#chat-{chat} .messages button")
            if b.text.strip() == label and b.is_enabled()
        ]
        if not buttons:
            return False
        buttons[-1].click()
        return True

    WebDriverWait(driver, timeout_s, ignored_exceptions=_REDRAWN).until(
        pressed, f"a {label!r} button in the {chat} chat"
    )


async def test_two_people_chat_with_the_bot_in_the_demo(browser: WebDriver, tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    port = free_port()
    demo = Process(
        [VNODE, "demo", "--port", str(port), "--data-dir", str(data_dir)],
        tmp_path / "demo.log",
        env=clean_env(),
        own_group=False,
    )
    demo.start()
    try:
        page = f"http://127.0.0.1:{port}/"
        await wait_http_ok(page, 180, "the demo's chat page", lambda: demo.check_alive("demo"))
        browser.get(page)
        assert "SIMULATION" in browser.find_element(By.ID, "banner").text

        say(browser, "alice", "/start")
        shows(browser, "alice", "Your virtual node is ready")
        say(browser, "bob", "/start")
        shows(browser, "bob", "Your virtual node is ready")

        # Alice is paid from outside: the QR code shows, and a button pays through the sim.
        say(browser, "alice", "/receive 10000")
        WebDriverWait(browser, 30, ignored_exceptions=_REDRAWN).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#chat-alice img[alt='QR code']"),
            "the invoice's QR code",
        )
        tap(browser, "alice", "Pay from outside (simulated wallet)")
        shows(browser, "alice", "Received 10,000 sats from outside")
        save_screenshot(browser, "demo-1-paid-from-outside")

        # Alice sends Bob 5,000 sats with Confirm; Bob is told.
        say(browser, "alice", "/send 5000 @bob_demo")
        tap(browser, "alice", "Confirm")
        shows(browser, "alice", "Sent 5,000 sats")
        shows(browser, "bob", "Received 5,000 sats")
        save_screenshot(browser, "demo-2-sent-and-told")

        say(browser, "alice", "/balance")
        say(browser, "bob", "/balance")
        shows(browser, "alice", "BTC: 5,000 sats")
        shows(browser, "bob", "BTC: 5,000 sats")
        # The group: Bob speaks there (chosen beside the input), the bot answers in the group.
        browser.find_element(By.CSS_SELECTOR, "#chat-group select.as option[value='1002']").click()
        say(browser, "group", "/help")
        shows(browser, "group", "/tip 1k")
        save_screenshot(browser, "demo-3-balances")
    finally:
        code = demo.stop(signal.SIGINT, 90)
    assert code == 0, demo.log_tail()
    assert not answers(redis_socket(data_dir)), "the demo's Redis outlived it"
    assert not serve_url_file(data_dir).exists(), "the demo's vnode serve did not stop cleanly"
    assert "admin API key" not in (data_dir / "serve.log").read_text(), "a key in the log"
