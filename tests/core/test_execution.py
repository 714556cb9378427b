"""The executor's rollback through the journal: a submit that raises, times out, is
cancelled or would pass the state budget leaves the session's state as it was."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from tether import App, Settings, State
from tether.app import Function
from tether.app.journal import TrackedList
from tether.core.execution import Executor
from tether.core.gates import Gate
from tether.core.runner import Runner
from tether.core.session import Services, Session


class Peer:
    """The session's connection: every frame to ``received``; never closed."""

    def __init__(self, received: Callable[[bytes], None]) -> None:
        self.send = received

    def request_close(self, code: int, reason: str) -> None:
        pass


class Harness:
    def __init__(self, app: App, max_state_bytes: int = 0, deltas: bool = False) -> None:
        settings = Settings()
        self.runner = Runner(settings)
        self.gates: dict[Function, Gate] = {}
        self.frames: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        executor = Executor(self.runner, max_state_bytes=max_state_bytes)
        services = Services(app, settings, executor, self._gate)
        self.session = Session(services, Peer(self._received), deltas=deltas)
        self.next_id = 0

    def _gate(self, function: Function) -> Gate:
        return self.gates.setdefault(function, Gate(None, 100, 0.25))

    def _received(self, frame: bytes) -> None:
        self.frames.append(orjson.loads(frame))
        self.arrived.set()

    def send(self, fn: str, *data: Any) -> int:
        self.next_id += 1
        msg = {"type": "submit", "id": self.next_id, "fn": fn, "data": list(data)}
        self.session.receive(orjson.dumps(msg))
        return self.next_id

    async def answer(self, id: int) -> dict[str, Any]:
        async with asyncio.timeout(10):
            while True:
                for frame in self.frames:
                    if frame["type"] in ("result", "error") and frame["id"] == id:
                        return frame
                self.arrived.clear()
                await self.arrived.wait()

    async def call(self, fn: str, *data: Any) -> dict[str, Any]:
        return await self.answer(self.send(fn, *data))

    def state(self, slot: State) -> Any:
        return self.session.state[slot]


@pytest.fixture
async def harness() -> AsyncIterator[Any]:
    made: list[Harness] = []

    def make(app: App, **kwargs: Any) -> Harness:
        made.append(Harness(app, **kwargs))
        return made[-1]

    yield make
    for h in made:
        await h.session.close()
        h.runner.close()


HISTORY = [[f"message {i}", f"reply {i}"] for i in range(300)]


def chat_app(slot: State, fail_after: Any = None) -> App:
    app = App()

    @app.function(inputs=["text", slot], outputs=["chatbot", slot])
    def chat(message, history):
        history.append([message, "ok"])
        return history, history

    @app.function(inputs=["text", slot], outputs=["chatbot", slot])
    def wreck(message, history):
        history.append([message, "half"])
        history[0][1] = "edited"
        history[5:9] = []
        history.sort(reverse=True)
        raise RuntimeError("after mutating")

    @app.function(inputs=["text", slot], outputs=["chatbot", slot])
    async def wreck_async(message, history):
        history.insert(0, ["front", None])
        history[-1].append("x")
        await asyncio.sleep(0)
        history.pop(3)
        raise ValueError("async, after mutating")

    return app


@pytest.mark.parametrize("fn", ["wreck", "wreck_async"])
async def test_a_function_raising_after_mutating_leaves_a_long_state_intact(harness, fn):
    slot = State(default=HISTORY)
    h = harness(chat_app(slot))
    assert (await h.call("chat", "first"))["type"] == "result"
    before = orjson.dumps(h.state(slot))
    answer = await h.call(fn, "boom")
    assert answer["code"] == "fn_error"
    assert orjson.dumps(h.state(slot)) == before
    result = await h.call("chat", "after")
    assert result["data"][0][-2:] == [["first", "ok"], ["after", "ok"]]
    assert len(result["data"][0]) == len(HISTORY) + 2


async def test_the_function_gets_the_state_journaled_and_the_default_is_never_shared(harness):
    slot = State(default=[])
    h = harness(chat_app(slot))
    await h.call("chat", "a")
    assert type(h.state(slot)) is TrackedList and slot.default == []


async def test_returning_a_new_value_replaces_the_slot_and_is_journaled_next_time(harness):
    slot = State(default=[[1]])
    app = App()

    @app.function(inputs=[slot], outputs=["json", slot])
    def rebuild(items):
        new = [*items, [len(items)]]  # reuses the old items
        return new, new

    @app.function(inputs=[slot], outputs="json")
    def fail(items):
        items[0].append("changed")
        items.append("more")
        raise RuntimeError

    h = harness(app)
    assert (await h.call("rebuild"))["data"] == [[[1], [1]]]
    assert (await h.call("fail"))["code"] == "fn_error"
    assert h.state(slot) == [[1], [1]]


