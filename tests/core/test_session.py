"""Sessions without a socket: submit ordering and cancellation, frame by frame.

Both tests are regressions the live fuzzer (tests/integration/test_fuzz_live.py)
found; here they are pinned down deterministically.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from tether import App, Settings, State
from tether.app import Function
from tether.app.state import state_size
from tether.core.execution import Executor
from tether.core.gates import Gate
from tether.core.hub import NO_ENTRIES
from tether.core.resume import load_record, to_record
from tether.core.runner import Runner
from tether.core.session import Services, Session


class Harness:
    """A session fed frames directly; its answers collected by submit id."""

    def __init__(self, app: App, settings: Settings | None = None) -> None:
        settings = settings or Settings()
        self.runner = Runner(settings)
        self.gates: dict[Function, Gate] = {}
        self.frames: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        executor = Executor(self.runner, max_state_bytes=settings.max_state_bytes)
        services = Services(app, settings, executor, self._gate)
        self.session = Session(services, self)

    def _gate(self, function: Function) -> Gate:
        return self.gates.setdefault(function, Gate(None, 100, 0.25))

    def request_close(self, code: int, reason: str) -> None:
        pass

    def send(self, frame: bytes) -> None:
        self.frames.append(orjson.loads(frame))
        self.arrived.set()

    def receive(self, message: dict[str, Any]) -> None:
        self.session.receive(orjson.dumps(message))

    async def answer(self, id: Any) -> dict[str, Any]:
        """The result or error of submit ``id`` (waits at most ten seconds)."""
        async with asyncio.timeout(10):
            while True:
                for frame in self.frames:
                    if frame["type"] in ("result", "error") and frame["id"] == id:
                        return frame
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def harness() -> AsyncIterator[Any]:
    made: list[Harness] = []

    def make(app: App, settings: Settings | None = None) -> Harness:
        made.append(Harness(app, settings))
        return made[-1]

    yield make
    for h in made:
        await h.session.close()
        h.runner.close()


def submit(id: Any, fn: str, *data: Any) -> dict[str, Any]:
    return {"type": "submit", "id": id, "fn": fn, "data": list(data)}


async def test_a_submit_cancelled_in_the_very_tick_it_arrived_still_gets_its_answer(harness):
    app = App()

    @app.function(inputs=["number", "state"], outputs=["number", "state"])
    async def add(n, total=0):
        await asyncio.sleep(0.01)
        return total + n, total + n

    h = harness(app)
    # Both frames are handled before the submit's task has taken a single step.
    h.receive(submit(1, "add", 5))
    h.receive({"type": "cancel", "id": 1})
    answer = await h.answer(1)
    assert (answer["type"], answer.get("code")) == ("error", "cancelled")
    assert h.session.tasks == {}
    # Its state slot was handed on: the next submit runs, from the untouched state.
    h.receive(submit(2, "add", 7))
    assert (await h.answer(2))["data"] == [7]


async def test_cancelling_a_submit_that_waits_lets_no_later_one_overtake_the_running_one(
    harness,
):
    app = App()
    release = threading.Event()

    @app.function(inputs=["text", "state"], outputs=["json", "state"])
    def append(item, items=[]):  # noqa: B006 -- copied per session
        if item == "slow":
            assert release.wait(10)
        items = [*items, item]
        return items, items

    h = harness(app)
    h.receive(submit(1, "append", "slow"))
    h.receive(submit(2, "append", "cancelled"))
    h.receive(submit(3, "append", "last"))
    await asyncio.sleep(0.05)  # 1 runs; 2 waits for it, 3 for 2
    h.receive({"type": "cancel", "id": 2})
    assert (await h.answer(2))["code"] == "cancelled"
    await asyncio.sleep(0.05)  # time in which 3 must not start
    release.set()
    assert (await h.answer(1))["data"] == [["slow"]]
    assert (await h.answer(3))["data"] == [["slow", "last"]]


async def test_a_submit_the_sessions_end_cancels_before_it_ran_still_gets_shutting_down(harness):
    app = App()

    @app.function(inputs=["number"], outputs=["number"])
    async def double(n):
        return 2 * n

    h = harness(app)
    # The session ends in the very tick the submit arrived: its task never takes a step.
    h.receive(submit(1, "double", 5))
    await h.session.close()
    answer = await h.answer(1)
    assert (answer["type"], answer.get("code")) == ("error", "shutting_down")
    assert not h.session.tasks  # nothing left behind


async def test_a_stateful_submit_the_sessions_end_stops_before_it_ran_leaves_its_slot_free(
    harness,
):
    app = App()
    ran: list[str] = []

    @app.function(inputs=["text", "state"], outputs=["text", "state"])
    async def note(text, seen=[]):  # noqa: B006
        ran.append(text)
        seen.append(text)
        return text, seen

    h = harness(app)
    h.receive(submit(1, "note", "first"))
    h.receive(submit(2, "note", "second"))  # waits for the first on the slot
    await h.session.close()
    for id in (1, 2):
        answer = await h.answer(id)
        assert (answer["type"], answer.get("code")) == ("error", "shutting_down")
    assert ran == []  # neither ran
    assert not h.session.tasks
    order = h.session._order
    assert order is not None and order.busy() == 0  # the turns were given back


def test_the_shared_empty_default_refuses_entries():
    with pytest.raises(TypeError):
        NO_ENTRIES["x"] = None
    with pytest.raises(TypeError):
        NO_ENTRIES.setdefault("x")
    with pytest.raises(TypeError):
        NO_ENTRIES.update(x=None)
    assert NO_ENTRIES.pop("x", None) is None and "x" not in NO_ENTRIES and not NO_ENTRIES


def counter_app() -> App:
    app = App()

    @app.function(inputs=["number", "state"], outputs=["number", "state"])
    async def add(n, total=0):
        await asyncio.sleep(0)
        return total + n, total + n

    return app


async def test_a_session_writing_its_state_gets_dicts_of_its_own_and_reads_them_back(harness):
    app = counter_app()
    budget = Settings(max_state_bytes=1 << 20)  # so that sizes are kept in state_bytes
    writer, idle = harness(app, budget), harness(app, budget)
    # Idle sessions share one empty dict per purpose (per-session memory)...
    for name in ("state", "state_bytes", "tasks"):
        assert getattr(writer.session, name) is getattr(idle.session, name) is NO_ENTRIES
    writer.receive(submit(1, "add", 5))
    assert list(writer.session.tasks) == [1] and idle.session.tasks == {}
    assert (await writer.answer(1))["data"] == [5]
    writer.receive(submit(2, "add", 7))
    assert (await writer.answer(2))["data"] == [12]  # its state, read back
    # ... and one that writes has its own: nothing of it shows in another session.
    assert list(writer.session.state.values()) == [12]
    assert list(writer.session.state_bytes.values()) == [state_size(12)]
    for name in ("state", "state_bytes", "tasks"):
        assert getattr(writer.session, name) is not NO_ENTRIES
        assert getattr(idle.session, name) == {}
    assert NO_ENTRIES == {}
    idle.receive(submit(1, "add", 1))
    assert (await idle.answer(1))["data"] == [1]


async def test_a_session_resumed_from_a_record_has_the_records_state_and_no_other(harness):
    app = counter_app()
    first, resumed, other = harness(app), harness(app), harness(app)
    first.receive(submit(1, "add", 5))
    await first.answer(1)
    load_record(resumed.session, app, to_record(first.session))
    assert resumed.session.state is not first.session.state
    resumed.receive(submit(2, "add", 1))
    assert (await resumed.answer(2))["data"] == [6]
    assert first.session.state != resumed.session.state and other.session.state == {}


async def test_an_end_hook_may_write_the_state_of_a_session_that_never_had_any(harness):
    app = App()
    seen = State(0, name="seen")
    kept: list[dict[Any, Any]] = []

    @app.on_session_end
    async def ended(session):
        session.state[seen] = session.state.get(seen, 0) + 1
        kept.append(dict(session.state))

    h, other = harness(app), harness(app)
    await h.session.close()
    assert kept == [{seen: 1}] and other.session.state == {} and NO_ENTRIES == {}


async def test_a_new_session_has_its_whole_burst_and_a_resumed_one_a_new_one(harness):
    h = harness(App(), Settings(submit_rate=0.001, submit_burst=3))
    await asyncio.sleep(0.01)  # a bucket made at the session's start would be as full

    def pings() -> list[str]:
        h.frames.clear()
        for _ in range(4):
            h.receive({"type": "ping"})
        return [f.get("code", f["type"]) for f in h.frames]

    assert pings() == ["pong", "pong", "pong", "rate_limited"]
    h.session.attach(h, deltas=False)
    assert pings() == ["pong", "pong", "pong", "rate_limited"]


async def test_a_function_that_only_writes_a_slot_gives_its_session_a_state_of_its_own(harness):
    app = App()
    last = State(None, name="last")

    @app.function(inputs=["number"], outputs=[last])
    async def remember(n):
        return n

    @app.function(inputs=[last], outputs=["number"])
    async def recall(n):
        return n

    h, other = harness(app), harness(app)
    h.receive(submit(1, "remember", 3))
    assert (await h.answer(1))["type"] == "result"
    h.receive(submit(2, "recall"))
    assert (await h.answer(2))["data"] == [3]
    assert h.session.state == {last: 3} and other.session.state == {}


async def test_a_closed_sessions_journaled_state_keeps_no_reference_cycles(harness):
    app = App()

    @app.function(inputs=["text", "state"], outputs=["text", "state"])
    def note(text, seen=[]):  # noqa: B006
        seen.append([text, text.upper()])
        return text, seen

    h = harness(app)
    for id in (1, 2):
        h.receive(submit(id, "note", f"turn {id}"))
        assert (await h.answer(id))["type"] == "result"
    [history] = h.session.state.values()
    assert history[0]._up is history and history._j.events  # cycles, while it is state
    await h.session.close()
    assert all(pair._up is None for pair in history)  # freed by reference counting
    assert not history._j.events
    assert history == [["turn 1", "TURN 1"], ["turn 2", "TURN 2"]]
