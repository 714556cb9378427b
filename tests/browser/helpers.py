"""Helpers of the browser tests: opening pages, a restartable server, finding things."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Locator, Page, expect

CHROMIUM = os.environ.get("TETHER_CHROMIUM", "/usr/bin/chromium")
WAIT_MS = 20_000
SERVER_START_SECONDS = 30.0
SERVER_STOP_SECONDS = 30.0

expect.set_options(timeout=WAIT_MS)


@dataclass
class OpenPage:
    page: Page
    log: list[str] = field(default_factory=list)


@dataclass
class Pages:
    """Opens pages, each in its own browser context (its own cookies, storage, session)."""

    browser: Browser
    opened: list[OpenPage] = field(default_factory=list)

    def open(self, url: str, *, width: int = 1280, height: int = 900) -> Page:
        context = self.browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(WAIT_MS)
        context.set_default_navigation_timeout(WAIT_MS)
        page = context.new_page()
        entry = OpenPage(page)
        page.on("console", lambda m: entry.log.append(f"console.{m.type}: {m.text}"))
        page.on("pageerror", lambda e: entry.log.append(f"pageerror: {e}"))
        self.opened.append(entry)
        page.goto(url)
        expect(status(page)).to_have_text("connected")
        return page

    def uncaught_errors(self) -> list[str]:
        return [line for entry in self.opened for line in entry.log if line.startswith("pageerror")]

    def close(self) -> None:
        for entry in self.opened:
            if not entry.page.is_closed():
                entry.page.context.close()


class DemoProcess:
    """``tether demo`` in a subprocess, so that it can be stopped and started on one port."""

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        assert self.process is None, "already running"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tether", "demo", "--port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + SERVER_START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tether demo exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "healthz", timeout=1) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        raise RuntimeError(f"tether demo did not answer on port {self.port}")

    def stop(self) -> None:
        """Stop as an operator does (SIGTERM: drain, then close the sockets with 1001)."""
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=SERVER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=SERVER_STOP_SECONDS)


def status(page: Page) -> Locator:
    return page.get_by_role("status")


def panel(page: Page, name: str) -> Locator:
    """The region of a function or topic, by its accessible name (its title: the
    declared label, else the name made readable: `track_score` is "Track score")."""
    return page.get_by_role("region", name=name, exact=True)


def chat_log(page: Page, fn: str = "Chat") -> Locator:
    return panel(page, fn).get_by_role("log")


def send_chat(page: Page, text: str, fn: str = "Chat", reply: str | None = None) -> None:
    """Type ``text`` in the chat box of ``fn``, press Enter, wait for the reply."""
    box = panel(page, fn).get_by_label("message", exact=True)
    box.fill(text)
    box.press("Enter")
    expect(chat_log(page, fn)).to_contain_text(reply if reply is not None else f"You said: {text}")


def session_id(page: Page) -> str:
    return page.locator("#session-id").get_attribute("title") or ""


def run_js(page: Page, body: str, arg: object = None) -> Any:
    """Run ``body`` in an async function in ``page``, with ``tether`` (the module) imported.

    ``within(promise, ms)`` bounds an in-page wait (``page.evaluate`` has no timeout).
    """
    script = f"""async (arg) => {{
        const tether = await import("/static/tether.js");
        const within = (promise, ms = {WAIT_MS}) => Promise.race([
            promise,
            new Promise((_, reject) =>
                setTimeout(() => reject(new Error(`timed out after ${{ms}} ms`)), ms)),
        ]);
        {body}
    }}"""
    return page.evaluate(script, arg)


ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def screenshot(page: Page, name: str) -> Path:
    """Save the whole page as ``test-artifacts/<name>.png`` (git-ignored) for people to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    # From the top: a full-page shot of a scrolled page draws the sticky header mid-page.
    page.evaluate("document.activeElement?.blur(); window.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=True)
    return path
