"""Global state: a store shared by every session, with atomic operations.

``app.store`` is the handle user code holds. Its operations are coroutines
(await them in async functions); ``app.store.sync`` offers the same calls for
synchronous functions running in the thread pool, routed to the event loop.

Every operation is atomic and maps onto one Redis command or script, so the
in-memory backend here and a Redis backend can share one interface:

==================  ===================================
operation           Redis equivalent
==================  ===================================
get / set / delete  GET / SET / DEL
incr                INCRBY, or a double-add script
update(key, fn)     WATCH + GET + MULTI/SET/EXEC, retried
list_append         RPUSH + LTRIM (one script)
list_range          LRANGE
lb_add              ZADD (+ ZREMRANGEBYRANK when ``keep``)
lb_incr             ZINCRBY
lb_top              ZREVRANGE ... WITHSCORES
lb_rank / lb_score  ZREVRANK / ZSCORE
==================  ===================================

Values are JSON (stored serialised, as Redis would), so a value read from
the store is always the caller's own copy and can never be mutated behind
the lock's back.

Both backends agree exactly, and ``tests/test_store.py`` runs one contract
against each:

- ``incr`` keeps integers integers (signed 64-bit, as Redis) and gives a
  float as soon as either side is a float, with IEEE double arithmetic.
- Leaderboards order by score, highest first; equal scores by member, the
  greater member (by code point, which is UTF-8 byte order) first: the order
  of Redis' ZREVRANGE. ``keep`` drops from the other end of the same order.
- Lists, values and leaderboards are separate key spaces: ``delete`` removes
  all three, and the same name can be a value and a list at once.
- Misuse (a wrong type, a count below 1, a NaN score) is a ``StoreError``;
  a backend that cannot be reached raises ``StoreUnavailable``.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, TypeVar

import orjson

from .errors import StoreError, StoreUnavailable

__all__ = [
    "MemoryBackend",
    "Store",
    "StoreBackend",
    "StoreError",
    "StoreUnavailable",
    "SyncStore",
    "backend_from_url",
    "plain_number",
]

T = TypeVar("T")

MAX_UPDATE_RETRIES: Final = 64
INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1


class StoreBackend:
    """The operations a store backend provides; every one is atomic."""

    async def get(self, key: str, default: Any = None) -> Any:
        raise NotImplementedError

    async def set(self, key: str, value: Any) -> None:
        raise NotImplementedError

    async def delete(self, key: str) -> bool:
        raise NotImplementedError

    async def incr(self, key: str, by: int | float = 1) -> int | float:
        raise NotImplementedError

    # True when several server processes share this backend (Redis): sessions
    # are then saved to it, so that a client can resume on any node.
    shared: bool = False

    async def session_save(self, token: str, record: dict[str, Any], ttl: float) -> None:
        """Keep a resumable session's record for ``ttl`` seconds (shared backends)."""
        raise NotImplementedError

    async def session_claim(self, token: str) -> dict[str, Any] | None:
        """Take a session's record atomically (only one node can), or None."""
        raise NotImplementedError

    async def session_delete(self, token: str) -> None:
        raise NotImplementedError

    # Set by the server: how a backend that publishes from within an operation
    # (atomically with the change) reaches the subscribers of a topic.
    publisher: Callable[[str, Any], None] | None = None

    async def update(
        self,
        key: str,
        fn: Callable[[Any], Any],
        default: Any = None,
        *,
        topic: str | None = None,
        event: Callable[[Any], Any] | None = None,
    ) -> Any:
        raise NotImplementedError

    async def list_append(
        self, key: str, value: Any, maxlen: int | None = None, *, topic: str | None = None
    ) -> int:
        raise NotImplementedError

    async def list_range(self, key: str, start: int = 0, stop: int = -1) -> list[Any]:
        raise NotImplementedError

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
        raise NotImplementedError

    async def lb_incr(self, board: str, member: str, by: float = 1) -> float:
        raise NotImplementedError

    async def lb_top(self, board: str, n: int) -> list[tuple[str, float]]:
        raise NotImplementedError

    async def lb_rank(self, board: str, member: str) -> int | None:
        raise NotImplementedError

    async def lb_score(self, board: str, member: str) -> float | None:
        raise NotImplementedError

    async def close(self) -> None:
        return None


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise StoreError(f"store values must be JSON-serialisable: {exc}") from None


def plain_number(score: float) -> int | float:
    """A score as JSON shows it: 42, not 42.0."""
    return int(score) if float(score).is_integer() else score


def _number(value: Any, key: str) -> int | float:
    if type(value) not in (int, float):
        raise StoreError(not_a_number(key))
    return value  # type: ignore[no-any-return]


def not_a_number(key: str) -> str:
    return f"incr: the value at {key!r} is not a number"


def out_of_range(key: str) -> str:
    return f"incr: the result at {key!r} is out of range (64-bit integer or finite float)"


def nan_score(board: str, member: str) -> str:
    return f"lb_incr: the score of {member!r} on {board!r} would not be a number"


