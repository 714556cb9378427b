"""Session records: a parked session's state, kept where any node can resume it.

When a connection drops, its node parks the session for the resume grace
period and, on a shared backend, saves the session's record too; the node
the client reconnects to claims the record and rebuilds the session from it.

At most one connection in the cluster holds a session. Each record names its
owner (a fence: the node and the token it saved under) and whether the session
is held (its client connected) or parked. A claim is one Lua script: it refuses
a held record while its node is alive (``SessionHeld``), takes a parked one (or
one whose node died) and leaves a tombstone naming the claimer, so of any
number of concurrent claims one wins. Saves are conditional on the fence: a
node whose session was claimed away can no longer write it. A node proves it
is alive with one key it renews (``node_alive``).

This is separate from the data interface (``backend.StoreBackend``): user
code never sees it, and a backend offers it as ``backend.sessions`` (None
for the memory backend, whose sessions resume on their own node).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar, cast

import orjson

from ..cluster.channels import node_key, session_key
from .checks import dumps_value

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["RedisSessionRecords", "SessionHeld", "SessionRecords"]

T = TypeVar("T")


class SessionHeld(Exception):
    """The session is held by a live connection (on this node or another)."""


class SessionRecords(Protocol):
    """Resumable sessions' records, by resume token, fenced by their owner."""

    async def save(
        self, token: str, record: dict[str, Any], ttl: float, *, node: str, held: bool
    ) -> bool:
        """Keep ``record`` (JSON-serialisable) for ``ttl`` seconds under ``token``, as
        held (or parked) by ``node``; False, writing nothing, when another owner
        claimed it meanwhile."""
        ...

    async def claim(
        self, token: str, *, node: str, ttl: float, local: bool = False
    ) -> dict[str, Any] | None:
        """Take the record away and return it, or None when there is none (any more).

        Raises ``SessionHeld`` while its holder is connected and its node alive.
        A tombstone stays ``ttl`` seconds, fencing off the former owner's saves.
        Atomic: of any number of concurrent claims, on any nodes, one gets it.
        ``local``: ``node`` parked the session itself and takes it back; a record
        not saved yet is then won (``{}``), not lost.
        """
        ...

    async def delete(self, token: str, *, node: str, ttl: float) -> None:
        """Forget the record if ``node`` owns it (nothing happens otherwise); a
        tombstone stays ``ttl`` seconds, so that no late save brings it back."""
        ...

    async def node_alive(self, node: str, ttl: float) -> None:
        """``node`` is alive for ``ttl`` more seconds (its held sessions stay held)."""
        ...


class _Call(Protocol):
    def __call__(self, op: Awaitable[T], /) -> Awaitable[T]: ...


# KEYS[1]: the record; ARGV: fence, node, held ('1'/'0'), data, ttl in ms.
_SAVE: Final = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner and owner ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'node', ARGV[2], 'held', ARGV[3], 'data', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""

# KEYS[1]: the record; ARGV: the claimer's fence, the node keys' prefix, ttl in ms,
# the claimer's node, '1' when the claimer parked the session itself.
_CLAIM: Final = """
local h = redis.call('HMGET', KEYS[1], 'held', 'node', 'data')
if not h[1] then
  if ARGV[5] ~= '1' then return false end
  redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'held', 'moved')
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 'absent'
end
if h[1] == 'moved' or not h[3] then return false end
if h[1] == '1' and h[2] ~= ARGV[4] and redis.call('EXISTS', ARGV[2] .. h[2]) == 1 then
  return 'held'
end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'held', 'moved')
redis.call('HDEL', KEYS[1], 'data', 'node')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {h[3]}
"""

# KEYS[1]: the record; ARGV: the fence, ttl in ms.
_DELETE: Final = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'owner', 'gone', 'held', 'moved')
  redis.call('HDEL', KEYS[1], 'data', 'node')
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


def fence(node: str, token: str) -> str:
    """Who owns the record under ``token``: the node that saves it, for that token."""
    return f"{node}:{token}"


class RedisSessionRecords(SessionRecords):
    """Session records in Redis, on the connection pool of a ``RedisBackend``.

    ``call`` awaits one Redis call and turns its failures into store errors
    (the backend's own, so both report the same way).
    """

    def __init__(self, client: aioredis.Redis, namespace: str, call: _Call) -> None:
        self._client = client
        self._namespace = namespace
        self._call = call
        self._save = client.register_script(_SAVE)
        self._claim = client.register_script(_CLAIM)
        self._delete = client.register_script(_DELETE)

    async def save(
        self, token: str, record: dict[str, Any], ttl: float, *, node: str, held: bool
    ) -> bool:
        raw = dumps_value(record)
        key = session_key(self._namespace, token)
        args: list[str | bytes | int] = [
            fence(node, token),
            node,
            "1" if held else "0",
            raw,
            max(1, int(ttl * 1000)),
        ]
        return bool(await self._call(self._save(keys=[key], args=args)))

    async def claim(
        self, token: str, *, node: str, ttl: float, local: bool = False
    ) -> dict[str, Any] | None:
        key = session_key(self._namespace, token)
        args: list[str | int] = [
            f"claimed-by:{node}",
            node_key(self._namespace, ""),
            max(1, int(ttl * 1000)),
            node,
            "1" if local else "0",
        ]
        found = await self._call(self._claim(keys=[key], args=args))
        if found is None:
            return None
        if found in (b"held", "held"):
            raise SessionHeld(token)
        if found in (b"absent", "absent"):
            return {}
        return cast(dict[str, Any], orjson.loads(found[0]))

    async def delete(self, token: str, *, node: str, ttl: float) -> None:
        key = session_key(self._namespace, token)
        args: list[str | int] = [fence(node, token), max(1, int(ttl * 1000))]
        await self._call(self._delete(keys=[key], args=args))

    async def node_alive(self, node: str, ttl: float) -> None:
        key = node_key(self._namespace, node)
        await self._call(self._client.set(key, b"1", px=max(1, int(ttl * 1000))))
