"""The Redis store backend: the same atomic operations, shared by every tether process.

(The operations' docs: ``backend.StoreBackend``.)

Each operation is one round trip: a single command, or a Lua script where
two commands must happen together (append + trim, add + keep, the typed
``incr``, an ``lb_incr`` that refuses an infinite sum). ``update`` is the
exception by nature: ``fn`` is Python, so it runs here between an optimistic
WATCH/GET and a MULTI/SET/EXEC, and is retried (with a short jittered
backoff) when another writer got in between. Updates
of one key from one backend queue locally first, so the only writers that
can make an update retry are other processes.

Keys and channels live under a namespace (default ``tether``), one prefix
per kind, all named in ``cluster/channels.py``. Session records
(``sessions.RedisSessionRecords``, ``backend.sessions``) share the pool.

Connections come from a bounded, blocking pool. redis-py's own retries are
off: a retry of a command that may already have run would apply ``incr`` or
``list_append`` twice. A refused, reset or timed-out connection raises
``StoreUnavailable`` instead, and the next operation reconnects, so the
backend recovers by itself when Redis is back.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import orjson
import redis.asyncio as aioredis
import redis.exceptions as rerr
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..cluster.channels import (
    board_key,
    check_namespace,
    current_key,
    list_key,
    topic_channel,
    value_key,
)
from ..errors import StoreError, StoreUnavailable
from ..protocol import encode_event, encode_event_data, retained_event_parts
from .backend import StoreBackend
from .bounds import RETAINED_TTL, check_ttl, ttl_ms
from .checks import (
    check_count,
    check_increment,
    check_index,
    check_lb_add,
    check_member,
    check_score,
    dumps_value,
    nan_score_message,
    not_a_number_message,
    out_of_range_message,
)
from .redis_scripts import INCR, LB_ADD, LB_INCR, LIST_APPEND, RETAIN
from .sessions import RedisSessionRecords

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_POOL_TIMEOUT",
    "DEFAULT_SOCKET_CONNECT_TIMEOUT",
    "DEFAULT_SOCKET_TIMEOUT",
    "DEFAULT_UPDATE_BACKOFF",
    "MAX_UPDATE_RETRIES",
    "RedisBackend",
]

T = TypeVar("T")

MAX_UPDATE_RETRIES: Final = 64
"""Attempts an ``update`` makes, after the first, when other writers keep winning."""

DEFAULT_SOCKET_CONNECT_TIMEOUT: Final = 2.0
"""Seconds to open a TCP connection to Redis before giving up."""
DEFAULT_SOCKET_TIMEOUT: Final = 5.0
"""Seconds to wait for one reply before the connection is declared dead."""
DEFAULT_MAX_CONNECTIONS: Final = 64
"""Connections one backend may hold open; more concurrent operations wait."""
DEFAULT_POOL_TIMEOUT: Final = 5.0
"""Seconds an operation waits for a free pooled connection."""
DEFAULT_UPDATE_BACKOFF: Final = 0.05
"""Longest pause (seconds) between two attempts of a contended ``update``."""
_UPDATE_BACKOFF_BASE: Final = 0.001


def _redacted(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _text(member: bytes | str) -> str:
    return member.decode() if isinstance(member, bytes) else member


class RedisBackend(StoreBackend):
    """The store in a Redis server (or anything speaking its protocol, 6.2+).

    ``url`` is a redis-py URL (``redis://[:password@]host:port/db``,
    ``rediss://...``, ``unix:///path?db=0``). Several backends (in one
    process or many) with the same URL and namespace share one store.
    """

    def __init__(
        self,
        url: str,
        namespace: str = "tether",
        *,
        update_retries: int = MAX_UPDATE_RETRIES,
        update_backoff: float = DEFAULT_UPDATE_BACKOFF,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        socket_connect_timeout: float = DEFAULT_SOCKET_CONNECT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
        retained_ttl: float = RETAINED_TTL,
    ) -> None:
        check_namespace(namespace)
        check_count("update_retries", update_retries, 0)
        check_count("max_connections", max_connections, 1)
        for name, seconds in (
            ("update_backoff", update_backoff),
            ("socket_timeout", socket_timeout),
            ("socket_connect_timeout", socket_connect_timeout),
            ("pool_timeout", pool_timeout),
            ("retained_ttl", retained_ttl),
        ):
            if not isinstance(seconds, (int, float)) or not seconds > 0:
                raise StoreError(f"{name} must be a positive number of seconds, not {seconds!r}")
        self.url = _redacted(url)
        self.namespace = namespace
        self.update_retries = update_retries
        self.update_backoff = float(update_backoff)
        self.retained_ttl_ms = max(1, round(retained_ttl * 1000))
        try:
            pool = aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=pool_timeout,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_connect_timeout,
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as exc:
            raise StoreError(f"cannot use the Redis URL {self.url!r}: {exc}") from None
        self._client = aioredis.Redis.from_pool(pool)
        self._update_locks: dict[str, asyncio.Lock] = {}
        self._update_waiters: dict[str, int] = {}
        self._incr = self._client.register_script(INCR)
        self._list_append = self._client.register_script(LIST_APPEND)
        self._lb_add = self._client.register_script(LB_ADD)
        self._lb_incr = self._client.register_script(LB_INCR)
        self.sessions = RedisSessionRecords(self._client, namespace, self._run)

    shared = True
    publisher: Callable[[str, Any, bool], None] | None = None

    def __repr__(self) -> str:
        return f"RedisBackend({self.url!r}, namespace={self.namespace!r})"

    async def ping(self) -> bool:
        try:
            return bool(await self._run(self._client.ping()))
        except StoreError:
            return False

    def _value(self, key: str) -> str:
        return value_key(self.namespace, key)

    def _list(self, key: str) -> str:
        return list_key(self.namespace, key)

    def _board(self, board: str) -> str:
        return board_key(self.namespace, board)

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(
            f"the Redis store at {self.url} is unavailable: {type(exc).__name__}: {exc}"
        )

    async def _run(self, op: Awaitable[T]) -> T:
        """Await one Redis call, turning its failures into store errors."""
        try:
            return await op
        except (rerr.ConnectionError, rerr.TimeoutError, OSError) as exc:
            raise self._unavailable(exc) from exc
        except rerr.ResponseError as exc:
            raise StoreError(f"Redis refused the operation: {exc}") from exc

    async def get(self, key: str, default: Any = None) -> Any:
        raw = await self._run(self._client.get(self._value(key)))
        return default if raw is None else orjson.loads(raw)

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        raw = dumps_value(value)
        seconds = check_ttl("set: ttl", ttl, optional=True)
        px = None if seconds is None else ttl_ms(seconds)
        await self._run(self._client.set(self._value(key), raw, px=px))

    async def expire(self, key: str, ttl: float) -> bool:
        ms = ttl_ms(check_ttl("expire: ttl", ttl) or 0.0)
        names = (self._value(key), self._list(key), self._board(key))

        async def pexpire_all() -> list[Any]:
            async with self._client.pipeline(transaction=True) as pipe:
                for name in names:
                    pipe.pexpire(name, ms)
                return await pipe.execute()

        done = await self._run(pexpire_all())
        return any(done)

    async def delete(self, key: str) -> bool:
        names = (self._value(key), self._list(key), self._board(key))
        removed: int = await self._run(self._client.delete(*names))
        return removed > 0

    async def incr(self, key: str, by: int | float = 1) -> int | float:
        check_increment(by)
        kind = "i" if type(by) is int else "f"
        try:
            text = await self._run(self._incr(keys=[self._value(key)], args=[repr(by), kind]))
        except StoreError as exc:
            reason = str(exc.__cause__) if exc.__cause__ is not None else ""
            if reason.startswith("TETHER_NOTNUM"):
                raise StoreError(not_a_number_message(key)) from None
            if reason.startswith("TETHER_RANGE"):
                raise StoreError(out_of_range_message(key)) from None
            raise
        value: int | float = orjson.loads(text)
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
        name = self._value(key)
        # Updates of one key from this backend take turns, so only writers in
        # other processes can invalidate a WATCH: at most one contender per
        # process instead of one per concurrent submit.
        lock = self._update_locks.get(name)
        if lock is None:
            lock = self._update_locks[name] = asyncio.Lock()
        self._update_waiters[name] = self._update_waiters.get(name, 0) + 1
        try:
            async with lock:
                return await self._update(key, name, fn, default, topic, event)
        finally:
            left = self._update_waiters.pop(name) - 1
            if left:
                self._update_waiters[name] = left
            else:
                del self._update_locks[name]

    async def _update(
        self,
        key: str,
        name: str,
        fn: Callable[[Any], Any],
        default: Any,
        topic: str | None,
        event: Callable[[Any], Any] | None,
    ) -> Any:
        for attempt in range(self.update_retries + 1):
            if attempt:
                cap = min(self.update_backoff, _UPDATE_BACKOFF_BASE * 2**attempt)
                await asyncio.sleep(random.uniform(0, cap))
            try:
                async with self._client.pipeline(transaction=True) as pipe:
                    await pipe.watch(name)
                    raw = await pipe.get(name)
                    value = fn(default if raw is None else orjson.loads(raw))
                    stored = dumps_value(value)  # checked before anything else is made of it
                    data = None
                    if topic is not None:
                        data = encode_event_data(event(value) if event is not None else value)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(name, stored)
                    if topic is not None and data is not None:
                        # The new value becomes the topic's current value in the same step.
                        head, tail = retained_event_parts(topic)
                        pipe.eval(
                            RETAIN,
                            1,
                            current_key(self.namespace, topic),
                            topic_channel(self.namespace, topic),
                            head,
                            tail,
                            data,
                            self.retained_ttl_ms,
                        )
                    await pipe.execute()
                    return value
            except rerr.WatchError:
                continue
            except (rerr.ConnectionError, rerr.TimeoutError, OSError) as exc:
                raise self._unavailable(exc) from exc
            except rerr.ResponseError as exc:
                raise StoreError(f"Redis refused the operation: {exc}") from exc
        raise StoreError(
            f"update: {key!r} kept changing under concurrent writers; "
            f"gave up after {self.update_retries + 1} attempts"
        )

    async def list_append(
        self, key: str, value: Any, maxlen: int | None = None, *, topic: str | None = None
    ) -> int:
        check_count("list_append: maxlen", maxlen, 1, optional=True)
        raw = dumps_value(value)
        limit = "" if maxlen is None else str(maxlen)
        channel = frame = b""
        if topic is not None:
            channel = topic_channel(self.namespace, topic).encode()
            frame = encode_event(topic, orjson.loads(raw))
        n: int = await self._run(
            self._list_append(keys=[self._list(key)], args=[raw, limit, channel, frame])
        )
        return n

    async def list_range(self, key: str, start: int = 0, stop: int = -1) -> list[Any]:
        check_index(start)
        check_index(stop)
        items = await self._run(self._client.lrange(self._list(key), start, stop))
        return [orjson.loads(raw) for raw in items]

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
        name = self._board(board)
        if keep is None and top == 0 and topic is None:
            await self._run(self._client.zadd(name, {member: value}))
            return []
        channel = head = tail = b""
        keys = [name]
        if topic is not None:
            channel = topic_channel(self.namespace, topic).encode()
            head, tail = retained_event_parts(topic)
            keys.append(current_key(self.namespace, topic))
        flat = await self._run(
            self._lb_add(
                keys=keys,
                args=[
                    repr(value),
                    member,
                    "" if keep is None else keep,
                    top,
                    channel,
                    head,
                    tail,
                    self.retained_ttl_ms,
                ],
            )
        )
        return [(_text(flat[i]), float(flat[i + 1])) for i in range(0, len(flat), 2)]

    async def lb_incr(self, board: str, member: str, by: float = 1) -> float:
        check_member(member)
        step = check_score("lb_incr: by", by)
        try:
            score = await self._run(
                self._lb_incr(keys=[self._board(board)], args=[repr(step), member])
            )
        except StoreError as exc:
            if str(exc.__cause__).startswith("TETHER_RANGE"):
                raise StoreError(nan_score_message(board, member)) from None
            raise
        return float(_text(score))

    async def lb_top(self, board: str, n: int) -> list[tuple[str, float]]:
        check_count("lb_top: n", n, 0)
        if n == 0:
            return []
        pairs = await self._run(
            self._client.zrevrange(self._board(board), 0, n - 1, withscores=True)
        )
        return [(_text(member), float(score)) for member, score in cast(list[Any], pairs)]

    async def lb_rank(self, board: str, member: str) -> int | None:
        check_member(member)
        rank = await self._run(self._client.zrevrank(self._board(board), member))
        return cast(int | None, rank)

    async def lb_score(self, board: str, member: str) -> float | None:
        check_member(member)
        score: float | None = await self._run(self._client.zscore(self._board(board), member))
        return score

    async def close(self) -> None:
        await self._client.aclose()
