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
import itertools
import threading
from collections.abc import Coroutine, Generator
from types import TracebackType
from typing import Any, TypeVar

import orjson
import websockets
from websockets.asyncio.client import ClientConnection

from .protocol import PROTOCOL_VERSION

__all__ = ["Client", "SyncClient", "TetherError", "connect", "connect_sync"]

T = TypeVar("T")


class TetherError(Exception):
    """A submit failed: ``code`` is the protocol's error code, ``message`` says why."""

    def __init__(self, code: str, message: str, id: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.id = id


class Client:
    """A connected session. Create it with ``tether.connect``."""

    def __init__(self, ws: ClientConnection, welcome: dict[str, Any]) -> None:
        self.ws = ws
        self.welcome = welcome
        self.session: str = welcome["session"]
        self.functions: dict[str, dict[str, Any]] = {f["name"]: f for f in welcome["functions"]}
        self._ids = itertools.count(1)
        self._pending: dict[Any, asyncio.Future[Any]] = {}
        self._pongs: list[asyncio.Future[None]] = []
        self._closed_error: TetherError | None = None
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())

    async def submit(self, fn: str, *args: Any) -> Any:
        """Call ``fn`` with its public inputs; return its output (a tuple if several)."""
        outputs = await self.submit_raw(fn, list(args))
        if len(outputs) == 1:
            return outputs[0]
        return tuple(outputs)

    async def submit_raw(self, fn: str, data: list[Any], id: Any = None) -> list[Any]:
        """Send one submit and return the ``data`` list of its result."""
        if self._closed_error is not None:
            raise self._closed_error
        if id is None:
            id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[id] = future
        try:
            await self.ws.send(
                orjson.dumps({"type": "submit", "id": id, "fn": fn, "data": data}).decode()
            )
            return await future  # type: ignore[no-any-return]
        finally:
            self._pending.pop(id, None)

    async def ping(self) -> None:
        """Application-level round trip: resolves when the server's ``pong`` arrives."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pongs.append(future)
        await self.ws.send('{"type":"ping"}')
        await future

    async def send_raw(self, text: str | bytes) -> None:
        """Send a frame as is (for tests and tools that speak the protocol directly)."""
        await self.ws.send(text)

    async def _read_loop(self) -> None:
        try:
            async for frame in self.ws:
                self._dispatch(orjson.loads(frame))
        except websockets.ConnectionClosed:
            pass
        finally:
            code = self.ws.close_code
            reason = (
                f"connection closed ({code} {self.ws.close_reason})"
                if code is not None
                else "connection lost"
            )
            self._closed_error = TetherError("connection_closed", reason)
            for future in [*self._pending.values(), *self._pongs]:
                if not future.done():
                    future.set_exception(self._closed_error)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "result":
            future = self._pending.get(msg["id"])
            if future is not None and not future.done():
                future.set_result(msg["data"])
        elif kind == "error":
            error = TetherError(msg["code"], msg["message"], msg.get("id"))
            future = self._pending.get(msg.get("id"))
            if future is not None and not future.done():
                future.set_exception(error)
        elif kind == "pong" and self._pongs:
            self._pongs.pop(0).set_result(None)

    async def close(self) -> None:
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


class _Connect:
    """``await connect(url)`` or ``async with connect(url) as c``."""

    def __init__(self, url: str, kwargs: dict[str, Any]) -> None:
        self.url = url
        self.kwargs = kwargs
        self.client: Client | None = None

    async def _open(self) -> Client:
        ws = await websockets.connect(self.url, max_size=None, compression=None, **self.kwargs)
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
        self.client = Client(ws, welcome)
        return self.client

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


def connect(url: str, **kwargs: Any) -> _Connect:
    """Open a session. Extra keyword arguments go to ``websockets.connect``."""
    return _Connect(url, kwargs)


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
