"""Headless Chromium driven through WebDriver: Debian's chromium and chromium-driver, and selenium.

browser() can run it inside a lab's network namespace (where the appliance's console is): this
thread enters the namespace, so chromedriver and Chromium start there and the WebDriver
connections to them are made there too. A failed test keeps a screenshot and the page's DOM
under artifacts/<name>/.
"""
from __future__ import annotations

import ctypes
import os
import shutil
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
WAIT = 30   # seconds a browser step may take (the lab's machines are slow under TCG)


CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    # os.setns is Python 3.12's; Debian 12 has 3.11, so libc's setns(2) it is.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns into a network namespace failed")


@contextmanager
def network_namespace(name: str):
    """This thread inside the named network namespace (`ip netns add NAME`), then back."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(target)
        yield
    finally:
        _setns(own)
        os.close(own)
        os.close(target)


def _needed():
    for program, package in (("chromium", "chromium"), ("chromedriver", "chromium-driver")):
        if shutil.which(program) is None:
            pytest.fail(f"{program} not found: install the Debian package {package} (./setup.sh does)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail("selenium is not installed: .venv/bin/pip install -e '.[test]' (./setup.sh does)")


@contextmanager
def browser(name: str, netns: str | None = None):
    """A WebDriver session; `name` names the artifacts directory if the body fails."""
    _needed()
    from selenium import webdriver
    os.environ["SE_OFFLINE"] = "true"       # selenium never fetches drivers: Debian's are given
    with network_namespace(netns) if netns else nullcontext():
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium")
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--window-size=1400,1000"):
            options.add_argument(arg)
        driver = webdriver.Chrome(options=options,
                                  service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")))
        try:
            yield driver
        except BaseException:
            keep = ARTIFACTS / name.replace("/", "_")
            keep.mkdir(parents=True, exist_ok=True)
            try:
                driver.save_screenshot(str(keep / "console.png"))
                (keep / "console.html").write_text(driver.page_source)
            except Exception:
                pass
            raise
        finally:
            driver.quit()


def wait_until(driver, condition, what: str, seconds: float = WAIT):
    """condition(driver) true within seconds, else a failure that says what was awaited.

    The console replaces a host's row whenever it changes, so an element found a moment ago
    may be gone: that is asked again, as a user would look again."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait
    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.2,
                             ignored_exceptions=(StaleElementReferenceException,)).until(condition)
    except TimeoutException:
        raise AssertionError(f"not within {seconds:.0f} s in the console: {what}") from None


def host_state(driver, hostname: str) -> str | None:
    """The state the hosts table shows, read in one step (the row may be replaced at any time)."""
    return driver.execute_script(
        "const r = document.querySelector(`#host-rows tr[data-host=\"${arguments[0]}\"]`);"
        " return r ? r.dataset.state : null;", hostname)


def click(driver, css: str, tries: int = 5) -> None:
    """Click what css finds; a row replaced between finding and clicking is found again."""
    from selenium.common.exceptions import StaleElementReferenceException
    for attempt in range(tries):
        try:
            driver.find_element("css selector", css).click()
            return
        except StaleElementReferenceException:
            if attempt == tries - 1:
                raise


def flash(driver) -> str:
    return driver.find_element("id", "flash").text
