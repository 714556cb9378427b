"""The embedded store of one process (the operations' docs: ``backend.StoreBackend``)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

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


class MemoryBackend(StoreBackend):
    """The embedded store for one process: dictionaries behind one asyncio lock.

    Each operation runs to completion on the event loop without awaiting
    inside the critical section, so the lock is never contended for long.
    """

    shared = False
    sessions = None
    publisher: Callable[[str, Any], None] | None = None

    def __init__(self, *, max_keys: int | None = DEFAULT_MAX_KEYS) -> None:
        self._lock = asyncio.Lock()
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

    async def get(self, key: str, default: Any = None) -> Any:
        self.keys.live("value", key)
        raw = self._values.get(key)
        return default if raw is None else orjson.loads(raw)

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        raw = dumps_value(value)
        seconds = check_ttl("set: ttl", ttl, optional=True)
        async with self._lock:
            self.keys.admit("value", key)
            self._values[key] = raw
            self.keys.expire("value", key, seconds)

    async def expire(self, key: str, ttl: float) -> bool:
        seconds = check_ttl("expire: ttl", ttl)
        async with self._lock:
            found = False
            for kind, space in self.keys.spaces.items():
                self.keys.live(kind, key)
                if key in space:
                    self.keys.expire(kind, key, seconds)
                    found = True
            return found

    async def delete(self, key: str) -> bool:
        async with self._lock:
            found = False
            for kind, space in self.keys.spaces.items():
                self.keys.live(kind, key)
                self.keys.forget(kind, key)
                if space.pop(key, None) is not None:
                    found = True
            return found

    async def incr(self, key: str, by: int | float = 1) -> int | float:
        check_increment(by)
        async with self._lock:
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
        async with self._lock:
            self.keys.admit("value", key)
            raw = self._values.get(key)
            current = default if raw is None else orjson.loads(raw)
            value = fn(current)
            self._values[key] = dumps_value(value)
            self.keys.forget("value", key)  # a new value, as Redis' SET: no TTL
            if topic is not None:
                self._publish(topic, event(value) if event is not None else value)
            return value

    async def list_append(
        self, key: str, value: Any, maxlen: int | None = None, *, topic: str | None = None
    ) -> int:
        check_count("list_append: maxlen", maxlen, 1, optional=True)
        raw = dumps_value(value)
        async with self._lock:
            self.keys.admit("list", key)
            items = self._lists.get(key)
            if items is None:
                items = self._lists[key] = deque()
            items.append(raw)
            if maxlen is not None:
                while len(items) > maxlen:
                    items.popleft()
            if topic is not None:
                self._publish(topic, orjson.loads(raw))
            return len(items)

    def _publish(self, topic: str, data: Any) -> None:
        # Called under the lock, so events leave in the order of the changes.
        if self.publisher is not None:
            self.publisher(topic, data)

    async def list_range(self, key: str, start: int = 0, stop: int = -1) -> list[Any]:
        check_index(start)
        check_index(stop)
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
        async with self._lock:
            self.keys.admit("board", board)
            scores = self._boards.setdefault(board, Board())
            scores.set(member, value)
            if keep is not None:
                scores.keep(keep)
            best = scores.top(top)
            if topic is not None:
                self._publish(topic, [plain_number(s) for _, s in best])
            return best

    async def lb_incr(self, board: str, member: str, by: float = 1) -> float:
        check_member(member)
        step = check_score("lb_incr: by", by)
        async with self._lock:
            self.keys.admit("board", board)
            scores = self._boards.setdefault(board, Board())
            current = scores.score(member)
            value = checked_score(board, member, (0.0 if current is None else current) + step)
            scores.set(member, value)
            return value

    async def lb_top(self, board: str, n: int) -> list[tuple[str, float]]:
        check_count("lb_top: n", n, 0)
        self.keys.live("board", board)
        scores = self._boards.get(board)
        return [] if scores is None else scores.top(n)

    async def lb_rank(self, board: str, member: str) -> int | None:
        check_member(member)
        self.keys.live("board", board)
        scores = self._boards.get(board)
        return None if scores is None else scores.rank(member)

    async def lb_score(self, board: str, member: str) -> float | None:
        check_member(member)
        self.keys.live("board", board)
        scores = self._boards.get(board)
        return None if scores is None else scores.score(member)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None
