"""Store fixtures: one more client of a store, on the memory backend or a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis

from tests.redis_server import RedisServer
from tests.store.helpers import BOUND, OpenBackend
from tether.store import MemoryBackend, Store, StoreBackend
from tether.store.redis_backend import RedisBackend


@pytest.fixture(params=["memory", "redis"])
async def open_backend(request: pytest.FixtureRequest) -> AsyncIterator[OpenBackend]:
    """``open_backend()`` gives one more client of the same store.

    For memory that is the one backend (a process has one store); for Redis
    it is a new ``RedisBackend`` (its own connection pool) on the test's
    namespace, like another tether process would have.
    """
    if request.param == "memory":
        shared = MemoryBackend()
        yield lambda **_: shared
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    namespace: str = request.getfixturevalue("redis_namespace")
    opened: list[RedisBackend] = []

    def open_redis(**options: Any) -> StoreBackend:
        backend = RedisBackend(server.url, namespace, **options)
        opened.append(backend)
        return backend

    yield open_redis
    for backend in opened:
        await backend.close()


@pytest.fixture
def store(open_backend: OpenBackend) -> Store:
    return Store(open_backend())


@pytest.fixture
def raw_redis(redis_server: RedisServer) -> Iterator[Any]:
    """A plain (blocking) redis-py client of the test's redis-server, to look underneath."""
    client = redis.Redis.from_url(redis_server.url, socket_timeout=BOUND)
    yield client
    client.close()
