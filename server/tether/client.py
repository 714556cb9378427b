"""The Python client, on the ``websockets`` library.

::

    async with tether.connect("ws://127.0.0.1:8000/ws") as c:
        history = await c.submit("chat", "hi")

Many submits may be in flight on one connection; replies are matched by id.
A failed submit raises ``TetherError`` carrying the protocol's error code.
``tether.connect_sync`` wraps the same client for plain blocking scripts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from types import TracebackType
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import websockets
from websockets.asyncio.client import ClientConnection

from .deltas import DeltaDecoder
from .protocol import PROTOCOL_VERSION

__all__ = ["Call", "Client", "SyncClient", "TetherError", "connect", "connect_sync"]

T = TypeVar("T")

MAX_BUFFERED_EVENTS: Final = 10_000


class TetherError(Exception):
    """A submit failed: ``code`` is the protocol's error code, ``message`` says why."""

    def __init__(self, code: str, message: str, id: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.id = id


class Call:
    """One submit in flight: await ``result()``, or ``cancel()`` it."""

    __slots__ = ("_client", "fn", "frame", "future", "id", "on_partial", "on_queued", "position")

    def __init__(
        self,
        client: Client,
        id: Any,
        fn: str,
        on_partial: Callable[[list[Any]], Any] | None,
        on_queued: Callable[[int], Any] | None,
    ) -> None:
        self._client = client
        self.id = id
        self.fn = fn
        self.future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.on_partial = on_partial
        self.on_queued = on_queued
        self.position: int | None = None  # while queued: 1-based position
        self.frame: str | None = None  # the submit as sent (re-sent after a resume)

    async def result(self) -> list[Any]:
        """The ``data`` list of the result; raises ``TetherError`` on an error reply."""
        return await self.future

    async def cancel(self) -> None:
        """Ask the server to cancel; ``result()`` then raises ``TetherError('cancelled')``
        (unless the result was already on its way)."""
        await self._client._send({"type": "cancel", "id": self.id})


class Client:
    """A connected session. Create it with ``tether.connect``."""

    def __init__(
        self,
        ws: ClientConnection,
        welcome: dict[str, Any],
        keepalive: float | None = None,
        reconnect: Callable[[str], Awaitable[tuple[ClientConnection, dict[str, Any]]]]
        | None = None,
        resume_timeout: float = 30.0,
    ) -> None:
        self.ws = ws
        self._reconnect = reconnect
        self._resume_timeout = resume_timeout
        self._closing = False
        self.resume_token: str | None = welcome.get("resume")
        self.resumes = 0  # how many times this client resumed its session
        self.welcome = welcome
        self.session: str = welcome["session"]
        self.functions: dict[str, dict[str, Any]] = {f["name"]: f for f in welcome["functions"]}
        self.deltas = bool(welcome.get("deltas"))
        self._decoder = DeltaDecoder()
        self._ids = itertools.count(1)
        self._pending: dict[Any, Call] = {}
        self._pongs: list[asyncio.Future[None]] = []
        self._topic_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._handlers: dict[str, Callable[[Any], Any]] = {}
        self._events: dict[str, deque[Any]] = {}
        self._event_signal = asyncio.Event()
        self.subscribed: set[str] = set()
        self.dropped_events = 0
        self._closed_error: TetherError | None = None
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
                return callback(_unwrap(data))

        call = await self.start(fn, *args, on_partial=wrapped, on_queued=on_queued)
        return _unwrap(await call.result())

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
                    yield _unwrap(getter.result())
                    continue
                getter.cancel()
                while not queue.empty():
                    yield _unwrap(queue.get_nowait())
                yield _unwrap(waiter.result())
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
        call.frame = orjson.dumps(
            {"type": "submit", "id": id, "fn": fn, "data": list(args)}
        ).decode()
        self._pending[id] = call
        call.future.add_done_callback(lambda _: self._pending.pop(id, None))
        try:
            await self.ws.send(call.frame)
        except websockets.ConnectionClosed:
            if self._reconnect is None or self.resume_token is None:
                self._pending.pop(id, None)
                raise TetherError("connection_closed", "connection lost") from None
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
        Raises ``TetherError('forbidden_topic')`` if the app does not allow it.
        """
        if handler is not None:
            self._handlers[topic] = handler
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._topic_waiters.setdefault(topic, []).append(future)
        await self._send({"type": "subscribe", "topic": topic})
        await future

    async def unsubscribe(self, topic: str) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._topic_waiters.setdefault(topic, []).append(future)
        await self._send({"type": "unsubscribe", "topic": topic})
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
        await self.ws.send('{"type":"ping"}')
        await future

    async def send_raw(self, text: str | bytes) -> None:
        """Send a frame as is (for tests and tools that speak the protocol directly)."""
        await self.ws.send(text)

    async def _send(self, message: dict[str, Any]) -> None:
        if self._closed_error is not None:
            raise self._closed_error
        await self.ws.send(orjson.dumps(message).decode())

    async def _read_loop(self) -> None:
        try:
            while True:
                try:
                    async for frame in self.ws:
                        self._dispatch(orjson.loads(frame))
                except websockets.ConnectionClosed:
                    pass
                if not await self._resume():
                    return
        finally:
            code = self.ws.close_code
            reason = (
                f"connection closed ({code} {self.ws.close_reason})"
                if code is not None
                else "connection lost"
            )
            self._closed_error = TetherError("connection_closed", reason)
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
            self._decoder = DeltaDecoder()
            for pong in self._pongs:  # pings of the old connection get no answer
                if not pong.done():
                    pong.set_exception(TetherError("connection_closed", "connection lost"))
            self._pongs.clear()
            self.resume_token = welcome.get("resume")
            self.resumes += 1
            if not welcome.get("resumed"):
                # A fresh session: what was in flight is lost with the old one.
                self.session = welcome["session"]
                lost = TetherError("session_lost", "the session expired before it resumed")
                for call in list(self._pending.values()):
                    if not call.future.done():
                        call.future.set_exception(lost)
                return True
            for call in list(self._pending.values()):
                if call.frame is not None:
                    with contextlib.suppress(websockets.ConnectionClosed):
                        await ws.send(call.frame)
            return True

    def _decode(self, call: Call, data: list[Any]) -> list[Any]:
        if not self.deltas:
            return data
        return [self._decoder.decode(call.fn, i, value) for i, value in enumerate(data)]

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "result":
            call = self._pending.get(msg["id"])
            if call is not None and not call.future.done():
                call.future.set_result(self._decode(call, msg["data"]))
        elif kind == "partial":
            call = self._pending.get(msg["id"])
            if call is not None:
                data = self._decode(call, msg["data"])
                if call.on_partial is not None:
                    call.on_partial(data)
        elif kind == "queued":
            call = self._pending.get(msg["id"])
            if call is not None:
                call.position = msg["position"]
                if call.on_queued is not None:
                    call.on_queued(msg["position"])
        elif kind == "started":
            call = self._pending.get(msg["id"])
            if call is not None:
                call.position = None
        elif kind == "event":
            self._on_event(msg["topic"], msg.get("data"))
        elif kind == "subscribed" or kind == "unsubscribed":
            topic = msg["topic"]
            if kind == "subscribed":
                self.subscribed.add(topic)
            else:
                self.subscribed.discard(topic)
            self._resolve_topic(topic, None)
        elif kind == "error":
            error = TetherError(msg["code"], msg["message"], msg.get("id"))
            if msg.get("id") is None and "topic" in msg:
                self._resolve_topic(msg["topic"], error)
                return
            call = self._pending.get(msg.get("id"))
            if call is not None and not call.future.done():
                call.future.set_exception(error)
        elif kind == "pong" and self._pongs:
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


def _unwrap(outputs: list[Any]) -> Any:
    return outputs[0] if len(outputs) == 1 else tuple(outputs)


class _Connect:
    """``await connect(url)`` or ``async with connect(url) as c``."""

    def __init__(
        self,
        url: str,
        deltas: bool,
        keepalive: float | None,
        resume: bool,
        resume_timeout: float,
        kwargs: dict[str, Any],
    ) -> None:
        self.url = _with_query(url, "deltas", "1") if deltas else url
        self.keepalive = keepalive
        self.resume = resume
        self.resume_timeout = resume_timeout
        self.kwargs = kwargs
        self.client: Client | None = None

    async def _open(self) -> Client:
        ws, welcome = await self._handshake(self.url)
        self.client = Client(
            ws,
            welcome,
            self.keepalive,
            reconnect=self._resume if self.resume else None,
            resume_timeout=self.resume_timeout,
        )
        return self.client

    async def _resume(self, token: str) -> tuple[ClientConnection, dict[str, Any]]:
        return await self._handshake(_with_query(self.url, "resume", token))

    async def _handshake(self, url: str) -> tuple[ClientConnection, dict[str, Any]]:
        ws = await websockets.connect(url, max_size=None, compression=None, **self.kwargs)
        try:
            welcome = orjson.loads(await ws.recv())
        except BaseException:
            await ws.close()
            raise
        if welcome.get("type") != "welcome":
            await ws.close()
            raise TetherError("bad_message", f"expected a welcome, got {welcome.get('type')!r}")
        if welcome.get("protocol") != PROTOCOL_VERSION:
            await ws.close()
            raise TetherError(
                "bad_message",
                f"server speaks protocol {welcome.get('protocol')!r}, "
                f"this client speaks {PROTOCOL_VERSION}",
            )
        return ws, welcome

    def __await__(self) -> Generator[Any, None, Client]:
        return self._open().__await__()

    async def __aenter__(self) -> Client:
        return await self._open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.client is not None:
            await self.client.close()


def connect(
    url: str,
    *,
    deltas: bool = True,
    keepalive: float | None = 60.0,
    resume: bool = True,
    resume_timeout: float = 30.0,
    **kwargs: Any,
) -> _Connect:
    """Open a session.

    ``deltas``: receive chatbot outputs as deltas (rebuilt here, so results are
    always whole). ``keepalive``: seconds between application pings that keep a
    quiet session from the server's idle timeout (``None``: none). ``resume``:
    after a network drop, reconnect (for up to ``resume_timeout`` seconds) and
    resume the same session, re-sending the submits still waiting. Extra keyword
    arguments go to ``websockets.connect`` (e.g. ``additional_headers`` for a token).
    """
    return _Connect(url, deltas, keepalive, resume, resume_timeout, kwargs)


def _with_query(url: str, key: str, value: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    query.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(query)))


class SyncClient:
    """A blocking client for plain scripts; runs the async client on a background loop."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        try:
            self._client: Client = self._call(connect(url, **kwargs)._open())
        except BaseException:
            self._stop()
            raise
        self.session = self._client.session
        self.functions = self._client.functions

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def submit(self, fn: str, *args: Any) -> Any:
        return self._call(self._client.submit(fn, *args))

    def subscribe(self, topic: str) -> None:
        self._call(self._client.subscribe(topic))

    def next_event(self, topic: str, timeout: float | None = 10) -> Any:
        return self._call(self._client.next_event(topic, timeout))

    def ping(self) -> None:
        self._call(self._client.ping())

    def close(self) -> None:
        try:
            self._call(self._client.close())
        finally:
            self._stop()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def connect_sync(url: str, **kwargs: Any) -> SyncClient:
    """Open a session for a blocking script: ``with tether.connect_sync(url) as c: ...``."""
    return SyncClient(url, **kwargs)