def check_increment(by: Any) -> None:
    if type(by) not in (int, float):
        raise StoreError(f"incr: 'by' must be an int or a float, not {type(by).__name__}")


def check_score(what: str, score: Any) -> None:
    if type(score) not in (int, float) or score != score:
        raise StoreError(f"{what} must be an int or float and not NaN, not {score!r}")


def check_member(member: Any) -> None:
    if type(member) is not str:
        raise StoreError(f"leaderboard members must be str, not {type(member).__name__}")


def check_count(what: str, value: Any, minimum: int, optional: bool = False) -> None:
    if optional and value is None:
        return
    if type(value) is not int or value < minimum:
        raise StoreError(f"{what} must be an int >= {minimum}, not {value!r}")


def check_index(value: Any) -> None:
    if type(value) is not int:
        raise StoreError(f"list_range: start and stop must be ints, not {value!r}")


def checked_sum(key: str, value: int | float) -> int | float:
    """``value``, if it is a signed 64-bit int or a finite float (as Redis requires)."""
    if type(value) is int:
        if not INT64_MIN <= value <= INT64_MAX:
            raise StoreError(out_of_range(key))
    elif not math.isfinite(value):
        raise StoreError(out_of_range(key))
    return value


class MemoryBackend(StoreBackend):
    """The embedded store for one process: dictionaries behind one asyncio lock.

    Each operation runs to completion on the event loop without awaiting
    inside the critical section, so the lock is never contended for long.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._values: dict[str, bytes] = {}
        self._lists: dict[str, deque[bytes]] = {}
        self._boards: dict[str, dict[str, float]] = {}

    async def get(self, key: str, default: Any = None) -> Any:
        raw = self._values.get(key)
        return default if raw is None else orjson.loads(raw)

    async def set(self, key: str, value: Any) -> None:
        raw = _dumps(value)
        async with self._lock:
            self._values[key] = raw

    async def delete(self, key: str) -> bool:
        async with self._lock:
            found = False
            for space in (self._values, self._lists, self._boards):
                if space.pop(key, None) is not None:
                    found = True
            return found

    async def incr(self, key: str, by: int | float = 1) -> int | float:
        check_increment(by)
        async with self._lock:
            raw = self._values.get(key)
            current = 0 if raw is None else _number(orjson.loads(raw), key)
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
            raw = self._values.get(key)
            current = default if raw is None else orjson.loads(raw)
            value = fn(current)
            self._values[key] = _dumps(value)
            if topic is not None:
                self._publish(topic, event(value) if event is not None else value)
            return value

    async def list_append(
        self, key: str, value: Any, maxlen: int | None = None, *, topic: str | None = None
    ) -> int:
        check_count("list_append: maxlen", maxlen, 1, optional=True)
        raw = _dumps(value)
        async with self._lock:
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
        check_member(member)
        check_score("lb_add: score", score)
        check_count("lb_add: keep", keep, 1, optional=True)
        check_count("lb_add: top", top, 1 if topic is not None else 0)
        async with self._lock:
            scores = self._boards.setdefault(board, {})
            scores[member] = float(score)
            if keep is not None and len(scores) > keep:
                for loser, _ in heapq.nsmallest(len(scores) - keep, scores.items(), key=_rank_key):
                    del scores[loser]
            best = heapq.nlargest(top, scores.items(), key=_rank_key) if top > 0 else []
            if topic is not None:
                self._publish(topic, [plain_number(s) for _, s in best])
            return best

    async def lb_incr(self, board: str, member: str, by: float = 1) -> float:
        check_member(member)
        check_score("lb_incr: by", by)
        async with self._lock:
            scores = self._boards.setdefault(board, {})
            value = scores.get(member, 0.0) + float(by)
            if value != value:
                raise StoreError(nan_score(board, member))
            scores[member] = value
            return value

    async def lb_top(self, board: str, n: int) -> list[tuple[str, float]]:
        check_count("lb_top: n", n, 0)
        scores = self._boards.get(board, {})
        return heapq.nlargest(n, scores.items(), key=_rank_key)

    async def lb_rank(self, board: str, member: str) -> int | None:
        check_member(member)
        scores = self._boards.get(board, {})
        if member not in scores:
            return None
        mine = _rank_key((member, scores[member]))
        return sum(1 for item in scores.items() if _rank_key(item) > mine)

    async def lb_score(self, board: str, member: str) -> float | None:
        check_member(member)
        return self._boards.get(board, {}).get(member)


def _rank_key(item: tuple[str, float]) -> tuple[float, str]:
    # Redis orders equal scores by member, and ZREVRANGE reverses both.
    return (item[1], item[0])


def backend_from_url(url: str, **options: Any) -> StoreBackend:
    """The backend a URL names: ``memory://`` or ``redis://host:port/db``.

    ``rediss://`` (TLS) and ``unix:///path.sock?db=0`` work too. ``options``
    go to ``RedisBackend`` (``namespace``, timeouts, ...); the memory backend
    takes none.
    """
    scheme = url.partition("://")[0].lower()
    if scheme == "memory":
        if options:
            raise StoreError(f"the memory store takes no options (got {', '.join(options)})")
        return MemoryBackend()
    if scheme in ("redis", "rediss", "unix"):
        try:
            from .redis_store import RedisBackend
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.partition(".")[0] != "redis":
                raise
            raise StoreError(
                "the Redis store needs the 'redis' package: pip install 'tether[redis]'"
            ) from None
        return RedisBackend(url, **options)
    raise StoreError(
        f"unknown store URL {url.partition('://')[0] + '://'!r}: "
        "use memory:// or redis://host:port/db"
    )


class Store:
    """The handle functions use for global state; the backend is chosen at serve time."""

    def __init__(self, backend: StoreBackend | None = None) -> None:
        self._own: StoreBackend = backend or MemoryBackend()
        self.backend: StoreBackend = self._own
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sync = SyncStore(self)

    def attach(self, runtime: Any) -> None:
        """Serve through ``runtime`` (an ``app.runtime.Runtime``): its backend, its loop
        (``sync`` calls are routed to it) and its topics (for operations that publish
        their change). Called by ``App.attach``."""
        self.backend = runtime.backend
        self._loop = runtime.loop
        self.backend.publisher = runtime.publish

    def detach(self, runtime: Any) -> None:
        """Stop serving through ``runtime``; the store's own backend is back."""
        runtime.backend.publisher = None
        self._loop = None
        self.backend = self._own

    def get(self, key: str, default: Any = None) -> Awaitable[Any]:
        return self.backend.get(key, default)

    def set(self, key: str, value: Any) -> Awaitable[None]:
        return self.backend.set(key, value)

    def delete(self, key: str) -> Awaitable[bool]:
        return self.backend.delete(key)

    def incr(self, key: str, by: int | float = 1) -> Awaitable[int | float]:
        return self.backend.incr(key, by)

    def update(
        self,
        key: str,
        fn: Callable[[Any], Any],
        default: Any = None,
        *,
        topic: str | None = None,
        event: Callable[[Any], Any] | None = None,
    ) -> Awaitable[Any]:
        """Atomically replace the value at ``key`` with ``fn(value)``; return the new value.

        ``fn`` must be a quick, pure function of its argument: a distributed
        backend may call it more than once. With ``topic``, the new value (or
        ``event(new value)``) is published there atomically with the change,
        so subscribers see changes in the order they happened.
        """
        return self.backend.update(key, fn, default, topic=topic, event=event)

    def list_append(
        self, key: str, value: Any, maxlen: int | None = None, *, topic: str | None = None
    ) -> Awaitable[int]:
        """Append; keep only the newest ``maxlen``; with ``topic``, publish ``value`` there
        atomically with the append. Returns the new length."""
        return self.backend.list_append(key, value, maxlen, topic=topic)

    def list_range(self, key: str, start: int = 0, stop: int = -1) -> Awaitable[list[Any]]:
        return self.backend.list_range(key, start, stop)

    def lb_add(
        self,
        board: str,
        member: str,
        score: float,
        keep: int | None = None,
        *,
        top: int = 0,
        topic: str | None = None,
    ) -> Awaitable[list[tuple[str, float]]]:
        """Set ``member``'s score; with ``keep``, only the best ``keep`` members stay.

        Returns the best ``top`` ``(member, score)`` pairs after the change; with
        ``topic``, their scores (a list of numbers, best first) are published
        there atomically with the change.
        """
        return self.backend.lb_add(board, member, score, keep, top=top, topic=topic)

    def lb_incr(self, board: str, member: str, by: float = 1) -> Awaitable[float]:
        return self.backend.lb_incr(board, member, by)

    def lb_top(self, board: str, n: int) -> Awaitable[list[tuple[str, float]]]:
        """The ``n`` best ``(member, score)`` pairs, highest score first."""
        return self.backend.lb_top(board, n)

    def lb_rank(self, board: str, member: str) -> Awaitable[int | None]:
        """0-based rank of ``member`` (0 is the best), or None."""
        return self.backend.lb_rank(board, member)

    def lb_score(self, board: str, member: str) -> Awaitable[float | None]:
        return self.backend.lb_score(board, member)

    def run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a store coroutine from a worker thread and wait for its result."""
        loop = self._loop
        if loop is None or loop.is_closed():
            coro.close()
            raise StoreError(
                "store.sync is used while no server is running; "
                "call it from a function served by tether"
            )
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop or threading.get_ident() == getattr(loop, "_thread_id", None):
            coro.close()
            raise StoreError(
                "store.sync blocks and cannot be used on the event loop "
                "(from an async function); use 'await store.<operation>(...)' instead"
            )
        return asyncio.run_coroutine_threadsafe(coro, loop).result()


class SyncStore:
    """Blocking twins of the ``Store`` operations, for sync functions in the thread pool."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Callable[..., Any]:
        op = getattr(StoreBackend, name, None)
        if op is None or name.startswith("_") or name == "close":
            raise AttributeError(f"the store has no operation {name!r}")
        method = getattr(self._store, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._store.run_sync(method(*args, **kwargs))

        call.__name__ = name
        return call
