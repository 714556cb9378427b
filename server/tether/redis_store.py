"""The Redis store backend: the same atomic operations, shared by every tether process.

Each operation is one round trip: a single command, or a Lua script where
two commands must happen together (append + trim, add + keep, the typed
``incr``). ``update`` is the exception by nature: ``fn`` is Python, so it runs
here between an optimistic WATCH/GET and a MULTI/SET/EXEC, and is retried
(with a short jittered backoff) when another writer got in between. Updates
of one key from one backend queue locally first, so the only writers that
can make an update retry are other processes.

Keys, for a namespace ``ns`` (default ``tether``)::

    ns:v:<key>      values (JSON text)
    ns:list:<key>   lists (RPUSH/LRANGE of JSON texts)
    ns:lb:<board>   leaderboards (sorted sets)

Each kind has its own prefix so that a value, a list and a board may share a
name (as in the memory backend) and no user key can collide with another
kind's key. Namespaces may not contain ``:`` so two never overlap.

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

from .protocol import encode_event, event_prefix
from .store import (
    MAX_UPDATE_RETRIES,
    StoreBackend,
    StoreError,
    StoreUnavailable,
    _dumps,
    check_count,
    check_increment,
    check_index,
    check_member,
    check_score,
    nan_score,
    not_a_number,
    out_of_range,
)

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_POOL_TIMEOUT",
    "DEFAULT_SOCKET_CONNECT_TIMEOUT",
    "DEFAULT_SOCKET_TIMEOUT",
    "DEFAULT_UPDATE_BACKOFF",
    "RedisBackend",
]

T = TypeVar("T")

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

# ARGV[1]: the increment as text; ARGV[2]: 'i' for an int increment, 'f' for a float.
# Integers stay exact through INCRBY (the result is read back as text, since
# Lua numbers are doubles). Anything involving a float is added here as a
# double, like Python does (INCRBYFLOAT uses long doubles and prints 3.0 as
# "3", which would read back as an int), and stored in its shortest exact form.
_INCR = """
local raw = redis.call('GET', KEYS[1])
if ARGV[2] == 'i' and (not raw or string.match(raw, '^%-?%d+$')) then
  local done = redis.pcall('INCRBY', KEYS[1], ARGV[1])
  if type(done) == 'table' and done.err then
    return redis.error_reply('TETHER_RANGE')
  end
  return redis.call('GET', KEYS[1])
end
local current = 0
if raw then
  current = tonumber(raw)
  if current == nil then
    return redis.error_reply('TETHER_NOTNUM')
  end
end
local value = current + tonumber(ARGV[1])
if value ~= value or value == math.huge or value == -math.huge then
  return redis.error_reply('TETHER_RANGE')
end
local text
for digits = 15, 17 do
  text = string.format('%.' .. digits .. 'g', value)
  if tonumber(text) == value then break end
end
if not string.find(text, '[%.e]') then
  text = text .. '.0'
