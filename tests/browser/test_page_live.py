"""The page's live features, which need a protocol 2 server: topics, streaming, rooms, queues."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Locator, Page, expect

from tests.browser.helpers import (
    DemoProcess,
    Pages,
    chat_log,
    panel,
    run_js,
    send_chat,
    session_id,
    status,
)
from tests.conftest import RunningServer
from tether import App


def run_score(page: Page, score: float) -> None:
    scores = panel(page, "Track score")
    scores.get_by_label("score", exact=True).fill(str(score))
    scores.get_by_role("button", name="Run").click()
    expect(scores.get_by_text("done in")).to_be_visible()


def leaderboard(page: Page) -> Locator:
    return panel(page, "Top scores").get_by_role("listitem")


def test_a_score_submitted_in_one_context_appears_live_in_the_others_scores_region(
    pages: Pages, demo: RunningServer
) -> None:
    watcher = pages.open(demo.url)
    player = pages.open(demo.url)
    expect(panel(watcher, "Top scores")).to_contain_text("Waiting for the first update")

    run_score(player, 42)
    expect(leaderboard(watcher)).to_have_text(["42"])
    run_score(player, 7)
    run_score(player, 99)
    expect(leaderboard(watcher)).to_have_text(["99", "42", "7"])


def test_a_page_opened_after_scores_were_posted_shows_them_without_any_new_submit(
    pages: Pages, demo: RunningServer
) -> None:
    player = pages.open(demo.url)
    for score in (42, 7, 99, 3):
        run_score(player, score)
    late = pages.open(demo.url)  # nobody scores after this
    expect(leaderboard(late)).to_have_text(["99", "42", "7"])
    expect(panel(late, "Top scores")).not_to_contain_text("Waiting for the first update")


def test_before_joining_the_room_form_shows_who_is_in_the_room_now(
    pages: Pages, demo: RunningServer
) -> None:
    ann = pages.open(demo.url)
    room = panel(ann, "Chat room")
    room.get_by_label("name", exact=True).fill("Ann")
    room.get_by_label("room", exact=True).fill("lobby")
    room.get_by_role("button", name="Join").click()
    expect(panel(ann, "Room lobby")).to_be_visible()
    visitor = pages.open(demo.url)  # opened after Ann joined; the form names the lobby
    form = panel(visitor, "Chat room")
    expect(form).to_contain_text("In lobby now: Ann")
    form.get_by_label("room", exact=True).fill("attic")
    expect(form).not_to_contain_text("In lobby now")
    form.get_by_label("room", exact=True).fill("lobby")
    expect(form).to_contain_text("In lobby now: Ann")
    panel(ann, "Room lobby").get_by_role("button", name="Leave").click()
    expect(form).to_contain_text("Nobody is in lobby now.")


def test_scores_stay_live_after_the_server_restarts(
    pages: Pages, demo_process: DemoProcess
) -> None:
    watcher = pages.open(demo_process.url)
    player = pages.open(demo_process.url)
    demo_process.stop()
    demo_process.start()
    expect(status(watcher)).to_have_text("connected")
    expect(status(player)).to_have_text("connected")

    run_score(player, 5)
    expect(leaderboard(watcher)).to_have_text(["5"])


RECORD_STREAM = """
(log) => {
    window.seen = [];
    new MutationObserver(() => {
        const bubbles = log.querySelectorAll(".msg.bot .body");
        const last = bubbles[bubbles.length - 1];
        if (last) window.seen.push({
            text: last.textContent,
            busy: last.parentElement.getAttribute("aria-busy") === "true",
        });
    }).observe(log, {subtree: true, childList: true, characterData: true, attributes: true});
}
"""


def test_a_streamed_reply_grows_in_its_bubble_before_the_submit_finishes(
    pages: Pages, demo: RunningServer
) -> None:
    page = pages.open(demo.url)
    log = chat_log(page, "Streaming chat")
    log.evaluate(RECORD_STREAM)
    final = "Hello! I remember everything you say in this session."
    send_chat(page, "hello there", fn="Streaming chat", reply=final)
    expect(log.locator("[aria-busy=true]")).to_have_count(0)

    seen: list[dict[str, Any]] = page.evaluate("window.seen")
    streamed = [s["text"] for s in seen if s["busy"]]
    # Shown while the submit was still running (busy), and only ever a beginning of the reply.
    assert all(final.startswith(text) for text in streamed), seen
    assert len({text for text in streamed if text != final}) >= 2, seen
    assert seen[-1] == {"text": final, "busy": False}


def test_stopping_a_streamed_reply_cancels_it_and_marks_it_as_not_kept(
    pages: Pages, demo: RunningServer
) -> None:
    page = pages.open(demo.url)
    log = chat_log(page, "Streaming chat")
    box = panel(page, "Streaming chat").get_by_label("message", exact=True)
    box.fill(" ".join(f"word{n}" for n in range(300)))  # streams word by word, for seconds
    box.press("Enter")
    expect(log.locator("[aria-busy=true]")).to_have_count(1)
    panel(page, "Streaming chat").get_by_role("button", name="Stop").click()
    # Said once, plainly: not "stopped ... Cancelled. (cancelled)".
    expect(log.get_by_text("Stopped; nothing was kept.", exact=True)).to_have_count(1)
    expect(log).not_to_contain_text("(cancelled)")
    expect(log).not_to_contain_text("Cancelled")
    expect(log.locator("[aria-busy=true]")).to_have_count(0)
    expect(panel(page, "Streaming chat").get_by_role("button", name="Stop")).to_be_hidden()
    # The cancelled turn is not in the session's history: the next reply starts it afresh.
    send_chat(page, "hi again", fn="Streaming chat", reply="Hello! I remember everything")
    expect(log.locator(":scope > .turn:not(.failed)")).to_have_count(1)


def test_two_contexts_in_one_room_see_each_others_messages_and_presence(
    pages: Pages, demo: RunningServer
) -> None:
    ann = pages.open(demo.url)
    bob = pages.open(demo.url)
    for page, name in ((ann, "Ann"), (bob, "<b>Bob</b>")):
        room = panel(page, "Chat room")
        room.get_by_label("name", exact=True).fill(name)
        room.get_by_label("room", exact=True).fill("lobby")
        room.get_by_role("button", name="Join").click()
        expect(panel(page, "Room lobby")).to_be_visible()
    # The raw room functions are behind the room panel, not shown as panels of their own.
    for fn in ("join_room", "say", "leave_room"):
        expect(panel(ann, fn)).to_have_count(0)

    def members(page: Page) -> Locator:
        return panel(page, "Room lobby").get_by_role("list", name="members").get_by_role("listitem")

    expect(members(ann)).to_have_count(2)
    expect(members(ann).filter(has_text="<b>Bob</b>")).to_have_count(1)
    expect(members(bob)).to_have_count(2)

    def say(page: Page, text: str) -> None:
        box = panel(page, "Room lobby").get_by_label("text", exact=True)
        box.fill(text)
        box.press("Enter")

    say(ann, "hi Bob <i>!</i>")
    expect(panel(bob, "Room lobby").get_by_role("log")).to_contain_text("hi Bob <i>!</i>")
    say(bob, "hello Ann")
    ann_log = panel(ann, "Room lobby").get_by_role("log")
    expect(ann_log).to_contain_text("hello Ann")
    expect(ann_log).to_contain_text("<b>Bob</b>")
    expect(ann_log.get_by_text("hi Bob <i>!</i>")).to_have_count(1)

    bob.context.close()
    expect(members(ann)).to_have_count(1)
    expect(members(ann)).to_contain_text(["Ann"])


def gated_chat_app(running: threading.Event, gate: threading.Event) -> App:
    app = App("gated")

    @app.function(inputs=["text", "state"], outputs=["chatbot", "state"], concurrency_limit=1)
    async def slow_chat(message: str, history: list[list[str]] = []) -> Any:  # noqa: B006
        """One at a time, across all sessions."""
        running.set()
        for _ in range(2000):  # at most 20 s, however the test ends
            if gate.is_set():
                break
            await asyncio.sleep(0.01)
        history.append([message, f"done: {message}"])
        return history, history

    return app


def test_a_queued_message_shows_its_queue_position_next_to_it_until_it_is_answered(
    pages: Pages, serve_app: Callable[..., RunningServer]
) -> None:
    running, gate = threading.Event(), threading.Event()
    server = serve_app(gated_chat_app(running, gate))
    first = pages.open(server.url)
    second = pages.open(server.url)
    try:
        box = panel(first, "Slow chat").get_by_label("message", exact=True)
        box.fill("first")
        box.press("Enter")
        assert running.wait(10), "the first message never started"

        box = panel(second, "Slow chat").get_by_label("message", exact=True)
        box.fill("second")
        box.press("Enter")
        waiting = chat_log(second, "Slow chat").locator(".turn", has_text="second")
        expect(waiting).to_contain_text("queued, position 1")
    finally:
        gate.set()
    expect(chat_log(first, "Slow chat")).to_contain_text("done: first")
    expect(chat_log(second, "Slow chat")).to_contain_text("done: second")
    expect(chat_log(second, "Slow chat")).not_to_contain_text("queued")


def test_cancel_is_confirmed_by_the_server_which_stops_the_function(
    pages: Pages, serve_app: Callable[..., RunningServer]
) -> None:
    running, stopped = threading.Event(), threading.Event()
    app = App()

    @app.function(outputs="text")
    async def forever() -> str:
        running.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            stopped.set()
            raise
        return "never"

    page = pages.open(serve_app(app).url)
    run_js(
        page,
        """
        window.client = tether.connect();
        await within(client.ready);
        window.job = client.submit("forever");
        return client.protocol;
        """,
    )
    assert running.wait(10)
    outcome = run_js(
        page,
        """
        job.cancel();
        return [client.protocol, await within(job).then(() => "resolved", (e) => e.code)];
        """,
    )
    assert outcome[0] >= 2 and outcome[1] == "cancelled"
    assert stopped.wait(10), "the server did not stop the function"


def test_a_submit_cancelled_right_after_it_is_sent_is_answered_and_the_session_goes_on(
    pages: Pages, serve_app: Callable[..., RunningServer]
) -> None:
    app = App()

    @app.function(inputs=["text", "state"], outputs=["json", "state"])
    async def remember(item: str, items: list[str] = []) -> Any:  # noqa: B006
        await asyncio.sleep(0.05)
        items.append(item)
        return items, items

    page = pages.open(serve_app(app).url)
    outcome = run_js(
        page,
        """
        const client = tether.connect();
        await within(client.ready);
        const codes = [];
        for (let i = 0; i < 5; i++) {
            const job = client.submit("remember", `cancelled ${i}`);
            job.cancel();  // sent right behind the submit, often in the same read
            codes.push(await within(job, 5000).then(() => "resolved", (e) => e.code));
        }
        // Every cancelled submit released the session's state: this one runs.
        const last = await within(client.submit("remember", "kept")).catch((e) => e.message);
        client.close();
        return {codes, last};
        """,
    )
    assert outcome == {"codes": ["cancelled"] * 5, "last": ["kept"]}


def test_streamed_values_rebuilt_from_deltas_equal_the_full_values(
    pages: Pages, demo: RunningServer
) -> None:
    page = pages.open(demo.url)
    runs = run_js(
        page,
        """
        const run = async (deltas) => {
            const client = tether.connect({deltas});
            const welcome = await within(client.ready);
            const values = [];
            for (const text of ["hello", "what is new?", "bye"]) {
                for await (const value of client.submit("chat_stream", text)) {
                    values.push(value);
                }
            }
            client.close();
            return {deltas: welcome.deltas, values};
        };
        return [await within(run(true)), await within(run(false))];
        """,
    )
    with_deltas, without = runs
    assert with_deltas["deltas"] is True
    assert without["deltas"] is False
    assert with_deltas["values"] == without["values"]
    assert len(with_deltas["values"][-1]) == 3


def test_a_network_drop_resumes_the_same_session_with_its_history(
    pages: Pages, demo: RunningServer
) -> None:
    page = pages.open(demo.url)
    send_chat(page, "before the drop")
    before = session_id(page)

    # Cut every TCP connection on the server side, without a close frame:
    # to the page this is a network failure, not a server that went away.
    def cut() -> int:
        conns = list(demo.server.connections.values())
        for conn in conns:
            assert conn._transport is not None
            conn._transport.abort()
        return len(conns)

    old = demo.call(lambda: demo.server.connections[before])
    token = demo.call(lambda: demo.server.sessions[before].resume_token)
    opened: list[str] = []
    page.on("websocket", lambda ws: opened.append(ws.url))
    assert demo.call(cut) >= 1
    # Wait until the server has the session back on a new connection (the page
    # only reconnects once it noticed the drop), then for the page to say so.
    deadline = time.monotonic() + 20
    while demo.call(lambda: demo.server.connections.get(before)) in (None, old):
        assert time.monotonic() < deadline, "the page did not resume"
        time.sleep(0.05)
    expect(status(page)).to_have_text("connected")
    # The resume token travels in the first message, never in the URL (protocol 7),
    # and a new one comes with the welcome.
    assert demo.call(lambda: demo.server.sessions[before].resume_token) != token
    assert opened and all("resuming=1" in url and token not in url for url in opened)
    assert all("resume=" not in url for url in opened)
    send_chat(page, "after the drop")
    assert session_id(page) == before
    expect(page.get_by_text("a new session began")).to_have_count(0)
    # The server kept the history: the reply's history holds both turns.
    expect(chat_log(page).locator(":scope > .turn")).to_have_count(2)
