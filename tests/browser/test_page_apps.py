"""The page fits any app: what it shows comes from the app's declarations (protocol 9),
many functions are laid out for wide and narrow screens, replies are safe Markdown
with a copy button, and a conversation can start over. Real server, real Chromium."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page, expect

import tether
from tests.browser.helpers import (
    Pages,
    chat_log,
    panel,
    run_js,
    screenshot,
    send_chat,
    session_id,
)
from tests.conftest import RunningServer
from tether import App

DEMO_SCORES_TEXT = "The top scores of all users"


def lookalike_app() -> App:
    """Not the demo, but with its names: a topic `scores`, functions `track_score`,
    `join_room`, `say`, `leave_room` (declared as no room)."""
    app = App("lookalike", topics=["scores"])

    @app.function(inputs="number", outputs="json")
    def track_score(score: float) -> list[float]:
        app.publish("scores", [score], retain=True)
        return [score]

    @app.function(inputs=["text", "text"], outputs="json")
    def join_room(name: str, room: str) -> Any:
        return {"joined": room}

    @app.function(inputs="text", outputs="json")
    def say(text: str) -> Any:
        return {"said": text}

    @app.function(outputs="json", label="Leave the room, politely")
    def leave_room() -> Any:
        return {"left": None}

    return app


def test_an_app_that_is_not_the_demo_shows_nothing_of_the_demos_texts_or_widgets(
    pages: Pages, serve_app: Callable[..., RunningServer]
) -> None:
    page = pages.open(serve_app(lookalike_app()).url)
    expect(page.locator("#app-title")).to_have_text("lookalike")
    scores = panel(page, "Scores")  # the topic's name made readable: it declared no label
    expect(scores).to_contain_text("Events published on this topic appear here")
    expect(page.locator("body")).not_to_contain_text(DEMO_SCORES_TEXT)
    # Functions named like the demo's room are plain functions: no room was declared.
    expect(page.get_by_role("region", name="Chat room")).to_have_count(0)
    for title in ("Track score", "Join room", "Say", "Leave the room, politely"):
        expect(panel(page, title)).to_be_visible()
    expect(panel(page, "Track score").locator(".fn-name")).to_have_text("track_score")


def test_the_demo_declares_its_own_texts_and_the_page_shows_them(
    pages: Pages, demo: RunningServer
) -> None:
    page = pages.open(demo.url)
    expect(page.locator("#app-title")).to_have_text("tether demo")
    expect(panel(page, "Top scores")).to_contain_text(DEMO_SCORES_TEXT)
    expect(panel(page, "Chat room")).to_contain_text("Pick a name and a room")
    expect(panel(page, "Streaming chat")).to_be_visible()


def lounge_app() -> App:
    """A chat room of its own: other function names, another topic pattern."""
    app = App("lounge", topics=["channel/*"])
    seat = tether.State(default=None, name="seat")
    members: dict[str, dict[str, str]] = {}

    def presence(room: str) -> dict[str, Any]:
        return {"kind": "presence", "members": sorted(members.get(room, {}).values())}

    def out(session: str, where: Any) -> None:
        if where is not None:
            members.get(where["room"], {}).pop(session, None)
            app.publish(f"channel/{where['room']}", presence(where["room"]), retain=True)

    @app.function(inputs=["text", "text", seat], outputs=["json", seat])
    async def enter(name: str, room: str, where: Any = None) -> Any:
        ctx = tether.context()
        out(ctx.session_id, where)
        if where is not None:
            ctx.unsubscribe(f"channel/{where['room']}")
        members.setdefault(room, {})[ctx.session_id] = name
        ctx.subscribe(f"channel/{room}")
        app.publish(f"channel/{room}", presence(room), retain=True)
        info = {"room": room, "name": name, "history": [], **presence(room)}
        return info, {"room": room, "name": name}

    @app.function(inputs=["text", seat], outputs=["json", seat])
    async def post(text: str, where: Any = None) -> Any:
        if where is None:
            raise ValueError("enter a room first")
        message = {"kind": "message", "id": uuid.uuid4().hex, "name": where["name"],
                   "text": text, "at": time.time()}  # fmt: skip
        app.publish(f"channel/{where['room']}", message)
        return message, where

    @app.function(inputs=[seat], outputs=["json", seat])
    async def exit_room(where: Any = None) -> Any:
        out(tether.context().session_id, where)
        return {"left": where and where["room"]}, None

    app.room(join="enter", say="post", leave="exit_room", topic="channel/{room}", label="Lounge")
    return app


def test_a_room_declared_under_other_function_names_and_topic_works(
    pages: Pages, serve_app: Callable[..., RunningServer]
) -> None:
    server = serve_app(lounge_app())
    ann = pages.open(server.url)
    bob = pages.open(server.url)
    for page, name in ((ann, "Ann"), (bob, "Bob")):
        lounge = panel(page, "Lounge")
        lounge.get_by_label("name", exact=True).fill(name)
        lounge.get_by_label("room", exact=True).fill("general")
        lounge.get_by_role("button", name="Join").click()
        # The heading is the room, not its topic (`channel/general`).
        expect(panel(page, "Room general")).to_be_visible()
        expect(page.get_by_text("channel/general")).to_have_count(0)
    for fn in ("Enter", "Post", "Exit room"):
        expect(panel(ann, fn)).to_have_count(0)
    members = panel(ann, "Room general").get_by_role("list", name="members")
    expect(members.get_by_role("listitem")).to_have_count(2)

    box = panel(bob, "Room general").get_by_label("text", exact=True)
    box.fill("hello from Bob")
    box.press("Enter")
    expect(panel(ann, "Room general").get_by_role("log")).to_contain_text("hello from Bob")
    panel(bob, "Room general").get_by_role("button", name="Leave").click()
    expect(members.get_by_role("listitem")).to_have_count(1)


# -- layout ----------------------------------------------------------------------------


def six_function_app() -> App:
    app = App("six functions")

    @app.function(inputs=["text", "state"], outputs=["chatbot", "state"])
    def chat(message: str, history: list[list[str]] = []) -> Any:  # noqa: B006
        """Talk; the conversation is this session's."""
        history.append([message, f"You said: {message}"])
        return history, history

    @app.function(inputs="number", outputs="number", label="Square a number")
    def square(x: float) -> float:
        """Multiply a number by itself."""
        return x * x

    @app.function(inputs="text", outputs="text")
    def shout(text: str) -> str:
        """Upper-case a text."""
        return text.upper()

    @app.function(inputs=["text", "number"], outputs="text")
    def repeat_text(text: str, times: float) -> str:
        """Say it again, and again."""
        return " ".join([text] * max(0, min(int(times), 20)))

    @app.function(inputs="checkbox", outputs="text")
    def flip(on: bool) -> str:
        return "off" if on else "on"

    @app.function(inputs="json", outputs="json")
    def keys_of(value: Any) -> Any:
        """The keys of a JSON object, sorted."""
        return sorted(value) if isinstance(value, dict) else []

    @app.function(inputs="text", outputs=["number", "text"])
    def word_count(text: str) -> tuple[int, str]:
        n = len(text.split())
        return n, f"**{n}** words"

    return app


