"""Browser fixtures: real headless Chromium (Playwright, sync API) against real servers.

Every wait is bounded: Playwright's default timeouts and ``expect`` use
``WAIT_MS``; server processes start and stop within deadlines. When a test
fails, each page it opened is saved in ``test-artifacts/`` as a screenshot,
with its console output next to it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.browser.helpers import CHROMIUM, DemoProcess, Pages
from tests.conftest import RunningServer, free_port
from tether.demo import create_app

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


# Module scope, not session: while Playwright's sync API is open it keeps an event
# loop running in this thread, which pytest-asyncio's async tests in other modules
# cannot share. Every browser test module is synchronous.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: run `make system-deps` (installs Debian's chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox"], headless=True, timeout=60_000
        )
        yield chromium
        chromium.close()


@pytest.fixture
def pages(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Pages]:
    """Open pages with ``pages.open(url)``; each is its own browser context (own session)."""
    opened = Pages(browser)
    request.node.tether_pages = opened
    yield opened
    errors = opened.uncaught_errors()
    opened.close()
    assert not errors, f"the page threw: {errors}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    outcome = yield
    report = outcome.get_result()
    opened: Pages | None = getattr(item, "tether_pages", None)
    if report.when != "call" or not report.failed or opened is None:
        return
    ARTIFACTS.mkdir(exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", item.nodeid)[-150:]
    for n, entry in enumerate(opened.opened):
        stem = ARTIFACTS / f"{name}-page{n}"
        Path(f"{stem}.log").write_text("\n".join(entry.log) + "\n")
        if entry.page.is_closed():
            continue
        try:
            entry.page.screenshot(path=f"{stem}.png", full_page=True, timeout=10_000)
        except Exception as exc:  # a screenshot must never hide the real failure
            Path(f"{stem}.screenshot-error.txt").write_text(repr(exc))


@pytest.fixture
def demo(serve_app: Callable[..., RunningServer]) -> RunningServer:
    """The demo app, with a fresh store, on a free port."""
    return serve_app(create_app())


@pytest.fixture
def demo_process(tmp_path: Path) -> Iterator[DemoProcess]:
    """``tether demo`` in a subprocess: ``stop()`` and ``start()`` again on the same port."""
    server = DemoProcess(free_port(), tmp_path / "server.log")
    server.start()
    yield server
    server.stop()
