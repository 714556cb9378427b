"""``LoadTest``: the simulated users of one generator process, from start to drain.

Users start over ``--ramp`` seconds; each runs its scenario in a closed loop
(send, wait for the reply, send the next) or, with ``--rate``, in an open
loop where submits leave on a fixed schedule whatever the replies do and
latency counts from the scheduled time. Built-in scenarios run on the
connections of the ``--client`` stack (``stacks``: ``PicowsConnection`` or
``LeanConnection``), a fresh one per conversation; custom scenario files on
``tether.Client`` s, wrapped in a ``MeasuredClient``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections.abc import Callable, Generator, Iterator
from types import ModuleType
from typing import Any, Final

from ..errors import TetherError
from ..protocol import Code, Error, Event, Partial, Result, ServerMessage
from .closed_loop import ClosedLoop
from .config import Config
from .custom import MeasuredClient, load_scenario_file
from .histogram import micros
from .replies import ID_RANGE, Connection, ConnectionLost, Reply
from .scenario import Function, Options, Scenario, Step, Wait, functions_of, missing_function
from .scenarios import SCENARIOS, default_rooms
from .stacks import Opener, open_stack
from .stats import PROGRESS_INTERVAL, Meter, Stats

__all__ = ["LoadTest", "Report"]

# Open loop: submits one simulated user may have in flight before it waits.
MAX_IN_FLIGHT_PER_USER: Final = 64
RECONNECT_BACKOFF: Final = (0.05, 1.0)

Report = Callable[[str, Any], None]
"""Where a generator process reports: ``report("tick", Tick)`` every ``PROGRESS_INTERVAL``."""


class LoadTest:
    """The users of one generator process: those whose index ``% procs == proc``."""

    def __init__(self, config: Config, proc: int, start_at: float, report: Report) -> None:
        self.config = config
        self.proc = proc
        self.report = report
        self.meter = Meter()
        self.stats = self.meter.stats
        self.connected = 0
        self.opened = 0
        # start_at is wall-clock time shared by all processes; work in monotonic time.
        self.start = time.monotonic() + max(0.0, start_at - time.time())
        self.end = self.start + config.duration
        self.stopping = False
        self.indexes = range(proc, config.users, config.procs)
        self.scenario: Scenario | None = None
        self.custom: ModuleType | None = None
        self.functions: tuple[Function, ...] = ()
        if config.scenario in SCENARIOS:
            rooms = config.rooms if config.rooms is not None else default_rooms(config.users)
            options = Options(
                turns=config.turns,
                rooms=min(rooms, config.users),
                check=config.check,
                run_id=config.run_id,
                mix=config.mix,
            )
            self.scenario = SCENARIOS[config.scenario](options)
        else:
            self.custom = load_scenario_file(config.scenario)
        # Open loop: the seconds between two submits of one user.
        self.interval = config.users / config.rate if config.rate else 0.0

    # -- bookkeeping ---------------------------------------------------------

    def _first_id(self) -> int:
        """The start of a fresh id range, unique over all generator processes."""
        number = self.proc + self.config.procs * self.opened
        self.opened += 1
        return (number + 1) * ID_RANGE

    def _start_of(self, index: int) -> float:
        if self.config.users <= 1:
            return self.start
        return self.start + self.config.ramp * index / self.config.users

    # -- running ---------------------------------------------------------------

    async def run(self) -> Stats:
        # Processes start together at ``start``; measure from there, not from spawning.
        await asyncio.sleep(max(0.0, self.start - time.monotonic()))
        cpu0, wall0 = time.process_time(), time.monotonic()
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, self._stop_now)
            handles_sigint = True
        except (NotImplementedError, RuntimeError, ValueError):
            handles_sigint = False  # not the main thread: the caller decides
        try:
            return await self._run(loop, cpu0, wall0)
        finally:
            if handles_sigint:
                loop.remove_signal_handler(signal.SIGINT)

    async def _run(self, loop: asyncio.AbstractEventLoop, cpu0: float, wall0: float) -> Stats:
        ticker = loop.create_task(self._ticker())
        async with contextlib.AsyncExitStack() as resources:
            if self.scenario is not None:  # custom scenarios open tether.Client s
                self.opener: Opener = await resources.enter_async_context(
                    open_stack(self.config.client)
                )
                if not await self._bind():
                    self.indexes = range(0)
            run_user = self._run_user if self.scenario is not None else self._run_custom_user
            users = [loop.create_task(run_user(i)) for i in self.indexes]
            if users:
                await asyncio.wait(users, timeout=max(0.0, self.end - time.monotonic()))
            self.stopping = True
            if users:
                _, late = await asyncio.wait(users, timeout=self.config.drain_timeout)
                for task in late:
                    task.cancel()
                await asyncio.gather(*users, return_exceptions=True)
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        self._send_tick()
        if self.scenario is not None:
            self.stats.event_latency.merge(self.scenario.event_latency)
            self.stats.calls.update(self.scenario.calls)
        wall = time.monotonic() - wall0
        self.stats.cpu_seconds = [time.process_time() - cpu0]
        self.stats.wall_seconds = wall
        return self.stats

    async def _bind(self) -> bool:
        """Give the scenario the server's functions (from the command line's welcome, or
        one read now); False, with ``stats.fatal`` set, when it cannot run against them."""
        assert self.scenario is not None
        listed = list(self.config.functions)
        if not listed:
            conn = await self._probe()
            if conn is None:
                if self.scenario.uses:
                    return True  # the demo's scenarios: run, and count the failed connects
                self.stats.fatal = f"could not read the server's welcome at {self.config.url}"
                return False
            listed = conn.welcome.functions
            await conn.close()
        self.functions = functions_of(listed)
        problem = self.scenario.bind(self.functions)
        if problem is not None:
            self.stats.fatal = problem
            return False
        return True

    async def _probe(self) -> Connection | None:
        for attempt in range(3):
            try:
                async with asyncio.timeout(self.config.connect_timeout):
                    return await self.opener(
                        self.config.url, lambda m: None, lambda v: None, self._first_id()
                    )
            except asyncio.CancelledError:
                raise
            except Exception:
                self.meter.error("connect_failed")
                await self._backoff(attempt)
        return None

    def _fatal(self, text: str) -> None:
        """Stop the run at once: it cannot go on (``stats.fatal`` says why)."""
        if self.stats.fatal is None:
            self.stats.fatal = text
        self._stop_now()

    def _stopped(self) -> bool:
        return self.stopping

    def _stop_now(self) -> None:
        self.end = min(self.end, time.monotonic())
        self.stopping = True

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL)
            if time.monotonic() >= self.end:
                self.stopping = True
            self._send_tick()

    def _send_tick(self) -> None:
        self.report("tick", self.meter.take_tick(self.connected))

    async def _sleep_until(self, moment: float) -> None:
        delay = min(moment, self.end) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if time.monotonic() >= self.end:
            self.stopping = True

    async def _pace(self, schedule: list[float]) -> float:
        """Open loop: wait for this user's next slot and return when it was due."""
        due = schedule[0]
        schedule[0] = due + self.interval
        await self._sleep_until(due)
        return due

    async def _backoff(self, attempt: int) -> None:
        low, high = RECONNECT_BACKOFF
        await self._sleep_until(time.monotonic() + min(high, low * 2**attempt))

    # -- built-in scenarios ----------------------------------------------------

    async def _run_user(self, index: int) -> None:
        assert self.scenario is not None
        rng = random.Random(index)
        await self._sleep_until(self._start_of(index))
        schedule = [time.monotonic() + rng.random() * self.interval]
        number = 0
        failures = 0
        while not self.stopping:
            conn = await self._connect(index)
            if conn is None:
                failures += 1
                await self._backoff(failures)
                continue
            failures = 0
            self.connected += 1
            steps = self.scenario.conversation(index, number, rng)
            try:
                if self.interval:
                    await self._converse_open(conn, steps, schedule)
                else:
                    await self._converse_closed(conn, steps)
            finally:
                self.connected -= 1
                # The scenario learns the conversation is over while its session still exists.
                if isinstance(steps, Generator):
                    steps.close()
                await conn.close()
            number += 1

    async def _connect(self, index: int) -> Connection | None:
        assert self.scenario is not None
        scenario = self.scenario

        def on_frame(message: ServerMessage) -> None:
            if type(message) is Event:
                self.stats.events += 1
            elif type(message) is Partial:
                self.stats.partials += 1
            elif type(message) is Error:
                self.meter.error(message.code)
                return
            problem = scenario.on_frame(index, message)
            if problem is not None:
                self.meter.violation(f"user {index}: {problem}")

        def on_violation(text: str) -> None:
            self.meter.violation(f"user {index}: {text}")

        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                conn = await self.opener(self.config.url, on_frame, on_violation, self._first_id())
        except asyncio.CancelledError:
            raise
        except Exception:
            self.meter.error("connect_failed")
            return None
        self.stats.connect.record(micros(time.perf_counter() - t0))
        return conn

    async def _converse_closed(self, conn: Connection, steps: Iterator[Step | Wait]) -> None:
        if conn.sends_now:  # picows: one submit after another from the replies' callbacks
            loop = ClosedLoop(self, conn, steps)
            try:
                await loop.start()
            except asyncio.CancelledError:
                loop.cancel()
                raise
            return
        for step in steps:
            if self.stopping or conn.closed:
                return
            if isinstance(step, Wait):
                if not await self._wait(conn, step):
                    return
            elif not await self._submit(conn, step, time.perf_counter()):
                return

    async def _converse_open(
        self, conn: Connection, steps: Iterator[Step | Wait], schedule: list[float]
    ) -> None:
        in_flight: set[asyncio.Task[bool]] = set()
        loop = asyncio.get_running_loop()
        # perf_counter and monotonic are different clocks; latency counts from the due time.
        offset = time.perf_counter() - time.monotonic()
        try:
            for step in steps:
                if isinstance(step, Wait):
                    if in_flight:
                        await asyncio.gather(*in_flight, return_exceptions=True)
                    if self.stopping or conn.closed or not await self._wait(conn, step):
                        return
                    # The pause is not the server's latency: the schedule resumes from now.
                    schedule[0] = max(schedule[0], time.monotonic())
                    continue
                due = await self._pace(schedule)
                if self.stopping or conn.closed:
                    return
                if len(in_flight) >= MAX_IN_FLIGHT_PER_USER:
                    _, in_flight = await asyncio.wait(in_flight, return_when="FIRST_COMPLETED")
                task = loop.create_task(self._submit(conn, step, due + offset))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
        finally:
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)

    async def _submit(self, conn: Connection, step: Step, t0: float) -> bool:
        """Run one step; False when the connection is gone."""
        if step.sent is not None:
            step.sent(time.perf_counter())
        try:
            reply = await conn.submit(step.fn, step.data)
        except ConnectionLost:
            self._lost(conn, step, "its connection closed")
            return False
        except asyncio.CancelledError:
            self._lost(conn, step, "no reply before the drain timeout")
            raise
        self._answered(conn, step, reply, t0)
        return True

    def _answered(self, conn: Connection, step: Step, reply: Reply, t0: float) -> None:
        """Count a step's reply (and check it, with --check)."""
        if step.done is not None:
            step.done(reply)
        if isinstance(reply, Result):
            self.meter.ok(time.perf_counter() - t0)
            if self.config.check and step.check is not None:
                self.stats.checked += 1
                problem = step.check(reply.data)
                if problem is not None:
                    self.meter.violation(f"session {conn.session[:8]}: {step.fn}: {problem}")
        else:
            self.meter.error(reply.code)
            if reply.code == Code.UNKNOWN_FN:
                names = [f["name"] for f in conn.welcome.functions if isinstance(f, dict)]
                hint = self.scenario is not None and bool(self.scenario.uses)
                self._fatal(missing_function(step.fn, names, hint))
            elif self.config.check and self.scenario is not None:
                problem = self.scenario.judge_error(step, reply)
                if problem is not None:
                    self.meter.violation(f"session {conn.session[:8]}: {problem}")

    def _lost(self, conn: Connection, step: Step, why: str) -> None:
        if step.done is not None:
            step.done(None)
        self.meter.error("lost")
        if self.config.check:
            self.meter.violation(
                f"session {conn.session[:8]}: a {step.fn} submit got no reply: {why}"
            )

    async def _wait(self, conn: Connection, wait: Wait) -> bool:
        """Pause for ``wait`` (at most the drain timeout); False when the connection closed."""
        if not wait.ready.is_set():
            ready = asyncio.ensure_future(wait.ready.wait())
            closed = asyncio.ensure_future(conn.wait_closed())
            try:
                await asyncio.wait(
                    (ready, closed),
                    timeout=self.config.drain_timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                ready.cancel()
                closed.cancel()
        if conn.closed:
            return False
        if not wait.ready.is_set() and self.config.check:
            self.meter.violation(
                f"session {conn.session[:8]}: {wait.missing()} "
                f"(waited {self.config.drain_timeout:g} s)"
            )
        return True

    # -- custom scenarios ----------------------------------------------------

    async def _run_custom_user(self, index: int) -> None:
        assert self.custom is not None
        from ..client import connect  # websockets: only for custom scenarios

        user = self.custom.user
        reconnect = bool(getattr(self.custom, "RECONNECT", False))
        rng = random.Random(index)
        await self._sleep_until(self._start_of(index))
        schedule = [time.monotonic() + rng.random() * self.interval]
        measured: MeasuredClient | None = None
        failures = 0
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while not self.stopping:
                if measured is None:
                    t0 = time.perf_counter()
                    try:
                        async with asyncio.timeout(self.config.connect_timeout):
                            raw = await connect(self.config.url)
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        self.meter.error("connect_failed")
                        failures += 1
                        await self._backoff(failures)
                        continue
                    failures = 0
                    self.stats.connect.record(micros(time.perf_counter() - t0))
                    measured = MeasuredClient(raw, self.meter, self.config.check)
                    self.connected += 1
                if self.interval:
                    await self._pace(schedule)
                    if self._stopped():
                        break
                    if len(in_flight) >= MAX_IN_FLIGHT_PER_USER:
                        _, in_flight = await asyncio.wait(in_flight, return_when="FIRST_COMPLETED")
                    task = asyncio.get_running_loop().create_task(
                        self._call_user(user, measured, index)
                    )
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                else:
                    await self._call_user(user, measured, index)
                    # A scenario that never awaits must not starve the other users.
                    await asyncio.sleep(0)
                if (reconnect and not in_flight) or measured.ws.close_code is not None:
                    if in_flight:
                        await asyncio.gather(*in_flight, return_exceptions=True)
                    self.connected -= 1
                    await measured.close()
                    measured = None
        finally:
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
            if measured is not None:
                self.connected -= 1
                await measured.close()

    async def _call_user(self, user: Any, client: MeasuredClient, index: int) -> None:
        try:
            await user(client, index)
        except TetherError:
            pass  # counted by MeasuredClient
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.meter.error(f"scenario:{type(exc).__name__}")
            if self.config.check:
                self.meter.violation(
                    f"user {index}: the scenario raised {type(exc).__name__}: {exc}"
                )
            await self._backoff(0)
