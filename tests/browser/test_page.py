"""The browser page in real headless Chromium, against a real server (protocol 1 features)."""

from __future__ import annotations

import json
from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.browser.helpers import (
    DemoProcess,
    Pages,
    chat_log,
    panel,
    send_chat,
    session_id,
    status,
)
from tests.conftest import RunningServer
from tether import App

XSS = "<img src=x onerror=alert(1)>"


def submit_score(page: Page, score: float) -> list[float]:
    """Run track_score from its panel; return the top 3 the page shows."""
    scores = panel(page, "Track score")
    scores.get_by_label("score", exact=True).fill(str(score))
    scores.get_by_role("button", name="Run").click()
    expect(scores.get_by_text("done in")).to_be_visible()
    return json.loads(scores.locator("pre").inner_text())  # type: ignore[no-any-return]


def test_two_browser_contexts_are_two_sessions_each_seeing_only_its_own_chat(
    pages: Pages, demo: RunningServer
) -> None:
    alice = pages.open(demo.url)
    bob = pages.open(demo.url)
    assert session_id(alice) != session_id(bob)

    send_chat(alice, "alice was here")
    send_chat(bob, "bob was here")
    send_chat(alice, "alice again")

    expect(chat_log(alice)).to_contain_text("alice again")
    expect(chat_log(alice)).not_to_contain_text("bob")
    expect(chat_log(bob)).to_contain_text("bob was here")
    expect(chat_log(bob)).not_to_contain_text("alice")


def test_a_reload_starts_a_new_session_with_an_empty_history(
    pages: Pages, demo: RunningServer
) -> None:
    page = pages.open(demo.url)
    send_chat(page, "remember this")
    before = session_id(page)

    page.reload()
    expect(status(page)).to_have_text("connected")
    assert session_id(page) != before
    expect(chat_log(page)).to_contain_text("No messages yet")
    expect(chat_log(page)).not_to_contain_text("remember this")

    send_chat(page, "a fresh start")
    expect(chat_log(page)).not_to_contain_text("remember this")


def test_a_server_restart_shows_reconnecting_then_connected_and_says_a_new_session_began(
    pages: Pages, demo_process: DemoProcess
) -> None:
    page = pages.open(demo_process.url)
    send_chat(page, "before the restart")
    first_session = session_id(page)
    expect(page.get_by_text("a new session began")).to_have_count(0)

    demo_process.stop()
    expect(status(page)).to_have_text("reconnecting")
    demo_process.start()
    expect(status(page)).to_have_text("connected")

    expect(page.get_by_text("a new session began")).to_be_visible()
    assert session_id(page) != first_session
    send_chat(page, "after the restart")
    log = chat_log(page)
    expect(log).to_contain_text("Earlier session")
    expect(log).to_contain_text("New session began")
    # The bot's new history holds only the new message: the old one is in the archive.
    expect(log.locator(":scope > .turn")).to_have_count(1)
    expect(log.locator(":scope > .turn")).to_contain_text("after the restart")


def test_a_message_with_markup_is_shown_as_text_and_runs_nothing(
    pages: Pages, demo: RunningServer
) -> None:
    page = pages.open(demo.url)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    send_chat(page, XSS)
    log = chat_log(page)
    expect(log.get_by_text(XSS, exact=True)).to_be_visible()
    expect(log.get_by_text(f"You said: {XSS}", exact=True)).to_be_visible()
    expect(page.locator("img")).to_have_count(0)
    # One more round trip, so that anything the markup might have started has run.
    send_chat(page, "still here")
    assert dialogs == []


def test_a_score_from_one_context_is_in_the_top_3_the_other_context_gets(
    pages: Pages, demo: RunningServer
) -> None:
    first = pages.open(demo.url)
    second = pages.open(demo.url)
    assert submit_score(first, 10) == [10]
    assert submit_score(second, 30) == [30, 10]
    assert submit_score(first, 20) == [30, 20, 10]


