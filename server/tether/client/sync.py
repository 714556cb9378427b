"""A blocking client for plain scripts: the asyncio client on a background loop.

::

    with tether.connect_sync("ws://127.0.0.1:8000/ws") as c:
        print(c.submit("chat", "hi"))
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from .aio import Client
from .connect import connect

__all__ = ["SyncClient", "connect_sync"]

T = TypeVar("T")


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