async def test_a_returned_value_that_aliases_the_state_is_sent_as_it_was(harness):
    slot = State(default={"log": []})
    app = App()

    @app.function(inputs=["text", slot], outputs=["json", slot])
    def add(text, state):
        state["log"].append(text)
        return state["log"], state

    h = harness(app)
    assert (await h.call("add", "a"))["data"] == [["a"]]
    assert (await h.call("add", "b"))["data"] == [["a", "b"]]
    assert h.state(slot) == {"log": ["a", "b"]}


async def test_a_timed_out_sync_function_still_running_cannot_touch_the_rolled_back_state(
    harness,
):
    slot = State(default=[["a", "b"]])
    go_on = threading.Event()
    done = threading.Event()
    app = App()

    @app.function(inputs=[slot], outputs=["json", slot], timeout=0.05)
    def slow(history):
        history.append(["during", "call"])
        go_on.wait(10)
        history.append(["after", "timeout"])  # the orphaned thread mutates its objects
        history[0][0] = "changed"
        done.set()
        return history, history

    h = harness(app)
    assert (await h.call("slow"))["code"] == "timeout"
    go_on.set()
    assert await asyncio.to_thread(done.wait, 10)
    assert h.state(slot) == [["a", "b"]]


async def test_an_async_function_that_times_out_is_rolled_back(harness):
    slot = State(default={"n": 0, "items": [1, 2, 3]})
    app = App()

    @app.function(inputs=[slot], outputs=["json", slot], timeout=0.05)
    async def slow(state):
        state["n"] += 1
        state["items"].clear()
        await asyncio.sleep(10)
        return state, state

    h = harness(app)
    assert (await h.call("slow"))["code"] == "timeout"
    assert h.state(slot) == {"n": 0, "items": [1, 2, 3]}


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_cancelled_submit_is_rolled_back(harness, kind):
    slot = State(default=[{"k": [1]}])
    started = threading.Event()
    release = threading.Event()
    app = App()

    @app.function(inputs=[slot], outputs=["json", slot])
    def blocking(state):
        state[0]["k"].append(2)
        state.append("x")
        started.set()
        release.wait(10)
        return state, state

    @app.function(inputs=[slot], outputs=["json", slot])
    async def waiting(state):
        state[0]["k"].append(2)
        state.append("x")
        started.set()
        await asyncio.sleep(10)
        return state, state

    h = harness(app)
    id = h.send("blocking" if kind == "sync" else "waiting")
    assert await asyncio.to_thread(started.wait, 10)
    h.session.cancel(id)
    assert (await h.answer(id))["code"] == "cancelled"
    release.set()
    assert h.state(slot) == [{"k": [1]}]


async def test_a_stream_that_raises_midway_is_rolled_back(harness):
    slot = State(default=[["a", "b"]])
    app = App()

    @app.function(inputs=[slot], outputs=["chatbot", slot])
    async def stream(history):
        history.append(["q", ""])
        for word in ("one", "two"):
            history[-1][1] += word
            yield history, history
        raise RuntimeError("midway")

    h = harness(app, deltas=True)
    assert (await h.call("stream"))["code"] == "fn_error"
    partials = [f["data"][0] for f in h.frames if f["type"] == "partial"]
    assert partials == [{"keep": 0, "append": [["a", "b"], ["q", "one"]]}, {
        "keep": 1, "append": [["q", "onetwo"]]}]  # fmt: skip
    assert h.state(slot) == [["a", "b"]]


async def test_deltas_of_a_journaled_history_send_only_the_new_pairs(harness):
    slot = State(default=[])
    h = harness(chat_app(slot), deltas=True)
    assert (await h.call("chat", "a"))["data"] == [{"keep": 0, "append": [["a", "ok"]]}]
    assert (await h.call("chat", "b"))["data"] == [{"keep": 1, "append": [["b", "ok"]]}]
    assert (await h.call("wreck", "c"))["code"] == "fn_error"
    assert (await h.call("chat", "d"))["data"] == [{"keep": 2, "append": [["d", "ok"]]}]


async def test_a_value_that_cannot_be_journaled_is_copied_and_restored(harness):
    slot = State(default={"tags": {1, 2}})
    app = App()

    @app.function(inputs=[slot], outputs=[slot])
    def fail(state):
        state["tags"].add(3)
        raise RuntimeError

    h = harness(app)
    assert (await h.call("fail"))["code"] == "fn_error"
    assert h.state(slot) == {"tags": {1, 2}}


