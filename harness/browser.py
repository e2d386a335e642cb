"""A real headless Chromium for the web pages' tests (Debian's `chromium` and `chromium-driver`:
apt-get install -y chromium chromium-driver; `make browser` does it), driven through Selenium.

Screenshots go to `test-output/screenshots/` in the checkout (or `VNODE_SCREENSHOT_DIR`), which
CI keeps as output: a reviewer sees each page as the test saw it."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

INSTALL_HINT = (
    "chromium and chromium-driver are not installed; the browser tests need them: "
    "apt-get install -y chromium chromium-driver (or make browser)"
)
ROOT = Path(__file__).resolve().parent.parent
# Phone-sized pages are checked by resizing; this is a laptop's window.
WINDOW = (1280, 900)


def find_chromium() -> tuple[str, str] | None:
    """(chromium, chromedriver) binaries, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        return None
    return browser, driver


def screenshot_dir() -> Path:
    folder = Path(os.environ.get("VNODE_SCREENSHOT_DIR", ROOT / "test-output" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_screenshot(driver: WebDriver, name: str) -> Path:
    """The page as it is now, as `<name>.png` (a name made safe for a file)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "page"
    path = screenshot_dir() / f"{safe}.png"
    driver.save_screenshot(str(path))
    return path


@contextmanager
def headless_chromium(dark: bool = False) -> Iterator[WebDriver]:
    """A headless Chromium, quit on exit. `dark` asks for the system's dark colour scheme."""
    found = find_chromium()
    if found is None:
        raise RuntimeError(INSTALL_HINT)
    browser, driver_binary = found
    options = Options()
    options.binary_location = browser
    options.add_argument("--headless=new")
    # Root (CI, containers) has no user namespace sandbox; the pages are our own, on loopback.
    options.add_argument("--no-sandbox")
    options.add_argument("--disable-dev-shm-usage")
    options.add_argument("--disable-gpu")
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    if dark:
        options.add_argument("--force-dark-mode")
        options.add_argument("--blink-settings=preferredColorScheme=0")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_binary))
    try:
        yield driver
    finally:
        driver.quit()
