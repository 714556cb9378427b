"""Session records: a parked session's state, kept where any node can resume it.

When a connection drops, its node parks the session for the resume grace
period and, on a shared backend, saves the session's record too; the node
the client reconnects to claims the record and rebuilds the session from it.
A claim takes the record away, atomically, so one session resumes on one
node only; the node that parked it learns, by failing to claim it when its
grace timer fires, that the session lives on elsewhere.

This is separate from the data interface (``backend.StoreBackend``): user
code never sees it, and a backend offers it as ``backend.sessions`` (None
for the memory backend, whose sessions resume on their own node).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import orjson

from ..cluster.channels import session_key
from .checks import dumps_value

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["RedisSessionRecords", "SessionRecords"]

T = TypeVar("T")


class SessionRecords(Protocol):
    """Resumable sessions' records, by resume token."""

    async def save(self, token: str, record: dict[str, Any], ttl: float) -> None:
        """Keep ``record`` (JSON-serialisable) for ``ttl`` seconds, replacing an older one."""
        ...

    async def claim(self, token: str) -> dict[str, Any] | None:
        """Take the record away and return it, or None when there is none (any more).

        Atomic: of any number of concurrent claims, on any nodes, one gets it.
        """
        ...

    async def delete(self, token: str) -> None:
        """Forget the record (nothing happens when there is none)."""
        ...


class _Call(Protocol):
    def __call__(self, op: Awaitable[T], /) -> Awaitable[T]: ...


class RedisSessionRecords(SessionRecords):
    """Session records in Redis, on the connection pool of a ``RedisBackend``.

    ``call`` awaits one Redis call and turns its failures into store errors
    (the backend's own, so both report the same way).
    """

    def __init__(self, client: aioredis.Redis, namespace: str, call: _Call) -> None:
        self._client = client
        self._namespace = namespace
        self._call = call

    async def save(self, token: str, record: dict[str, Any], ttl: float) -> None:
        raw = dumps_value(record)
        key = session_key(self._namespace, token)
        await self._call(self._client.set(key, raw, px=max(1, int(ttl * 1000))))

    async def claim(self, token: str) -> dict[str, Any] | None:
        raw = await self._call(self._client.getdel(session_key(self._namespace, token)))
        return None if raw is None else cast(dict[str, Any], orjson.loads(raw))

    async def delete(self, token: str) -> None:
        await self._call(self._client.delete(session_key(self._namespace, token)))