end
redis.call('SET', KEYS[1], text)
return text
"""

# ARGV[1]: the JSON value; ARGV[2]: maxlen or ''; ARGV[3]: channel or '';
# ARGV[4]: the event frame to publish there (atomically with the append).
_LIST_APPEND = """
local n = redis.call('RPUSH', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then
  local maxlen = tonumber(ARGV[2])
  if n > maxlen then
    redis.call('LTRIM', KEYS[1], -maxlen, -1)
    n = maxlen
  end
end
if ARGV[3] ~= '' then
  redis.call('PUBLISH', ARGV[3], ARGV[4])
end
return n
"""

# ARGV[1]: score; ARGV[2]: member; ARGV[3]: keep or ''; ARGV[4]: top (0: none);
# ARGV[5]: channel or ''; ARGV[6]: the event frame's prefix, up to its data.
# Returns the top entries as [member, score, ...]; publishes their scores.
_LB_ADD = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] ~= '' then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[3]) - 1)
end
local top = tonumber(ARGV[4])
if top == 0 then
  return {}
end
local best = redis.call('ZREVRANGE', KEYS[1], 0, top - 1, 'WITHSCORES')
if ARGV[5] ~= '' then
  local scores = {}
  for i = 2, #best, 2 do
    scores[#scores + 1] = best[i]
  end
  redis.call('PUBLISH', ARGV[5], ARGV[6] .. '[' .. table.concat(scores, ',') .. ']}')
end
return best
"""


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
    ) -> None:
        if not isinstance(namespace, str) or not namespace or ":" in namespace:
            raise StoreError(
                f"the namespace must be a non-empty str without ':', not {namespace!r}"
            )
        check_count("update_retries", update_retries, 0)
        check_count("max_connections", max_connections, 1)
        for name, seconds in (
            ("update_backoff", update_backoff),
            ("socket_timeout", socket_timeout),
            ("socket_connect_timeout", socket_connect_timeout),
            ("pool_timeout", pool_timeout),
        ):
            if not isinstance(seconds, (int, float)) or not seconds > 0:
                raise StoreError(f"{name} must be a positive number of seconds, not {seconds!r}")
        self.url = _redacted(url)
        self.namespace = namespace
        self.update_retries = update_retries
        self.update_backoff = float(update_backoff)
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
        self._incr = self._client.register_script(_INCR)
        self._list_append = self._client.register_script(_LIST_APPEND)
        self._lb_add = self._client.register_script(_LB_ADD)

    def __repr__(self) -> str:
        return f"RedisBackend({self.url!r}, namespace={self.namespace!r})"

    shared = True

    def channel(self, topic: str) -> str:
        """The pub/sub channel of a topic (the same as the node bridges listen to)."""
        return f"{self.namespace}:topic:{topic}"

    def _session(self, token: str) -> str:
        return f"{self.namespace}:session:{token}"

    async def session_save(self, token: str, record: dict[str, Any], ttl: float) -> None:
        raw = _dumps(record)
        await self._run(self._client.set(self._session(token), raw, px=max(1, int(ttl * 1000))))

    async def session_claim(self, token: str) -> dict[str, Any] | None:
        raw = await self._run(self._client.getdel(self._session(token)))
        return None if raw is None else cast(dict[str, Any], orjson.loads(raw))

    async def session_delete(self, token: str) -> None:
        await self._run(self._client.delete(self._session(token)))

    async def ping(self) -> bool:
        """True when Redis answers (for readiness checks)."""
        try:
            return bool(await self._run(self._client.ping()))
        except StoreError:
            return False

    def _value(self, key: str) -> str:
        return f"{self.namespace}:v:{key}"

    def _list(self, key: str) -> str:
        return f"{self.namespace}:list:{key}"

    def _board(self, board: str) -> str:
        return f"{self.namespace}:lb:{board}"

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

    async def set(self, key: str, value: Any) -> None:
        raw = _dumps(value)
        await self._run(self._client.set(self._value(key), raw))

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
                raise StoreError(not_a_number(key)) from None
            if reason.startswith("TETHER_RANGE"):
                raise StoreError(out_of_range(key)) from None
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
                    frame = None
                    if topic is not None:
                        frame = encode_event(topic, event(value) if event is not None else value)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(name, _dumps(value))
                    if frame is not None:
                        pipe.publish(self.channel(topic or ""), frame)
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
        raw = _dumps(value)
        limit = "" if maxlen is None else str(maxlen)
        channel = frame = b""
        if topic is not None:
            channel = self.channel(topic).encode()
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
        check_member(member)
        check_score("lb_add: score", score)
        check_count("lb_add: keep", keep, 1, optional=True)
        check_count("lb_add: top", top, 1 if topic is not None else 0)
        name = self._board(board)
        if keep is None and top == 0 and topic is None:
            await self._run(self._client.zadd(name, {member: score}))
            return []
        channel = prefix = b""
        if topic is not None:
            channel = self.channel(topic).encode()
            prefix = event_prefix(topic)
        flat = await self._run(
            self._lb_add(
                keys=[name],
                args=[
                    repr(float(score)),
                    member,
                    "" if keep is None else keep,
                    top,
                    channel,
                    prefix,
                ],
            )
        )
        return [(_text(flat[i]), float(flat[i + 1])) for i in range(0, len(flat), 2)]

    async def lb_incr(self, board: str, member: str, by: float = 1) -> float:
        check_member(member)
        check_score("lb_incr: by", by)
        try:
            score = await self._run(self._client.zincrby(self._board(board), by, member))
        except StoreError as exc:
            if isinstance(exc.__cause__, rerr.ResponseError) and "NaN" in str(exc.__cause__):
                raise StoreError(nan_score(board, member)) from None
            raise
        return float(cast(float, score))

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
        """Close every pooled connection (a later operation would open new ones)."""
        await self._client.aclose()