BOXES = """() => {
    const box = (el) => {
        const b = el.getBoundingClientRect();
        return {x: b.x, y: b.y, w: b.width, h: b.height, right: b.right, bottom: b.bottom};
    };
    const all = (selector) => [...document.querySelectorAll(selector)].map(box);
    return {
        layout: box(document.getElementById("layout")),
        nav: box(document.getElementById("fn-nav")),
        panels: all("#panels > .panel"),
        inputs: all("#panels > .generic .fn-inputs"),
        outputs: all("#panels > .generic .fn-outputs"),
        scroll: [document.documentElement.scrollWidth, document.documentElement.clientWidth],
    };
}"""


def fill_six(page: Page) -> None:
    send_chat(page, "a **bold** hello", reply="You said: a bold hello")
    square = panel(page, "Square a number")
    square.get_by_label("x", exact=True).fill("12")
    square.get_by_role("button", name="Run").click()
    expect(square.get_by_text("144", exact=True)).to_be_visible()
    words = panel(page, "Word count")
    words.get_by_label("text", exact=True).fill("three little words")
    words.get_by_role("button", name="Run").click()
    expect(words.locator("strong")).to_have_text("3")


def test_six_functions_at_1280px_fill_the_width_beside_a_list_of_them_inputs_beside_outputs(
    pages: Pages, serve_app: Callable[..., RunningServer]
) -> None:
    page = pages.open(serve_app(six_function_app()).url, width=1280, height=900)
    nav = page.get_by_role("navigation", name="Functions")
    titles = [t.strip() for t in nav.locator(".nav-title").all_inner_texts()]
    assert titles == [
        "Chat", "Square a number", "Shout", "Repeat text", "Flip", "Keys of", "Word count",
    ]  # fmt: skip
    fill_six(page)
    boxes = page.evaluate(BOXES)
    panels, layout, side = boxes["panels"], boxes["layout"], boxes["nav"]
    assert len(panels) == 7
    # One column of panels, every one as wide as the column, beside the list: the
    # space right of the list is used, whatever the number of small functions.
    for box in panels:
        assert abs(box["x"] - panels[0]["x"]) < 1 and abs(box["w"] - panels[0]["w"]) < 1, boxes
    assert side["right"] <= panels[0]["x"], boxes
    assert panels[0]["right"] >= layout["right"] - 1, boxes
    assert panels[0]["w"] >= 0.7 * layout["w"], boxes
    # The list is as tall as its links and stays in view (sticky), not an empty column.
    assert side["h"] > 100, boxes
    # Inputs beside outputs, as in Gradio.
    assert len(boxes["inputs"]) == len(boxes["outputs"]) == 6
    for ins, outs in zip(boxes["inputs"], boxes["outputs"], strict=True):
        assert outs["x"] >= ins["right"] and abs(outs["y"] - ins["y"]) < 2, boxes
    assert boxes["scroll"][0] <= boxes["scroll"][1]
    screenshot(page, "six-functions-1280")
    # A link of the list takes you to its function.
    nav.get_by_role("link", name="Word count").click()
    expect(panel(page, "Word count")).to_be_focused()


