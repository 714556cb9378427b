"""Fair per-function queues on a real server (issue 12, item 6): one session's
backlog cannot take a limited function away from the others: waiting sessions
are served round robin, and one session holds at most `max_running_per_session`
of a function's slots."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import tether
from tether import App


def permit_app(limit: int) -> tuple[App, list[str], threading.Semaphore]:
    """``work(tag)`` records that it started, then runs until the test gives it a permit."""
    app = App()
    started: list[str] = []
    permits = threading.Semaphore(0)

    @app.function(inputs="text", outputs="text", concurrency_limit=limit)
    def work(tag):
        started.append(tag)
        if not permits.acquire(timeout=10):
            raise TimeoutError("the test gave no permit")
        return tag

    return app, started, permits


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"not in time: {what}"
        await asyncio.sleep(0.01)


async def test_a_second_session_is_served_before_the_first_sessions_backlog_drains(serve_app):
    app, started, permits = permit_app(limit=2)
    srv = serve_app(app)  # max_running_per_session 4: above the limit, only round robin acts

    def waiting() -> Any:
        return srv.call(lambda: srv.server.gauges()["functions"]["work"][1])

    async with tether.connect(srv.ws_url) as flooder, tether.connect(srv.ws_url) as other:
        backlog = [await flooder.start("work", f"a{i}") for i in range(20)]
        await until(lambda: len(started) == 2 and waiting() == 18, "a0, a1 run, 18 wait")
        mine = await other.start("work", "b")
        await until(lambda: waiting() == 19, "b waits too")
        permits.release()  # a0 finishes: its slot goes to the other session, not to a2
        await until(lambda: len(started) == 3, "the freed slot is taken")
        assert started[2] == "b", started
        permits.release(21)
        assert await asyncio.wait_for(mine.result(), 10) == ["b"]
        results = await asyncio.wait_for(asyncio.gather(*(c.result() for c in backlog)), 10)
        assert results == [[f"a{i}"] for i in range(20)]  # FIFO within the session
        assert started[:2] == ["a0", "a1"] and started[3:] == [f"a{i}" for i in range(2, 20)]


async def test_one_session_holds_at_most_its_share_of_a_functions_slots(serve_app):
    app, started, permits = permit_app(limit=6)
    srv = serve_app(app)  # max_running_per_session: 4 by default
    async with tether.connect(srv.ws_url) as flooder, tether.connect(srv.ws_url) as other:
        backlog = [await flooder.start("work", f"a{i}") for i in range(8)]
        await until(lambda: len(started) >= 4, "the flooder's share runs")
        await asyncio.sleep(0.2)  # (two slots are free: nothing else of the flooder's starts)
        assert started == ["a0", "a1", "a2", "a3"]
        mine = [await other.start("work", f"b{i}") for i in range(3)]
        await until(lambda: len(started) == 6, "the other session takes the free slots")
        assert sorted(started[4:]) == ["b0", "b1"]
        permits.release(11)
        assert await asyncio.wait_for(asyncio.gather(*(c.result() for c in mine)), 10) == [
            ["b0"],
            ["b1"],
            ["b2"],
        ]
        results = await asyncio.wait_for(asyncio.gather(*(c.result() for c in backlog)), 10)
        assert results == [[f"a{i}"] for i in range(8)]