async def test_a_copy_slot_is_copied_and_restored(harness):
    slot = State(default=[[1]], snapshot="copy")
    app = App()

    @app.function(inputs=[slot], outputs=[slot])
    def fail(state):
        state[0].append(2)
        raise RuntimeError

    h = harness(app)
    assert (await h.call("fail"))["code"] == "fn_error"
    assert h.state(slot) == [[1]] and type(h.state(slot)) is list


async def test_the_budget_refuses_growth_past_it_and_rolls_back(harness):
    slot = State(default=[])
    app = App()

    @app.function(inputs=["text", slot], outputs=["number", slot])
    def grow(text, items):
        items.append(text)
        return len(items), items

    h = harness(app, max_state_bytes=2000)
    for _ in range(9):
        assert (await h.call("grow", "x" * 200))["type"] == "result"
    answer = await h.call("grow", "x" * 200)
    assert answer["code"] == "state_too_large"
    assert len(h.state(slot)) == 9
    assert len(orjson.dumps(h.state(slot))) <= 2000
    assert (await h.call("grow", "y"))["type"] == "result"  # what fits still fits


async def test_the_budget_counts_a_pair_grown_after_it_went_in(harness):
    slot = State(default=[])
    app = App()

    @app.function(inputs=["text", slot], outputs=["number", slot])
    def sneaky(text, items):
        pair: list[str] = []
        items.append(pair)  # empty when it goes in ...
        pair.extend([text] * 50)  # ... then grown, as a plain list the journal does not see
        return len(items), items

    h = harness(app, max_state_bytes=50_000)
    codes = [(await h.call("sneaky", "z" * 100))["type"] for _ in range(20)]
    assert "error" in codes
    assert len(orjson.dumps(h.state(slot))) <= 50_000


async def test_the_budget_measures_again_in_full_when_its_estimate_drifts(harness):
    slot = State(default={"a": [], "b": []})
    app = App()

    @app.function(inputs=["text", slot], outputs=["number", slot])
    def both(text, state):
        state["a"].append(text)
        state["b"] = state["a"]  # two places: the JSON grows twice for each append
        return len(state["a"]), state

    h = harness(app, max_state_bytes=100_000)
    for _ in range(400):
        if (await h.call("both", "w" * 100))["type"] == "error":
            break
    assert len(orjson.dumps(h.state(slot))) <= 100_000 * 1.2


def bad_returns_app() -> App:
    app = App("bad returns")
    shared = State(default=[])

    @app.function(inputs="text", outputs="number")
    def count(text):
        return "three"  # a string for a number output

    @app.function(inputs="text", outputs="json")
    def things(text):
        return {"a": object()}  # not JSON

    @app.function(inputs=["text", shared], outputs=["chatbot", shared])
    def chat(message, history):
        history.append([message, "ok"])
        return {"history": history}, history  # not a list of pairs

    @app.function(inputs=["text", shared], outputs=["chatbot", shared])
    def good_chat(message, history):
        history.append([message, "ok"])
        return history, history  # its journaled state: a list subclass, fine

    @app.function(inputs="text", outputs="number")
    async def countdown(text):
        yield 3
        yield "liftoff"

    return app


@pytest.mark.parametrize(
    ("fn", "words"),
    [
        ("count", "count returned a bad value: a number output must be a number, got a string"),
        ("things", "things returned a bad value: outputs cannot be sent as JSON"),
        ("chat", "chat returned a bad value: a chatbot output must be a list of [user, bot] pairs"),
        ("countdown", "countdown returned a bad value: a number output must be a number"),
    ],
)
async def test_a_bad_return_value_is_fn_error_for_the_caller_and_one_log_line(
    serve_app, caplog, fn, words
):
    """On a real server: the caller gets fn_error naming the function, and the server log
    gets one warning line with the same words and no traceback."""
    import tether

    server = serve_app(bad_returns_app())
    caplog.set_level("WARNING", logger="tether.session")
    async with tether.connect(server.ws_url) as c:
        with pytest.raises(tether.TetherError) as raised:
            await c.submit(fn, "x")
        assert raised.value.code == "fn_error"
        assert words in raised.value.message
        # The state is as before: chat's append was rolled back, good_chat sees one pair.
        assert await c.submit("good_chat", "a") == [["a", "ok"]]
    lines = [r for r in caplog.records if r.name == "tether.session"]
    assert [r.getMessage() for r in lines] == [raised.value.message]
    assert lines[0].levelname == "WARNING"
    assert lines[0].exc_info is None
    assert "\n" not in lines[0].getMessage()
