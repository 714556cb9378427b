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

from tether import App, Settings
from tether.app import Function
from tether.core.execution import Executor
from tether.core.gates import Gate
from tether.core.runner import Runner
from tether.core.session import Services, Session


class Harness:
    """A session fed frames directly; its answers collected by submit id."""

    def __init__(self, app: App) -> None:
        settings = Settings()
        self.runner = Runner(settings)
        self.gates: dict[Function, Gate] = {}
        self.frames: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        services = Services(app, settings, Executor(self.runner), self._gate)
        self.session = Session(services, self._send)

    def _gate(self, function: Function) -> Gate:
        return self.gates.setdefault(function, Gate(None, 100, 0.25))

    def _send(self, frame: bytes) -> None:
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

    def make(app: App) -> Harness:
        made.append(Harness(app))
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


def test_the_shared_empty_default_refuses_entries():
    from tether.core.hub import NO_ENTRIES

    with pytest.raises(TypeError):
        NO_ENTRIES["x"] = None
    with pytest.raises(TypeError):
        NO_ENTRIES.setdefault("x")
    with pytest.raises(TypeError):
        NO_ENTRIES.update(x=None)
    assert NO_ENTRIES.pop("x", None) is None and "x" not in NO_ENTRIES and not NO_ENTRIES