def test_six_functions_at_375px_are_one_column_without_horizontal_scroll(
    pages: Pages, serve_app: Callable[..., RunningServer]
) -> None:
    page = pages.open(serve_app(six_function_app()).url, width=375, height=740)
    fill_six(page)
    boxes = page.evaluate(BOXES)
    panels = boxes["panels"]
    assert boxes["scroll"][0] <= boxes["scroll"][1], boxes["scroll"]
    for box in panels:
        assert abs(box["x"] - panels[0]["x"]) < 1 and box["right"] <= boxes["scroll"][1], boxes
    for earlier, later in itertools.pairwise(panels):
        assert later["y"] >= earlier["bottom"], boxes
    for ins, outs in zip(boxes["inputs"], boxes["outputs"], strict=True):
        assert outs["y"] >= ins["bottom"] - 1, boxes  # outputs under inputs
    # The list of functions folds into one button above the panels.
    nav = page.get_by_role("navigation", name="Functions")
    assert boxes["nav"]["bottom"] <= panels[0]["y"], boxes
    expect(nav.get_by_role("link")).to_have_count(0)
    screenshot(page, "six-functions-375")
    nav.get_by_role("button", name="Jump to… (7)").click()
    expect(nav.get_by_role("link")).to_have_count(7)
    nav.get_by_role("link", name="Keys of").click()
    expect(panel(page, "Keys of")).to_be_focused()
    expect(nav.get_by_role("link")).to_have_count(0)


def test_screenshots_of_the_demo_at_1280_and_375px(pages: Pages, demo: RunningServer) -> None:
    for width, height in ((1280, 900), (375, 740)):
        page = pages.open(demo.url, width=width, height=height)
        send_chat(page, "show me **bold**, `code` and a list:\n- one\n- two",
                  reply="You said: show me")  # fmt: skip
        scores = panel(page, "Track score")
        score = 100_000 - width  # the second page's is the best
        scores.get_by_label("score", exact=True).fill(str(score))
        scores.get_by_role("button", name="Run").click()
        expect(panel(page, "Top scores").get_by_role("listitem").first).to_have_text(str(score))
        widths = page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert widths[0] <= widths[1]
        screenshot(page, f"demo-{width}")


# -- chat: Markdown, safety, copy, start over, stop ------------------------------------------


def echo_app() -> App:
    app = App("echo")

    @app.function(inputs=["text", "state"], outputs=["chatbot", "state"])
    def echo(message: str, history: list[list[str]] = []) -> Any:  # noqa: B006
        """Answers with exactly what it was sent, as Markdown."""
        history.append([message, message])
        return history, history

    @app.function(inputs="text", outputs="text")
    def render(text: str) -> str:
        return text

    return app


MARKDOWN = """Here is **bold**, *emphasis* and `inline code`.

```
fenced = "code block"
```

- first
- second

1. one
2. two

[a link](https://example.org/docs)"""


def test_replies_and_text_outputs_are_rendered_as_markdown(
    pages: Pages, serve_app: Callable[..., RunningServer]
) -> None:
    page = pages.open(serve_app(echo_app()).url)
    send_chat(page, MARKDOWN, fn="Echo", reply="Here is bold")
    reply = chat_log(page, "Echo").locator(".msg.bot .body")
    expect(reply.locator("strong")).to_have_text("bold")
    expect(reply.locator("em")).to_have_text("emphasis")
    expect(reply.locator("p code")).to_have_text("inline code")
    expect(reply.locator("pre code")).to_have_text('fenced = "code block"\n')
    expect(reply.locator("ul li")).to_have_text(["first", "second"])
    expect(reply.locator("ol li")).to_have_text(["one", "two"])
    link = reply.get_by_role("link", name="a link")
    expect(link).to_have_attribute("href", "https://example.org/docs")
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
    # What the user typed stays as typed.
    expect(chat_log(page, "Echo").locator(".msg.user strong")).to_have_count(0)

    form = panel(page, "Render")
    form.get_by_label("text", exact=True).fill("**strong** and `code`")
    form.get_by_role("button", name="Run").click()
    expect(form.locator(".output strong")).to_have_text("strong")
    expect(form.locator(".output code")).to_have_text("code")


