"""Sessions: one per WebSocket connection, holding its state and dispatching its messages.

A ``Session`` reads the client's frames (``receive``), refuses what it must
(rate, size of the backlog, unknown functions, bad arguments, full queues)
with a structured error, and runs each admitted submit as a task: in its
turn among the submits that touch the same state slots (``ordering``), under
its function's concurrency gate (``gates``), through the server's
``Executor`` (``execution``: snapshot, call, rollback). Its final frame is
sent and kept for a resume (``resume.ResultLog``). Its topics are the
``subscriptions`` mixin's. The session outlives its connection only while parked
for a resume.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from collections.abc import Callable, Coroutine
from inspect import CORO_CREATED, getcoroutinestate
from typing import Any, Protocol

from ..app import App, Function, State
from ..app.journal import dissolve
from ..errors import BadValue, QueueFull, RemoteProtocolError
from ..protocol import (
    Cancel,
    Close,
    Code,
    DeltaEncoder,
    Ping,
    Submit,
    SubmitId,
    Subscribe,
    Unsubscribe,
    decode_client,
    encode_error,
    encode_pong,
    encode_rejection,
    peek_id,
)
from .admission import FloodControl, message_cost
from .gates import Gate
from .hub import NO_ENTRIES
from .ordering import SlotOrder, Turn
from .resume import ResultLog
from .services import Services
from .subscriptions import Subscriptions

__all__ = ["Peer", "Services", "Session", "new_session_id"]

log = logging.getLogger("tether.session")


class Peer(Protocol):
    """The connection a session talks through (``server.outbox.Connection``). The
    session keeps the object itself: a bound method kept would be per-session memory."""

    def send(self, frame: bytes) -> None:
        """Queue ``frame`` to the client; never blocks."""

    def request_close(self, code: int, reason: str) -> None:
        """Close the connection with ``code`` (after the message being handled)."""


class _Detached:
    """The peer of a session whose connection dropped: what it sends goes nowhere."""

    __slots__ = ()

    def send(self, frame: bytes) -> None:
        return None

    def request_close(self, code: int, reason: str) -> None:
        return None


_DETACHED = _Detached()


def new_session_id() -> str:
    """An unguessable session id (128 bits of randomness)."""
    return secrets.token_urlsafe(16)


class Session(Subscriptions):
    """The state, in-flight submits and subscriptions of one connection."""

    # Slots: one Session per connection, so its size is per-session memory.
    __slots__ = (
        "__weakref__",
        "_cancelling",
        "_ended",
        "_flood",
        "_order",
        "_peer",
        "_services",
        "client",
        "closed",
        "deltas",
        "id",
        "identity",
        "last_active",
        "on_commit",
        "results",
        "resume_token",
        "state",
        "state_bytes",
        "tasks",
        "topics",
    )

    def __init__(
        self,
        services: Services,
        peer: Peer,
        *,
        deltas: bool = False,
        id: str | None = None,
        client: str | None = None,
        identity: Any = None,
    ) -> None:
        self.id = id or new_session_id()
        self.resume_token = secrets.token_urlsafe(16)
        self._services = services
        self._peer = peer
        self.client = client
        self.identity = identity
        self.deltas = DeltaEncoder() if deltas else None
        # (Per-session memory: the dicts start as one shared read-only empty dict, each
        # replaced by one of its own before its first write, see own_state; dicts as
        # ordered sets; the rest is made when first needed.)
        self.state: dict[State, Any] = NO_ENTRIES
        # Each slot's size as last measured, for the state budget (execution.py).
        self.state_bytes: dict[State, int] = NO_ENTRIES
        self.tasks: dict[SubmitId, asyncio.Task[None]] = NO_ENTRIES
        self._cancelling: dict[SubmitId, None] = NO_ENTRIES
        self.topics: dict[str, None] = NO_ENTRIES
        self._order: SlotOrder | None = None
        self.results: ResultLog | None = None
        # Called with every finished submit's final frame instead of sending it (a
        # shared store saves the session, then sends the frame).
        self.on_commit: Callable[[Session, bytes], None] | None = None
        self.closed = False
        self._ended = False
        self.last_active = services.loop.time()
        # Made at the first message: a new bucket is full, and stays full while unused.
        self._flood: FloodControl | None = None

    @property
    def app(self) -> App:
        return self._services.app

    @property
    def attached(self) -> bool:
        """Is a connection attached (not parked for a resume)?"""
        return self._peer is not _DETACHED

    # -- state -------------------------------------------------------------------

    def get(self, slot: State) -> Any:
        """This session's value of ``slot`` (created from its default on first use)."""
        try:
            return self.state[slot]
        except KeyError:
            self.own_state()
            value = self.state[slot] = slot.initial()
            return value

    def own_state(self) -> None:
        """Give the session dicts of its own for ``state`` and ``state_bytes`` (they start
        as the shared ``NO_ENTRIES``, which refuses writes): call it before writing them."""
        if self.state is NO_ENTRIES:
            self.state = {}
        if self.state_bytes is NO_ENTRIES:
            self.state_bytes = {}

    def publish(self, topic: str, data: Any, retain: bool = False) -> None:
        self._services.app.publish(topic, data, retain=retain)

    def call_on_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn`` on the session's loop: now if we are on it, else as soon as possible."""
        services = self._services
        if threading.get_ident() == services.loop_thread:
            fn(*args)
        else:
            services.loop.call_soon_threadsafe(fn, *args)

    def result_log(self) -> ResultLog:
        if self.results is None:
            s = self._services.settings
            self.results = ResultLog(s.resume_results, s.resume_result_bytes)
        return self.results

    # -- incoming frames ---------------------------------------------------------

    def receive(self, payload: str | bytes) -> None:
        """Handle one text frame from the client. Never raises for bad input."""
        flood = self._flood
        if flood is None:
            flood = self._flood = self._new_flood()
        elif flood.flooded:
            return
        services = self._services
        settings = services.settings
        now = self.last_active = services.loop.time()
        unit = settings.message_cost_bytes
        cost = message_cost(payload, unit) if unit and len(payload) >= unit else 1.0
        if not flood.take(now, cost):
            self._rate_limited(flood, payload, now, cost)
            return
        try:
            message = decode_client(
                payload,
                max_id_length=settings.max_id_length,
                max_topic_length=settings.max_topic_length,
                max_depth=settings.max_message_depth,
            )
        except RemoteProtocolError as exc:
            services.refused(exc.code)
            self._peer.send(encode_rejection(exc))
            return
        kind = type(message)
        if kind is Submit:
            self.submit(message)  # type: ignore[arg-type]
        elif kind is Ping:
            self._peer.send(encode_pong())
        elif kind is Cancel:
            self.cancel(message.id)  # type: ignore[union-attr]
        elif kind is Subscribe:
            self.subscribe(message.topic)  # type: ignore[union-attr]
        elif kind is Unsubscribe:
            self.unsubscribe_server_side(message.topic)  # type: ignore[union-attr]

    def _refuse(self, id: SubmitId | None, code: str, message: str, **extra: Any) -> None:
        """Answer a message with an error before anything ran (and count it)."""
        self._services.refused(code)
        self._peer.send(encode_error(id, code, message, **extra))

    def admit_frame(self, size: int) -> bool:
        """Charge a WebSocket ping, pong or binary frame of ``size`` bytes to the
        session's flood control, as a message; False when it is over the rate (it gets
        no answer) and the connection is then closed if the session keeps flooding."""
        flood = self._flood
        if flood is None:
            flood = self._flood = self._new_flood()
        elif flood.flooded:
            return False
        unit = self._services.settings.message_cost_bytes
        cost = 1.0 + size // unit if unit else 1.0
        now = self._services.loop.time()
        if flood.take(now, cost):
            return True
        self._strike(flood, now, cost)
        return False

    def _new_flood(self) -> FloodControl:
        s = self._services.settings
        return FloodControl(s.submit_rate, s.submit_burst, s.flood_limit, self.last_active)

    def _strike(self, flood: FloodControl, now: float, cost: float) -> bool:
        """Count a rate-limited frame; close the connection when it is one too many."""
        if flood.strike(now, cost):
            return True
        log.warning("closing session %s: it keeps flooding", self.id)
        services = self._services
        if services.metrics is not None:
            services.metrics.closed["flooding"] += 1
        self._peer.request_close(Close.POLICY_VIOLATION, "flooding: too many messages")
        return False

    def _rate_limited(
        self, flood: FloodControl, payload: str | bytes, now: float, cost: float
    ) -> None:
        services = self._services
        if not self._strike(flood, now, cost):
            return
        # At least 1 ms: "retry after 0 s" would read as "no need to wait".
        retry = max(0.001, round(flood.retry_after(), 3))
        rate = services.settings.submit_rate
        self._refuse(
            peek_id(payload, services.settings.message_cost_bytes or 1 << 16),
            Code.RATE_LIMITED,
            f"over {rate:g} messages/s; retry after {retry} s",
            retry_after=retry,
        )

    def submit(self, msg: Submit) -> None:
        """Admit a submit (or refuse it at once) and schedule it."""
        results = self.results
        if results is not None and results.replaying:
            # A resumed session: a re-sent id is answered, never run twice.
            stored = results.answer(msg.id)
            if stored is not None:
                self._peer.send(stored)
                return
            if results.still_running(msg.id) and msg.id in self.tasks:
                return  # still running: its answer goes to the new connection
        services = self._services
        function = services.app.functions.get(msg.fn)
        if function is None:
            self._refuse(msg.id, Code.UNKNOWN_FN, f"no function named {msg.fn[:64]!r}")
            return
        if msg.id in self.tasks:
            self._refuse(msg.id, Code.DUPLICATE_ID, f"submit {msg.id!r} is still in flight")
            return
        if self.closed:
            self._refuse(msg.id, Code.SHUTTING_DOWN, "the session is closing")
            return
        limit = services.settings.max_pending_per_session
        if len(self.tasks) >= limit:
            self._refuse(
                msg.id,
                Code.TOO_MANY_PENDING,
                f"this session already has {len(self.tasks)} submits in flight "
                f"(the limit is {limit}); wait for some results",
            )
            return
        try:
            args = function.check_arguments(msg.data)
        except BadValue as exc:
            self._refuse(msg.id, Code.BAD_ARGUMENTS, str(exc))
            return
        gate = services.gate(function)
        if gate.full():
            services.refused(Code.QUEUE_FULL)
            self._peer.send(gate.refusal(msg.id, function.name))
            return
        turn = None
        if function.slots:
            self.own_state()  # the executor writes them
            order = self._order
            if order is None:
                order = self._order = SlotOrder()
            turn = order.claim(function.slots, services.loop)
        task = services.loop.create_task(self._run(msg.id, function, args, gate, turn))
        if self.tasks is NO_ENTRIES:
            self.tasks = {}
        self.tasks[msg.id] = task
        # Nothing cancels a task before its first step (which is what runs _run's
        # cleanup): ``cancel`` defers, ``close`` lets unstarted ones start and stop.

    def cancel(self, id: SubmitId) -> None:
        """Cancel a queued or running submit; unknown or finished ids are ignored."""
        task = self.tasks.get(id)
        if task is None or id in self._cancelling:
            return
        self._cancelling = self._cancelling or {}  # (its own, not the shared NO_ENTRIES)
        self._cancelling[id] = None
        # Not task.cancel() at once: a task cancelled before its first step never
        # enters _run, so its submit would get no answer and keep its state slots.
        # Its first step is already scheduled, so this runs after it.
        self._services.loop.call_soon(task.cancel)

    # -- running a submit --------------------------------------------------------

    async def _run(
        self, id: SubmitId, function: Function, args: list[Any], gate: Gate, turn: Turn | None
    ) -> None:
        services = self._services
        start = services.loop.time()
        outcome: str = Code.INTERNAL
        try:
            if self._ended:
                raise asyncio.CancelledError  # the session ended before this first step
            if turn is not None and turn[1]:
                await SlotOrder.wait(turn)
            key = self.id  # fairness between sessions: per-session caps, round robin
            if not gate.try_acquire(key):
                await gate.wait(id, self._peer.send, key)
            try:
                frame, outcome = await services.executor.execute(self, id, function, args)
            finally:
                gate.release(key)
            self._finish(id, frame)
        except QueueFull:
            outcome = Code.QUEUE_FULL
            # Not kept for a resume: it never ran, so running a re-send is right.
            self._peer.send(gate.refusal(id, function.name))
        except asyncio.CancelledError:
            if id in self._cancelling and not self._ended:
                outcome = Code.CANCELLED
                self._finish(id, encode_error(id, Code.CANCELLED, "cancelled by the client"))
                return  # our own cancellation: it ends here
            outcome = Code.SHUTTING_DOWN
            self._peer.send(encode_error(id, Code.SHUTTING_DOWN, "the session ended before it ran"))
            raise
        except Exception:
            log.exception("internal error while running %s", function.name)
            self._peer.send(encode_error(id, Code.INTERNAL, "internal server error"))
        finally:
            del self.tasks[id]
            self._cancelling.pop(id, None)
            if services.metrics is not None:
                services.metrics.finished(function.name, outcome, services.loop.time() - start)
            if turn is not None and self._order is not None:
                self._order.release(turn)

    def _finish(self, id: SubmitId, frame: bytes) -> None:
        """Send a submit's final frame, and keep it for a resume (bounded)."""
        results = self.results
        if results is None:
            if self._services.settings.resume_grace <= 0:
                self._peer.send(frame)
                return
            results = self.result_log()
        results.record(id, frame)
        if self.on_commit is None:
            self._peer.send(frame)
        else:
            self.on_commit(self, frame)

    def deliver(self, frame: bytes) -> None:
        """Send ``frame`` to the connection attached now (if any)."""
        self._peer.send(frame)

    # -- connection changes ------------------------------------------------------

    def detach(self) -> None:
        """The connection dropped: keep running, remember results, send nothing."""
        self._peer = _DETACHED

    def attach(self, peer: Peer, *, deltas: bool) -> None:
        """A resumed connection takes over this session (under a new resume token)."""
        self.resume_token = secrets.token_urlsafe(16)
        self._peer = peer
        self.deltas = DeltaEncoder() if deltas else None  # the client starts over too
        self.result_log().resumed(set(self.tasks))
        self.last_active = self._services.loop.time()
        self._flood = None  # a new bucket, at the first message

    # -- end ---------------------------------------------------------------------

    async def close(self, *, run_hooks: bool = True) -> None:
        """End the session: drop its queued submits, cancel running ones, leave every
        topic, then run the end hooks once."""
        if self._ended:
            return
        self._ended = True
        self.closed = True
        services = self._services
        if services.hub is not None:
            services.hub.drop(self)
        tasks = list(self.tasks.values())
        for task in tasks:
            # One not started yet is not cancelled (its coroutine would never run, nor
            # its cleanup): its first step sees the session ended and answers so.
            if not _unstarted(task):
                task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if run_hooks:
            if services.app.session_end_hooks:
                self.own_state()  # a hook may write it
            for hook in services.app.session_end_hooks:
                await services.executor.runner.call_hook(hook, self)
        for value in self.state.values():
            dissolve(value)  # journaled state is freed now, not by the cyclic collector

    async def drain(self, grace: float) -> None:
        """Stop admitting submits and wait up to ``grace`` seconds for in-flight ones."""
        self.closed = True
        tasks = list(self.tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=grace)


def _unstarted(task: asyncio.Task[None]) -> bool:
    """Whether ``task``'s coroutine has not begun (its first step is still scheduled)."""
    coro = task.get_coro()
    return isinstance(coro, Coroutine) and getcoroutinestate(coro) == CORO_CREATED
