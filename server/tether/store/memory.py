"""The embedded store of one process (the operations' docs: ``backend.StoreBackend``)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import orjson

from .backend import StoreBackend
from .boards import Board
from .bounds import DEFAULT_MAX_KEYS, KeySpace, check_ttl
from .checks import (
    check_count,
    check_increment,
    check_index,
    check_lb_add,
    check_member,
    check_score,
    checked_score,
    checked_sum,
    dumps_value,
    number_at,
    plain_number,
)

__all__ = ["MemoryBackend"]

T = TypeVar("T")

log = logging.getLogger("tether.store")

# Events published by worker threads and not yet handed to the topics: a
# thread that publishes faster than the loop hands events out waits, past this.
MAX_PENDING_EVENTS = 4096


class MemoryBackend(StoreBackend):
    """The embedded store for one process: dictionaries behind one ``threading.Lock``.

    Each operation is a short critical section that never awaits, so its
    coroutine runs to completion the first time it is stepped. The event loop
    (``await store.incr(...)``) and worker threads (``store.sync.incr(...)``,
    through ``run_inline``, with no round trip to the loop) take the same lock,
    so every operation is atomic with every other, wherever it was called.

    Events (an operation given a ``topic``) are queued under the lock, so the
    queue is in the order of the changes, and only the event loop hands them to
    the topics, in that order: an event published on the loop first hands out
    the ones worker threads queued before it.
    """

    shared = False
    sessions = None
    publisher: Callable[[str, Any, bool], None] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    """The serving loop (set by ``Store.attach``): where worker threads' events go."""

    def __init__(self, *, max_keys: int | None = DEFAULT_MAX_KEYS) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, bytes] = {}
        self._lists: dict[str, deque[bytes]] = {}
        self._boards: dict[str, Board] = {}
        # Deadlines and the key cap (``max_keys``, None: no cap): bounds.KeySpace.
        spaces: dict[str, dict[str, Any]] = {
            "value": self._values,
            "list": self._lists,
            "board": self._boards,
        }
        self.keys = KeySpace(spaces, max_keys)
        # Events queued by worker threads, in change order; only the loop pops them.
        self._events: deque[tuple[str, Any, bool]] = deque()
        self._drain_scheduled = False
        self._drained = threading.Condition()
        self._waiting = 0

    def run_inline(self, coro: Coroutine[Any, Any, T]) -> T:
        """Carry out one operation (``coro``) in the calling worker thread."""
        try:
            coro.send(None)
        except StopIteration as done:
            result: T = done.value
        else:  # pragma: no cover - an operation never suspends
            coro.close()
            raise RuntimeError("a memory store operation suspended")
        if len(self._events) > MAX_PENDING_EVENTS:
            self._wait_for_drain()
        return result

    def _wait_for_drain(self) -> None:
        # Backpressure, outside the store lock (the loop may need it to drain).
        with self._drained:
            self._waiting += 1
            try:
                while len(self._events) > MAX_PENDING_EVENTS and self.loop is not None:
                    self._drained.wait(0.5)
            finally:
                self._waiting -= 1

    async def get(self, key: str, default: Any = None) -> Any:
        # Reads take the lock too: sync calls run them in worker threads, and an
        # expired key is dropped on the way.
        with self._lock:
            self.keys.live("value", key)
            raw = self._values.get(key)
        return default if raw is None else orjson.loads(raw)

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        raw = dumps_value(value)
        seconds = check_ttl("set: ttl", ttl, optional=True)
        with self._lock:
            self.keys.admit("value", key)
            self._values[key] = raw
            self.keys.expire("value", key, seconds)

    async def expire(self, key: str, ttl: float) -> bool:
        seconds = check_ttl("expire: ttl", ttl)
        with self._lock:
            found = False
            for kind, space in self.keys.spaces.items():
                self.keys.live(kind, key)
                if key in space:
                    self.keys.expire(kind, key, seconds)
                    found = True
            return found

    async def delete(self, key: str) -> bool:
        with self._lock:
            found = False
            for kind, space in self.keys.spaces.items():
                self.keys.live(kind, key)
                self.keys.forget(kind, key)
                if space.pop(key, None) is not None:
                    found = True
            return found

    async def incr(self, key: str, by: int | float = 1) -> int | float:
        check_increment(by)
        with self._lock:
            self.keys.admit("value", key)
            raw = self._values.get(key)
            current = 0 if raw is None else number_at(key, orjson.loads(raw))
            value = checked_sum(key, current + by)
            self._values[key] = orjson.dumps(value)
            return value

    async def update(
        self,
        key: str,
        fn: Callable[[Any], Any],
        default: Any = None,
        *,
        topic: str | None = None,
        event: Callable[[Any], Any] | None = None,
    ) -> Any:
        with self._lock:
            self.keys.admit("value", key)
            raw = self._values.get(key)
            current = default if raw is None else orjson.loads(raw)
            value = fn(current)
            self._values[key] = dumps_value(value)
            self.keys.forget("value", key)  # a new value, as Redis' SET: no TTL
            if topic is not None:
                self._publish(topic, event(value) if event is not None else value, True)
            return value

    async def list_append(
        self, key: str, value: Any, maxlen: int | None = None, *, topic: str | None = None
    ) -> int:
        check_count("list_append: maxlen", maxlen, 1, optional=True)
        raw = dumps_value(value)
        with self._lock:
            self.keys.admit("list", key)
            items = self._lists.get(key)
            if items is None:
                items = self._lists[key] = deque()
            items.append(raw)
            if maxlen is not None:
                while len(items) > maxlen:
                    items.popleft()
            if topic is not None:
                self._publish(topic, orjson.loads(raw), False)
            return len(items)

    def _publish(self, topic: str, data: Any, retain: bool) -> None:
        # Called under the lock, so the queue is in the order of the changes.
        if self.publisher is None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a worker thread: the loop hands it out
            self._events.append((topic, data, retain))
            if not self._drain_scheduled and self.loop is not None:
                self._drain_scheduled = True  # before: the loop may drain at once
                try:
                    self.loop.call_soon_threadsafe(self._drain)
                except RuntimeError:  # the loop is closed
                    self._drain_scheduled = False
                    raise
            return
        if self._events:  # worker threads' earlier events go first
            self._events.append((topic, data, retain))
            self._drain()
        else:
            self.publisher(topic, data, retain)

    def _drain(self) -> None:
        # On the loop: hand out the queued events, oldest first.
        self._drain_scheduled = False
        events, publisher = self._events, self.publisher
        while events:
            topic, data, retain = events.popleft()
            if publisher is not None:
                try:
                    publisher(topic, data, retain)
                except Exception:
                    log.exception("publishing a store event to %r failed", topic)
        if self._waiting:
            with self._drained:
                self._drained.notify_all()

    async def list_range(self, key: str, start: int = 0, stop: int = -1) -> list[Any]:
        check_index(start)
        check_index(stop)
        with self._lock:
            self.keys.live("list", key)
            items = list(self._lists.get(key, ()))
        # Redis LRANGE semantics: both ends inclusive, negative from the end.
        n = len(items)
        lo = max(start + n if start < 0 else start, 0)
        hi = min(stop + n if stop < 0 else stop, n - 1)
        if lo > hi:
            return []
        return [orjson.loads(raw) for raw in items[lo : hi + 1]]

    async def lb_add(
        self,
        board: str,
        member: str,
        score: float,
        keep: int | None = None,
        *,
        top: int = 0,
        topic: str | None = None,
    ) -> list[tuple[str, float]]:
        value = check_lb_add(member, score, keep, top, topic)
        with self._lock:
            self.keys.admit("board", board)
            scores = self._boards.setdefault(board, Board())
            scores.set(member, value)
            if keep is not None:
                scores.keep(keep)
            best = scores.top(top)
            if topic is not None:
                self._publish(topic, [plain_number(s) for _, s in best], True)
            return best

    async def lb_incr(self, board: str, member: str, by: float = 1) -> float:
        check_member(member)
        step = check_score("lb_incr: by", by)
        with self._lock:
            self.keys.admit("board", board)
            scores = self._boards.setdefault(board, Board())
            current = scores.score(member)
            value = checked_score(board, member, (0.0 if current is None else current) + step)
            scores.set(member, value)
            return value

    async def lb_top(self, board: str, n: int) -> list[tuple[str, float]]:
        check_count("lb_top: n", n, 0)
        with self._lock:
            self.keys.live("board", board)
            scores = self._boards.get(board)
            return [] if scores is None else scores.top(n)

    async def lb_rank(self, board: str, member: str) -> int | None:
        check_member(member)
        with self._lock:
            self.keys.live("board", board)
            scores = self._boards.get(board)
            return None if scores is None else scores.rank(member)

    async def lb_score(self, board: str, member: str) -> float | None:
        check_member(member)
        with self._lock:
            self.keys.live("board", board)
            scores = self._boards.get(board)
            return None if scores is None else scores.score(member)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None