ATTACKS = [
    "[click me](javascript:window.pwned=1)",
    "[click me too](JaVaScRiPt:alert(1))",
    "<img src=x onerror=alert(1)>",
    "![image](x onerror=alert(1))",
    '![pixel](/static/favicon.svg "an image, which replies do not show")',
    '<a href="javascript:alert(1)">raw link</a>',
    "<script>window.pwned=1</script>",
    "<svg onload=alert(1)></svg>",
    '<iframe src="javascript:alert(1)"></iframe>',
    "<b onmouseover=alert(1)>hover</b>",
    '[x](" onclick="alert(1))',
]


def test_markdown_with_scripts_links_and_raw_html_runs_nothing(
    pages: Pages, serve_app: Callable[..., RunningServer]
) -> None:
    page = pages.open(serve_app(echo_app()).url)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    log = chat_log(page, "Echo")
    for attack in ATTACKS:
        send_chat(page, attack, fn="Echo", reply="")
        expect(log.locator(".msg.bot")).to_have_count(ATTACKS.index(attack) + 1)
    # Raw HTML is shown as the text it is.
    expect(log.locator(".msg.bot .body").nth(2)).to_have_text("<img src=x onerror=alert(1)>")
    for selector in ("img", "script", "svg", "iframe", "b", "[onerror]", "[onclick]",
                     "[onload]", "[onmouseover]", "a[href^='javascript' i]"):  # fmt: skip
        expect(log.locator(selector)).to_have_count(0)
    for text in ("click me", "click me too"):
        log.get_by_text(text, exact=True).click()
    log.locator(".msg.bot .body").last.hover()
    send_chat(page, "one more round trip", fn="Echo", reply="one more round trip")
    assert dialogs == []
    assert page.evaluate("window.pwned") is None


def test_the_copy_button_puts_the_replys_text_on_the_clipboard(
    pages: Pages, serve_app: Callable[..., RunningServer]
) -> None:
    server = serve_app(echo_app())
    page = pages.open(server.url)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    send_chat(page, "first reply", fn="Echo", reply="first reply")
    send_chat(page, "second **reply**", fn="Echo", reply="second reply")
    buttons = chat_log(page, "Echo").get_by_role("button", name="Copy reply")
    expect(buttons).to_have_count(2)
    buttons.nth(1).click()
    expect(buttons.nth(1)).to_have_text("Copied")
    # The Markdown source, as the function returned it.
    assert page.evaluate("navigator.clipboard.readText()") == "second **reply**"
    buttons.nth(0).click()
    expect(buttons.nth(0)).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "first reply"


def test_new_conversation_starts_over_with_an_empty_history_in_a_new_session(
    pages: Pages, demo: RunningServer
) -> None:
    page = pages.open(demo.url)
    send_chat(page, "remember me")
    send_chat(page, "and me")
    before = session_id(page)
    panel(page, "Chat").get_by_role("button", name="New conversation").click()
    log = chat_log(page)
    expect(log).to_contain_text("No messages yet")
    expect(log).not_to_contain_text("remember me")
    expect(log.locator(".turn")).to_have_count(0)
    expect(page.get_by_text("Started over")).to_be_visible()
    expect(page.locator("#session-id")).not_to_have_attribute("title", before)
    send_chat(page, "a clean slate")
    # The server's history is new too: the reply's history holds this turn only.
    expect(log.locator(":scope > .turn")).to_have_count(1)
    expect(log).not_to_contain_text("Earlier session")


def test_tether_js_new_session_resets_the_session_state(
    pages: Pages, serve_app: Callable[..., RunningServer]
) -> None:
    page = pages.open(serve_app(echo_app()).url)
    outcome = run_js(
        page,
        """
        const client = tether.connect();
        const first = await within(client.ready);
        await within(client.submit("echo", "one"));
        const two = await within(client.submit("echo", "two"));
        const events = [];
        client.on("session", ({requested, first}) => events.push({requested, first}));
        const welcome = await within(client.newSession());
        const fresh = await within(client.submit("echo", "three"));
        client.close();
        return {same: welcome.session === first.session, two: two.length, fresh, events};
        """,
    )
    assert outcome == {
        "same": False,
        "two": 2,
        "fresh": [["three", "three"]],
        "events": [{"requested": True, "first": False}],
    }
