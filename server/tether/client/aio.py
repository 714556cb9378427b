"""The Python client, on the ``websockets`` library.

::

    async with tether.connect("ws://127.0.0.1:8000/ws") as c:
        history = await c.submit("chat", "hi")

Many submits may be in flight on one connection; replies are matched by id.
A failed submit raises ``TetherError`` carrying the protocol's error code.
``tether.connect_sync`` (``sync.py``) wraps the same client for blocking scripts.
Every frame is built and read by ``tether.protocol``'s client half; chatbot
outputs arrive as deltas and are rebuilt by the welcome's manifest.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Final

import websockets
from websockets.asyncio.client import ClientConnection

from ..errors import RemoteProtocolError, TetherError
from ..protocol import (
    Code,
    DeltaDecoder,
    Error,
    Event,
    Partial,
    Pong,
    Queued,
    Result,
    ServerMessage,
    Started,
    Subscribed,
    Unsubscribed,
    Welcome,
    decode_server,
    encode_ping,
    encode_submit,
    encode_subscribe,
    encode_unsubscribe,
)
from .call import Call, unwrap

__all__ = ["Client"]

MAX_BUFFERED_EVENTS: Final = 10_000


class Client:
    """A connected session. Create it with ``tether.connect``."""

    def __init__(
        self,
        ws: ClientConnection,
        welcome: Welcome,
        keepalive: float | None = None,
        reconnect: Callable[[str], Awaitable[tuple[ClientConnection, Welcome]]] | None = None,
        resume_timeout: float = 30.0,
    ) -> None:
        self.ws = ws
        self._reconnect = reconnect
        self._resume_timeout = resume_timeout
        self._closing = False
        self.resume_token: str | None = welcome.resume
        self.resumes = 0  # how many times this client resumed its session
        self.welcome = welcome
        self.session: str = welcome.session
        self.functions: dict[str, dict[str, Any]] = {f["name"]: f for f in welcome.functions}
        self.deltas = welcome.deltas
        self._decoder = DeltaDecoder(welcome.outputs())
        self._ids = itertools.count(1)
        self._pending: dict[Any, Call] = {}
        self._pongs: list[asyncio.Future[None]] = []
        self._topic_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._handlers: dict[str, Callable[[Any], Any]] = {}
        self._events: dict[str, deque[Any]] = {}
        self._event_signal = asyncio.Event()
        self._seqs: dict[str, int] = {}  # topic -> seq of the current value it has
        self.subscribed: set[str] = set()
        self.dropped_events = 0
        self._closed_error: TetherError | None = None
        self._broken: RemoteProtocolError | None = None
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())
        self._keepalive = (
            asyncio.get_running_loop().create_task(self._keep_alive(keepalive))
            if keepalive
            else None
        )

    async def _keep_alive(self, interval: float) -> None:
        """An application ping every ``interval`` seconds, so that a quiet script is
        not closed by the server's idle timeout."""
        while self._closed_error is None:
            await asyncio.sleep(interval)
            try:
                await self.ping()
            except (TetherError, websockets.ConnectionClosed):
                return

    # -- submits -------------------------------------------------------------

    async def submit(
        self,
        fn: str,
        *args: Any,
        on_partial: Callable[[Any], Any] | None = None,
        on_queued: Callable[[int], Any] | None = None,
    ) -> Any:
        """Call ``fn`` with its public inputs; return its output (a tuple if several).

        ``on_partial(output)`` is called for each streamed partial (same shape as
        the return value); ``on_queued(position)`` while the submit waits in a queue.
        """
        wrapped = None
        if on_partial is not None:
            callback = on_partial

            def wrapped(data: list[Any]) -> Any:
                return callback(unwrap(data))

        call = await self.start(fn, *args, on_partial=wrapped, on_queued=on_queued)
        return unwrap(await call.result())

    async def stream(self, fn: str, *args: Any) -> AsyncIterator[Any]:
        """Iterate the partials of a streaming function, then its final result."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        call = await self.start(fn, *args, on_partial=queue.put_nowait)
        waiter = asyncio.ensure_future(call.result())
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield unwrap(getter.result())
                    continue
                getter.cancel()
                while not queue.empty():
                    yield unwrap(queue.get_nowait())
                yield unwrap(waiter.result())
                return
        finally:
            if not waiter.done():
                await call.cancel()
                waiter.cancel()

    async def start(
        self,
        fn: str,
        *args: Any,
        id: Any = None,
        on_partial: Callable[[list[Any]], Any] | None = None,
        on_queued: Callable[[int], Any] | None = None,
    ) -> Call:
        """Send a submit and return its ``Call`` handle at once (to cancel it, say)."""
        if self._closed_error is not None:
            raise self._closed_error
        if id is None:
            id = next(self._ids)
        call = Call(self, id, fn, on_partial, on_queued)
        call.frame = encode_submit(id, fn, list(args))
        self._pending[id] = call
        call.future.add_done_callback(lambda _: self._pending.pop(id, None))
        try:
            await self.ws.send(call.frame, text=True)
        except websockets.ConnectionClosed:
            if self._reconnect is None or self.resume_token is None:
                self._pending.pop(id, None)
                raise TetherError(Code.CONNECTION_CLOSED, "connection lost") from None
            # The read loop is resuming the session; it re-sends this submit.
        except BaseException:
            self._pending.pop(id, None)
            raise
        return call

    async def submit_raw(self, fn: str, data: list[Any], id: Any = None) -> list[Any]:
        """Send one submit and return the ``data`` list of its result."""
        call = await self.start(fn, *data, id=id)
        return await call.result()

    # -- topics ----------------------------------------------------------------

    async def subscribe(self, topic: str, handler: Callable[[Any], Any] | None = None) -> None:
        """Subscribe to ``topic``; resolves once the server confirms.

        Events go to ``handler(data)`` if given, else wait for ``next_event``.
        A topic with a current value (protocol 8: the demo's ``scores``) sends
        it first, then every change; a change not newer than the value this
        client has is dropped.
        Raises ``TetherError('forbidden_topic')`` if the app does not allow it.
        """
        if handler is not None:
            self._handlers[topic] = handler
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._topic_waiters.setdefault(topic, []).append(future)
        await self._send(encode_subscribe(topic))
        await future

    async def unsubscribe(self, topic: str) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._topic_waiters.setdefault(topic, []).append(future)
        await self._send(encode_unsubscribe(topic))
        await future
        self._handlers.pop(topic, None)

    async def next_event(self, topic: str, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """The oldest unread event of ``topic`` (events without a handler are kept,
        up to ``MAX_BUFFERED_EVENTS`` per topic; older ones are dropped and counted)."""
        async with asyncio.timeout(timeout):
            while True:
                buffered = self._events.get(topic)
                if buffered:
                    return buffered.popleft()
                if self._closed_error is not None:
                    raise self._closed_error
                self._event_signal.clear()
                await self._event_signal.wait()

    # -- misc ------------------------------------------------------------------

    async def ping(self) -> None:
        """Application-level round trip: resolves when the server's ``pong`` arrives."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pongs.append(future)
        await self.ws.send(encode_ping(), text=True)
        await future

    async def send_raw(self, text: str | bytes) -> None:
        """Send a frame as is (for tests and tools that speak the protocol directly)."""
        await self.ws.send(text)

    async def _send(self, frame: bytes) -> None:
        if self._closed_error is not None:
            raise self._closed_error
        await self.ws.send(frame, text=True)

    async def _read_loop(self) -> None:
        try:
            while True:
                try:
                    async for frame in self.ws:
                        message = decode_server(frame)
                        if message is not None:
                            self._dispatch(message)
                except websockets.ConnectionClosed:
                    pass
                except RemoteProtocolError as exc:
                    # The server broke the protocol: nothing it says can be trusted now.
                    self._broken = exc
                    self._closing = True
                    await self.ws.close(1002, "protocol error")
                    return
                if not await self._resume():
                    return
        finally:
            code = self.ws.close_code
            reason = (
                f"connection closed ({code} {self.ws.close_reason})"
                if code is not None
                else "connection lost"
            )
            if self._broken is not None:
                reason = f"the server broke the protocol: {self._broken.message}"
            self._closed_error = TetherError(Code.CONNECTION_CLOSED, reason)
            futures: list[asyncio.Future[Any]] = [c.future for c in self._pending.values()]
            futures += self._pongs
            for waiters in self._topic_waiters.values():
                futures += waiters
            for future in futures:
                if not future.done():
                    future.set_exception(self._closed_error)
            self._event_signal.set()

    def _stopped(self) -> bool:
        return self._closing

    async def _resume(self) -> bool:
        """After a network drop (no close frame), reconnect with the resume token,
        with jittered exponential backoff, for up to ``resume_timeout`` seconds.
        Re-sends every submit still waiting (the server never runs one twice)."""
        if self._closing or self._reconnect is None or self.resume_token is None:
            return False
        rcvd = self.ws.protocol.close_rcvd
        if rcvd is not None and rcvd.code not in (1006, 1011, 1012, 1013):
            return False  # the server closed on purpose: do not come back
        deadline = asyncio.get_running_loop().time() + self._resume_timeout
        delay = 0.05
        while True:
            if self._stopped():
                return False
            try:
                ws, welcome = await self._reconnect(self.resume_token)
            except (OSError, websockets.WebSocketException, TetherError, TimeoutError):
                if asyncio.get_running_loop().time() + delay > deadline:
                    return False
                await asyncio.sleep(random.uniform(0, delay))
                delay = min(delay * 2, 2.0)
                continue
            self.ws = ws
            self.welcome = welcome
            self._decoder = DeltaDecoder(welcome.outputs())
            for pong in self._pongs:  # pings of the old connection get no answer
                if not pong.done():
                    pong.set_exception(TetherError(Code.CONNECTION_CLOSED, "connection lost"))
            self._pongs.clear()
            self.resume_token = welcome.resume
            self.resumes += 1
            if not welcome.resumed:
                # A fresh session: what was in flight is lost with the old one.
                self.session = welcome.session
                lost = TetherError(Code.SESSION_LOST, "the session expired before it resumed")
                for call in list(self._pending.values()):
                    if not call.future.done():
                        call.future.set_exception(lost)
                return True
            for call in list(self._pending.values()):
                if call.frame is not None:
                    with contextlib.suppress(websockets.ConnectionClosed):
                        await ws.send(call.frame, text=True)
            return True

    def _decode(self, call: Call, data: list[Any]) -> list[Any]:
        if not self.deltas:
            return data
        return self._decoder.decode(call.fn, data)

    def _dispatch(self, msg: ServerMessage) -> None:
        match msg:
            case Result(id, data):
                call = self._pending.get(id)
                if call is not None and not call.future.done():
                    call.future.set_result(self._decode(call, data))
            case Partial(id, data):
                call = self._pending.get(id)
                if call is not None and call.on_partial is not None:
                    call.on_partial(self._decode(call, data))
                elif call is not None:
                    self._decode(call, data)  # later deltas build on this one
            case Queued(id, position):
                call = self._pending.get(id)
                if call is not None:
                    call.position = position
                    if call.on_queued is not None:
                        call.on_queued(position)
            case Started(id):
                call = self._pending.get(id)
                if call is not None:
                    call.position = None
            case Event(topic, data, seq):
                if seq is not None:
                    # A change of the topic's current value (protocol 8): drop one
                    # not newer than the value this client has.
                    if seq <= self._seqs.get(topic, -1):
                        return
                    self._seqs[topic] = seq
                self._on_event(topic, data)
            case Subscribed(topic):
                self.subscribed.add(topic)
                self._resolve_topic(topic, None)
            case Unsubscribed(topic):
                self.subscribed.discard(topic)
                self._seqs.pop(topic, None)
                self._resolve_topic(topic, None)
            case Error(id, code, message, topic):
                error = TetherError(code, message, id)
                if id is None and topic is not None:
                    self._resolve_topic(topic, error)
                    return
                call = self._pending.get(id)
                if call is not None and not call.future.done():
                    call.future.set_exception(error)
            case Pong() if self._pongs:
                self._pongs.pop(0).set_result(None)

    def _on_event(self, topic: str, data: Any) -> None:
        handler = self._handlers.get(topic)
        if handler is not None:
            handler(data)
            return
        buffered = self._events.get(topic)
        if buffered is None:
            buffered = self._events[topic] = deque()
        if len(buffered) >= MAX_BUFFERED_EVENTS:
            buffered.popleft()
            self.dropped_events += 1
        buffered.append(data)
        self._event_signal.set()

    def _resolve_topic(self, topic: str, error: TetherError | None) -> None:
        waiters = self._topic_waiters.get(topic)
        if not waiters:
            return
        future = waiters.pop(0)
        if not waiters:
            del self._topic_waiters[topic]
        if not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    async def close(self) -> None:
        self._closing = True
        if self._keepalive is not None:
            self._keepalive.cancel()
        await self.ws.close()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