def form_app() -> App:
    app = App("forms")

    @app.function(inputs=["text", "number", "checkbox", "json"], outputs=["json", "text", "number"])
    def profile(name: str, age: float, admin: bool, tags: object) -> tuple[object, str, float]:
        """Describe a person."""
        return {"name": name, "admin": admin, "tags": tags}, f"{name} is {age}", age * 2

    @app.function(outputs="text")
    def hello() -> str:
        return "hello from a function without inputs"

    return app


def test_any_app_gets_generic_panels_and_the_json_editor_refuses_invalid_json(
    pages: Pages, serve_app: Callable[..., RunningServer]
) -> None:
    page = pages.open(serve_app(form_app()).url)
    form = panel(page, "Profile")
    expect(form.get_by_text("Describe a person.")).to_be_visible()
    form.get_by_label("name", exact=True).fill("<b>Ada</b>")
    form.get_by_label("age", exact=True).fill("36")
    form.get_by_label("admin", exact=True).check()
    tags = form.get_by_label("tags", exact=True)
    tags.fill('{"broken": ')
    expect(form.get_by_text("Invalid JSON")).to_be_visible()
    expect(tags).to_have_attribute("aria-invalid", "true")

    form.get_by_role("button", name="Run").click()
    expect(form.get_by_text("Fix the marked input first.")).to_be_visible()
    expect(tags).to_be_focused()
    expect(form.locator("pre")).to_have_text("")

    tags.fill('["math", 1]')
    expect(form.get_by_text("Invalid JSON")).to_have_count(0)
    form.get_by_role("button", name="Run").click()
    expect(form.get_by_text("done in")).to_be_visible()
    assert json.loads(form.locator("pre").inner_text()) == {
        "name": "<b>Ada</b>",
        "admin": True,
        "tags": ["math", 1],
    }
    expect(form.get_by_text("<b>Ada</b> is 36", exact=True)).to_be_visible()
    expect(form.get_by_text("72", exact=True)).to_be_visible()

    no_inputs = panel(page, "Hello")
    no_inputs.get_by_role("button", name="Run").click()
    expect(no_inputs.get_by_text("hello from a function without inputs")).to_be_visible()
    # No chatbot output, so no chat layout; no room functions, so no room.
    expect(page.get_by_role("log")).to_have_count(0)
    expect(panel(page, "Chat room")).to_have_count(0)


def test_a_wrong_input_is_answered_with_the_servers_error_next_to_the_run_button(
    pages: Pages, serve_app: Callable[..., RunningServer]
) -> None:
    app = App()

    @app.function(inputs="number", outputs="number")
    def invert(x: float) -> float:
        return 1 / x

    page = pages.open(serve_app(app).url)
    form = panel(page, "Invert")
    form.get_by_label("x", exact=True).fill("0")
    form.get_by_role("button", name="Run").click()
    expect(form.get_by_text("ZeroDivisionError")).to_be_visible()
    expect(form.get_by_text("(fn_error)")).to_be_visible()


def test_chatting_works_with_the_keyboard_alone(pages: Pages, demo: RunningServer) -> None:
    page = pages.open(demo.url)
    box = panel(page, "Chat").get_by_label("message", exact=True)
    box_id = box.get_attribute("id")
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == box_id:
            break
    else:
        raise AssertionError("Tab never reached the chat's message box")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "the focused message box shows no focus ring"

    page.keyboard.type("typed with keys")
    page.keyboard.press("Enter")
    expect(chat_log(page)).to_contain_text("You said: typed with keys")
    expect(box).to_be_focused()
    expect(box).to_have_value("")

    page.keyboard.type("line one")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("line two")
    expect(box).to_have_value("line one\nline two")
    page.keyboard.press("Enter")
    # A reply is Markdown with line breaks kept: the newline is a <br> in its text.
    expect(chat_log(page)).to_contain_text("You said: line one\nline two", use_inner_text=True)


def test_a_375px_wide_screen_has_no_horizontal_scroll(pages: Pages, demo: RunningServer) -> None:
    page = pages.open(demo.url, width=375, height=740)
    send_chat(page, "x" * 300)
    submit_score(page, 123456789.125)
    widths = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"the page is {widths[0]}px wide in a {widths[1]}px screen"
