"""``ClosedLoop``: one conversation of the closed loop, driven from its replies.

On a connection that ``sends_now`` (picows), a reply's callback judges the reply
and sends the conversation's next submit at once, from the read of the reply's
frame: no future, no task wake-up, no coroutine between one submit and the
next (what a task per user costs is a good part of a generator's budget). A
``Wait`` leaves the callbacks for a task until it is over. Connections that
must await their sends (aiohttp) run the driver's coroutine loop instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterator
from typing import Protocol

from ..protocol import Result
from .config import Config
from .replies import Connection, ConnectionLost, Reply
from .scenario import Step, Wait
from .stats import Meter

__all__ = ["ClosedLoop", "Driver"]


class Driver(Protocol):
    """What a conversation asks of the driver (``LoadTest``)."""

    stopping: bool
    meter: Meter
    config: Config

    def _answered(self, conn: Connection, step: Step, reply: Reply, t0: float) -> None: ...

    def _lost(self, conn: Connection, step: Step, why: str) -> None: ...

    def _wait(self, conn: Connection, wait: Wait) -> Awaitable[bool]: ...


class ClosedLoop:
    """Runs ``steps`` on ``conn`` one submit at a time; ``done`` resolves when it is over
    (the steps ran out, the driver stops, the connection closed), or holds what the
    scenario raised. ``cancel`` abandons the submit in flight (counted as lost)."""

    __slots__ = (
        "checking", "conn", "done", "driver", "finished", "meter", "step", "steps", "t0",
        "waiting",
    )  # fmt: skip

    def __init__(self, driver: Driver, conn: Connection, steps: Iterator[Step | Wait]) -> None:
        self.driver = driver
        self.meter = driver.meter
        self.checking = driver.config.check
        self.conn = conn
        self.steps = steps
        self.step: Step | None = None  # the step in flight
        self.t0 = 0.0
        self.finished = False
        self.waiting: asyncio.Task[None] | None = None  # a Wait's task (kept: tasks are weak)
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def start(self) -> asyncio.Future[None]:
        self._next()
        return self.done

    def _finish(self, exc: BaseException | None = None) -> None:
        self.finished = True
        self.step = None
        if not self.done.done():
            if exc is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(exc)

    def _next(self) -> None:
        driver, conn = self.driver, self.conn
        try:
            if driver.stopping or conn.closed:
                return self._finish()
            step = next(self.steps, None)
            if type(step) is Step:
                self.step = step
                self.t0 = time.perf_counter()
                if step.sent is not None:
                    step.sent(time.perf_counter())
                conn.submit_then(step.fn, step.data, self._reply)
            elif step is None:
                return self._finish()
            else:
                assert type(step) is Wait
                self.waiting = asyncio.get_running_loop().create_task(self._wait(step))
        except ConnectionLost:
            if self.step is not None:
                driver._lost(conn, self.step, "its connection closed")
            self._finish()
        except BaseException as exc:  # the scenario's: the driver's task re-raises it
            self._finish(exc)
        return None

    def _reply(self, reply: Reply | None) -> None:
        step = self.step
        if self.finished or step is None:
            return
        self.step = None
        if reply is None:
            self.driver._lost(self.conn, step, "its connection closed")
            return self._finish()
        if type(reply) is Result and step.done is None and not self.checking:
            # The hot path: driver._answered for a result nobody checks, inlined.
            tick = self.meter.tick
            tick.latency.record(int((time.perf_counter() - self.t0) * 1_000_000))
            tick.ok += 1
        else:
            try:
                self.driver._answered(self.conn, step, reply, self.t0)
            except BaseException as exc:
                return self._finish(exc)
        self._next()
        return None

    async def _wait(self, wait: Wait) -> None:
        self.step = None
        try:
            if not await self.driver._wait(self.conn, wait):
                return self._finish()
        except BaseException as exc:
            return self._finish(exc)
        if not self.finished:
            self._next()
        return None

    def cancel(self) -> None:
        """The driver gave up waiting (the drain timeout): the submit in flight is lost."""
        if self.step is not None and not self.finished:
            self.driver._lost(self.conn, self.step, "no reply before the drain timeout")
        if self.waiting is not None:
            self.waiting.cancel()
        self._finish()
