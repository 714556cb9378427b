"""Sessions: one per WebSocket connection, holding its state and ordering its submits.

Submits that touch the same state slot run one at a time, in arrival order:
each slot has a "tail", the completion future of the last submit that
claimed it, and a new submit waits for the tails of all its slots before it
runs. The claim happens synchronously when the frame is read, so arrival
order is the order of execution. Submits that share no slot do not wait for
each other.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import threading
import traceback
from collections.abc import Callable
from typing import Any

import orjson

from ..app import App, Function, State
from ..app.context import Context, _current
from ..app.state import copy_value
from ..errors import BadValue, LocalProtocolError, QueueFull, RemoteProtocolError, StoreUnavailable
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
    encode_partial,
    encode_pong,
    encode_rejection,
    encode_result,
    encode_subscribed,
)
from ..settings import Settings
from .admission import TokenBucket
from .gates import Gate
from .hub import Hub
from .metrics import Metrics
from .runner import Runner

__all__ = ["Session", "new_session_id"]

log = logging.getLogger("tether.session")

Send = Callable[[bytes], None]


def new_session_id() -> str:
    """An unguessable session id (128 bits of randomness)."""
    return secrets.token_urlsafe(16)


class Session:
    """The state, in-flight submits and subscriptions of one connection."""

    # Slots: one Session per connection, so its size is per-session memory.
    __slots__ = (
        "__weakref__",
        "_bucket",
        "_cancelling",
        "_close_connection",
        "_deltas",
        "_ended",
        "_flooded",
        "_gate",
        "_hub",
        "_inflight_at_resume",
        "_loop",
        "_loop_thread",
        "_metrics",
        "_replay",
        "_results_bytes",
        "_runner",
        "_send",
        "_strikes",
        "_tails",
        "app",
        "attached",
        "client",
        "closed",
        "id",
        "identity",
        "last_active",
        "on_commit",
        "results",
        "resume_token",
        "settings",
        "state",
        "tasks",
        "topics",
    )

    def __init__(
        self,
        app: App,
        runner: Runner,
        settings: Settings,
        send: Send,
        *,
        gate: Callable[[Function], Gate],
        hub: Hub | None = None,
        deltas: bool = False,
        id: str | None = None,
        client: str | None = None,
        identity: Any = None,
        close: Callable[[int, str], None] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.id = id or new_session_id()
        self.resume_token = secrets.token_urlsafe(16)
        # Final frames of recent submits, for answering re-sent ids after a resume.
        # (Per-session memory: dicts, not sets or OrderedDicts, which are bigger
        # when empty; the resume bookkeeping only exists after a resume.)
        self.results: dict[SubmitId, bytes] = {}
        self._results_bytes = 0
        self._replay: dict[SubmitId, bytes] | None = None
        self._inflight_at_resume: set[SubmitId] | None = None
        self.on_commit: Callable[[Session], None] | None = None
        self.attached = True
        self.client = client
        self.identity = identity
        self.app = app
        self.settings = settings
        self._runner = runner
        self._send = send
        self._gate = gate
        self._hub = hub
        self._deltas = DeltaEncoder() if deltas else None
        self.state: dict[State, Any] = {}
        self._tails: dict[State, asyncio.Future[None]] = {}
        self.tasks: dict[SubmitId, asyncio.Task[None]] = {}
        self._cancelling: dict[SubmitId, None] = {}
        self.topics: dict[str, None] = {}
        self.closed = False
        self._ended = False
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._close_connection = close
        self._metrics = metrics
        self._flooded = False
        now = self._loop.time()
        self.last_active = now
        self._bucket = TokenBucket(settings.submit_rate, settings.submit_burst, now)
        # Rate-limited messages forgiven over time; made at the first one (until
        # then it would be full anyway).
        self._strikes: TokenBucket | None = None

    # -- state -----------------------------------------------------------

    def get(self, slot: State) -> Any:
        """This session's value of ``slot`` (created from its default on first use)."""
        try:
            return self.state[slot]
        except KeyError:
            value = self.state[slot] = slot.initial()
            return value

    def send(self, frame: bytes) -> None:
        """Queue a frame to this session's client (the hub's subscriber interface)."""
        self._send(frame)

    def publish(self, topic: str, data: Any) -> None:
        self.app.publish(topic, data)

    def call_on_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn`` on the session's loop: now if we are on it, else as soon as possible."""
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    # -- incoming frames ---------------------------------------------------

    def receive(self, payload: str | bytes) -> None:
        """Handle one text frame from the client. Never raises for bad input."""
        if self._flooded:
            return
        now = self.last_active = self._loop.time()
        if not self._bucket.take(now):
            self._rate_limited(payload, now)
            return
        try:
            message = decode_client(
                payload,
                max_id_length=self.settings.max_id_length,
                max_topic_length=self.settings.max_topic_length,
            )
        except RemoteProtocolError as exc:
            self._count_refused(exc.code)
            self._send(encode_rejection(exc))
            return
        kind = type(message)
        if kind is Submit:
            self.submit(message)  # type: ignore[arg-type]
        elif kind is Ping:
            self._send(encode_pong())
        elif kind is Cancel:
            self.cancel(message.id)  # type: ignore[union-attr]
        elif kind is Subscribe:
            self.subscribe(message.topic)  # type: ignore[union-attr]
        elif kind is Unsubscribe:
            self.unsubscribe_server_side(message.topic)  # type: ignore[union-attr]

    def _count_refused(self, code: str) -> None:
        if self._metrics is not None:
            self._metrics.refused[code] += 1

    def _refuse(self, id: SubmitId, code: str, message: str) -> None:
        """Answer a message with an error before anything ran (and count it)."""
        self._count_refused(code)
        self._send(encode_error(id, code, message))

    def _rate_limited(self, payload: str | bytes, now: float) -> None:
        if self._strikes is None:
            self._strikes = TokenBucket(self.settings.submit_rate, self.settings.flood_limit, now)
        if not self._strikes.take(now):
            self._flooded = True
            log.warning("closing session %s: it keeps flooding", self.id)
            if self._metrics is not None:
                self._metrics.closed["flooding"] += 1
            if self._close_connection is not None:
                self._close_connection(Close.POLICY_VIOLATION, "flooding: too many messages")
            return
        try:
            obj = orjson.loads(payload)
            id = obj.get("id") if type(obj) is dict else None
        except orjson.JSONDecodeError:
            id = None
        retry = round(self._bucket.retry_after(), 3)
        self._count_refused(Code.RATE_LIMITED)
        self._send(
            orjson.dumps(
                {
                    "type": "error",
                    "id": id if type(id) in (int, str) else None,
                    "code": Code.RATE_LIMITED,
                    "message": f"over {self.settings.submit_rate:g} messages/s; "
                    f"retry after {retry} s",
                    "retry_after": retry,
                }
            )
        )

    def submit(self, msg: Submit) -> None:
        """Admit a submit (or refuse it at once) and schedule it."""
        if self._replay or self._inflight_at_resume:
            # A resumed session: a re-sent id is answered, never run twice.
            stored = self._replay.pop(msg.id, None) if self._replay else None
            if stored is not None:
                self._send(stored)
                return
            if self._inflight_at_resume and msg.id in self._inflight_at_resume:
                self._inflight_at_resume.discard(msg.id)
                if msg.id in self.tasks:
                    return  # still running: its answer goes to the new connection
        function = self.app.functions.get(msg.fn)
        if function is None:
            self._refuse(msg.id, Code.UNKNOWN_FN, f"no function named {msg.fn[:64]!r}")
            return
        if msg.id in self.tasks:
            self._refuse(msg.id, Code.DUPLICATE_ID, f"submit {msg.id!r} is still in flight")
            return
        if self.closed:
            self._refuse(msg.id, Code.SHUTTING_DOWN, "the session is closing")
            return
        if len(self.tasks) >= self.settings.max_pending_per_session:
            self._refuse(
                msg.id,
                Code.TOO_MANY_PENDING,
                f"this session already has {len(self.tasks)} submits in flight "
                f"(the limit is {self.settings.max_pending_per_session}); "
                "wait for some results",
            )
            return
        try:
            args = function.check_arguments(msg.data)
        except BadValue as exc:
            self._refuse(msg.id, Code.BAD_ARGUMENTS, str(exc))
            return
        gate = self._gate(function)
        if gate.full():
            self._count_refused(Code.QUEUE_FULL)
            self._send(self._queue_full(msg.id, function, gate))
            return

        waits: list[asyncio.Future[None]] = []
        done: asyncio.Future[None] | None = None
        if function.slots:
            done = self._loop.create_future()
            for slot in function.slots:
                tail = self._tails.get(slot)
                if tail is not None and tail not in waits:
                    waits.append(tail)
                self._tails[slot] = done
        task = self._loop.create_task(self._run(msg.id, function, args, gate, waits, done))
        self.tasks[msg.id] = task
        # A task cancelled before its first step never runs _run's cleanup: do it here.
        task.add_done_callback(functools.partial(self._never_started, msg.id, function, done))

    def _never_started(
        self,
        id: SubmitId,
        function: Function,
        done: asyncio.Future[None] | None,
        task: asyncio.Task[None],
    ) -> None:
        if self.tasks.get(id) is not task:
            return  # _run finished normally and cleaned up
        del self.tasks[id]
        if id in self._cancelling:
            del self._cancelling[id]
            if not self._ended:
                self._finish(id, encode_error(id, Code.CANCELLED, "cancelled by the client"))
        if done is not None and not done.done():
            done.set_result(None)
            for slot in function.slots:
                if self._tails.get(slot) is done:
                    del self._tails[slot]

    def cancel(self, id: SubmitId) -> None:
        """Cancel a queued or running submit; unknown or finished ids are ignored."""
        task = self.tasks.get(id)
        if task is None or id in self._cancelling:
            return
        self._cancelling[id] = None
        # Not task.cancel() at once: a task cancelled before its first step never
        # enters _run, so its submit would get no answer and keep its state slots.
        # Its first step is already scheduled, so this runs after it.
        self._loop.call_soon(task.cancel)

    # -- topics --------------------------------------------------------------

    def subscribe(self, topic: str) -> None:
        """A client's subscription: only to topics the app allows."""
        if not self.app.topic_allowed(topic):
            self._count_refused(Code.FORBIDDEN_TOPIC)
            self._send(_topic_error(topic, Code.FORBIDDEN_TOPIC, "you may not subscribe to it"))
            return
        if topic not in self.topics and len(self.topics) >= self.settings.max_subscriptions:
            self._count_refused(Code.TOO_MANY_SUBSCRIPTIONS)
            self._send(
                _topic_error(
                    topic,
                    Code.TOO_MANY_SUBSCRIPTIONS,
                    f"this session is subscribed to {len(self.topics)} topics, the limit",
                )
            )
            return
        self.subscribe_server_side(topic)

    def subscribe_server_side(self, topic: str) -> None:
        if self._hub is None or self.closed:
            return
        self._hub.subscribe(self, topic)
        self._send(encode_subscribed(topic))

    def unsubscribe_server_side(self, topic: str) -> None:
        if self._hub is not None:
            self._hub.unsubscribe(self, topic)
        self._send(encode_subscribed(topic, subscribed=False))

    # -- execution -----------------------------------------------------------

    async def _run(
        self,
        id: SubmitId,
        function: Function,
        args: list[Any],
        gate: Gate,
        waits: list[asyncio.Future[None]],
        done: asyncio.Future[None] | None,
    ) -> None:
        start = self._loop.time()
        outcome: str = Code.INTERNAL
        try:
            for tail in waits:
                # Shielded: cancelling this submit must not cancel the one it waits for.
                await asyncio.shield(tail)
            if not gate.try_acquire():
                await gate.wait(id, self._send)
            try:
                frame, outcome = await self._execute(id, function, args)
            finally:
                gate.release()
            self._finish(id, frame)
        except QueueFull:
            outcome = Code.QUEUE_FULL
            self._finish(id, self._queue_full(id, function, gate))
        except asyncio.CancelledError:
            if id in self._cancelling and not self._ended:
                outcome = Code.CANCELLED
                self._finish(id, encode_error(id, Code.CANCELLED, "cancelled by the client"))
                return  # our own cancellation: it ends here
            outcome = Code.SHUTTING_DOWN
            self._send(encode_error(id, Code.SHUTTING_DOWN, "the session ended before it ran"))
            raise
        except Exception:
            log.exception("internal error while running %s", function.name)
            self._send(encode_error(id, Code.INTERNAL, "internal server error"))
        finally:
            del self.tasks[id]
            self._cancelling.pop(id, None)
            if self._metrics is not None:
                self._metrics.finished(function.name, outcome, self._loop.time() - start)
            if done is not None:
                self._release_slots(function, done, waits)

    def _release_slots(
        self, function: Function, done: asyncio.Future[None], waits: list[asyncio.Future[None]]
    ) -> None:
        """Let the next submit on these slots run -- but not before the submits this
        one waited for are over: one cancelled while waiting must not let the next
        overtake them (it would read the state before their change)."""
        pending = [tail for tail in waits if not tail.done()]
        if pending:
            pending[0].add_done_callback(lambda _: self._release_slots(function, done, pending))
            return
        done.set_result(None)
        for slot in function.slots:
            if self._tails.get(slot) is done:
                del self._tails[slot]

    def _finish(self, id: SubmitId, frame: bytes) -> None:
        """Send a submit's final frame, and keep it for a resume (bounded)."""
        self._send(frame)
        if self.settings.resume_grace <= 0:
            return
        results = self.results
        if id in results:
            self._results_bytes -= len(results.pop(id))
        results[id] = frame
        self._results_bytes += len(frame)
        while results and (
            len(results) > self.settings.resume_results
            or self._results_bytes > self.settings.resume_result_bytes
        ):
            self._results_bytes -= len(results.pop(next(iter(results))))
        if self.on_commit is not None:
            self.on_commit(self)

    # -- resume ----------------------------------------------------------------

    def detach(self) -> None:
        """The connection dropped: keep running, remember results, send nothing."""
        self.attached = False
        self._send = _discard

    def attach(self, send: Send, *, deltas: bool, close: Callable[[int, str], None]) -> None:
        """A resumed connection takes over this session."""
        self._send = send
        self._close_connection = close
        self._deltas = DeltaEncoder() if deltas else None  # the client starts over too
        self._replay = dict(self.results)
        self._inflight_at_resume = set(self.tasks)
        self._flooded = False
        self.attached = True
        self.last_active = self._loop.time()
        self._bucket = TokenBucket(
            self.settings.submit_rate, self.settings.submit_burst, self.last_active
        )

    def to_record(self) -> dict[str, Any]:
        """What another node needs to resume this session (JSON-able if its state is)."""
        return {
            "id": self.id,
            "state": {slot.stable_key: value for slot, value in self.state.items()},
            "results": [[id, frame.decode()] for id, frame in self.results.items()],
            "topics": sorted(self.topics),
        }

    def load_record(self, record: dict[str, Any]) -> None:
        """Take over the state, results and topics of a session parked elsewhere."""
        slots = self.app.slots_by_key()
        for key, value in record.get("state", {}).items():
            slot = slots.get(key)
            if slot is not None:
                self.state[slot] = value
        for id, frame in record.get("results", []):
            self.results[id] = frame.encode()
            self._results_bytes += len(frame)
        self._replay = dict(self.results)
        for topic in record.get("topics", []):
            self.subscribe_server_side(topic)

    async def _execute(
        self, id: SubmitId, function: Function, args: list[Any]
    ) -> tuple[bytes, str]:
        """Run one submit; return the frame that answers it and its outcome (``ok`` or
        the error code). Commits or rolls back state."""
        full: list[Any] = []
        snapshots: list[tuple[State, Any]] = []
        public = iter(args)
        for slot in function.input_slots:
            if slot is None:
                full.append(next(public))
            else:
                value = self.get(slot)
                full.append(value)
                if slot.snapshot:
                    snapshots.append((slot, copy_value(value)))
        _current.set(Context(self, id))
        try:
            call = (
                self._stream(id, function, full)
                if function.streams
                else self._runner.call(function, full)
            )
            if function.timeout is None:
                returned = await call
            else:
                async with asyncio.timeout(function.timeout):
                    returned = await call
            outputs, new_states = returned if function.streams else function.split_outputs(returned)
            frame = self._encode_outputs(id, function, outputs, partial=False)
        except asyncio.CancelledError:
            # A sync function may still be running in its thread; it keeps the
            # object it was given, while the session gets the snapshot back.
            self._restore(snapshots)
            raise
        except TimeoutError:
            self._restore(snapshots)
            return _error(
                id, Code.TIMEOUT, f"{function.name} ran longer than its {function.timeout:g} s"
            )
        except StoreUnavailable as exc:
            self._restore(snapshots)
            return _error(id, Code.STORE_UNAVAILABLE, str(exc))
        except (BadValue, LocalProtocolError) as exc:
            self._restore(snapshots)
            return _error(id, Code.FN_ERROR, f"{function.name} returned a bad value: {exc}")
        except Exception as exc:
            self._restore(snapshots)
            log.warning("%s raised %s: %s", function.name, type(exc).__name__, exc, exc_info=True)
            return _error(id, Code.FN_ERROR, self._describe_exception(function, exc))
        for slot, value in new_states:
            self.state[slot] = value
        return frame, "ok"

    async def _stream(
        self, id: SubmitId, function: Function, full: list[Any]
    ) -> tuple[list[Any], list[tuple[State, Any]]]:
        """Send a partial per yield; the last yield is the result (and its state is kept)."""
        last: tuple[list[Any], list[tuple[State, Any]]] | None = None
        steps = self._runner.stream(function, full)
        try:
            async for item in steps:
                last = function.split_outputs(item)
                self._send(self._encode_outputs(id, function, last[0], partial=True))
        finally:
            await steps.aclose()  # type: ignore[attr-defined]
        if last is None:
            raise BadValue(f"{function.name} finished without yielding a value")
        return last

    def _encode_outputs(
        self, id: SubmitId, function: Function, outputs: list[Any], *, partial: bool
    ) -> bytes:
        encode = encode_partial if partial else encode_result
        deltas = self._deltas
        if deltas is None or "chatbot" not in function.public_outputs:
            return encode(id, outputs)
        wire = list(outputs)
        pending = []
        for i, component in enumerate(function.public_outputs):
            if component == "chatbot":
                wire[i], items = deltas.prepare(function.name, i, outputs[i])
                pending.append((i, items))
        frame = encode(id, wire)
        for i, items in pending:  # only once the frame exists (it is about to be sent)
            deltas.commit(function.name, i, items)
        return frame

    def _restore(self, snapshots: list[tuple[State, Any]]) -> None:
        for slot, value in snapshots:
            self.state[slot] = value

    def _describe_exception(self, function: Function, exc: Exception) -> str:
        text = f"{function.name} raised {type(exc).__name__}: {exc}"
        if self.settings.debug:
            text += "\n" + "".join(traceback.format_exception(exc))
        return text

    def _queue_full(self, id: SubmitId, function: Function, gate: Gate) -> bytes:
        return encode_error(
            id,
            Code.QUEUE_FULL,
            f"{function.name} has {len(gate)} submits waiting (its limit); try again later",
        )

    # -- end -----------------------------------------------------------------

    async def close(self, *, run_hooks: bool = True) -> None:
        """End the session: drop its queued submits, cancel running ones, leave every
        topic, then run the end hooks once."""
        if self._ended:
            return
        self._ended = True
        self.closed = True
        if self._hub is not None:
            self._hub.drop(self)
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if not run_hooks:
            return
        for hook in self.app.session_end_hooks:
            await self._runner.call_hook(hook, self)

    async def drain(self, grace: float) -> None:
        """Stop admitting submits and wait up to ``grace`` seconds for in-flight ones."""
        self.closed = True
        tasks = list(self.tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=grace)


def _error(id: SubmitId, code: str, message: str) -> tuple[bytes, str]:
    """An error frame, with its code as the submit's outcome."""
    return encode_error(id, code, message), code


def _discard(frame: bytes) -> None:
    return None


def _topic_error(topic: str, code: str, why: str) -> bytes:
    return orjson.dumps(
        {
            "type": "error",
            "id": None,
            "code": code,
            "topic": topic,
            "message": f"topic {topic[:128]!r}: {why}",
        }
    )
