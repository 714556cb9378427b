"""The Redis backend alone: namespaces, key layout, optimistic-update retries, the
connection pool, and what happens when redis-server dies, hangs or stops."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import pytest

from tests.redis_server import RedisServer
from tests.store.helpers import bounded
from tether.store import StoreError, StoreUnavailable
from tether.store.redis_backend import RedisBackend


async def test_two_namespaces_on_one_redis_do_not_see_each_other(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    first = RedisBackend(redis_server.url, redis_namespace + "a")
    second = RedisBackend(redis_server.url, redis_namespace + "b")
    try:
        await first.set("k", "first")
        await first.list_append("l", 1)
        await first.lb_add("b", "m", 1)
        assert await second.get("k") is None
        assert await second.list_range("l") == []
        assert await second.lb_top("b", 5) == []
        assert await second.delete("k") is False
        await second.set("k", "second")
        assert await first.get("k") == "first"
    finally:
        await first.close()
        await second.close()


async def test_keys_live_under_the_namespace_with_one_prefix_per_kind(
    redis_server: RedisServer, redis_namespace: str, raw_redis: Any
) -> None:
    backend = RedisBackend(redis_server.url, redis_namespace)
    try:
        await backend.set("k", {"a": 1})
        await backend.list_append("k", "x")
        await backend.lb_add("k", "m", 2)
        assert sorted(raw_redis.keys(f"{redis_namespace}:*")) == [
            f"{redis_namespace}:lb:k".encode(),
            f"{redis_namespace}:list:k".encode(),
            f"{redis_namespace}:v:k".encode(),
        ]
        assert raw_redis.get(f"{redis_namespace}:v:k") == b'{"a":1}'
    finally:
        await backend.close()


async def test_floats_are_stored_in_their_shortest_exact_text(
    redis_server: RedisServer, redis_namespace: str, raw_redis: Any
) -> None:
    backend = RedisBackend(redis_server.url, redis_namespace)
    try:
        await backend.incr("a", 0.1)
        await backend.incr("a", 0.2)
        await backend.incr("b", 1.5)
        await backend.incr("b", 1.5)
        assert raw_redis.get(f"{redis_namespace}:v:a") == b"0.30000000000000004"
        assert raw_redis.get(f"{redis_namespace}:v:b") == b"3.0"
    finally:
        await backend.close()


async def test_a_key_of_another_redis_type_is_a_store_error(
    redis_server: RedisServer, redis_namespace: str, raw_redis: Any
) -> None:
    raw_redis.rpush(f"{redis_namespace}:v:k", "x")
    raw_redis.set(f"{redis_namespace}:lb:b", "x")
    backend = RedisBackend(redis_server.url, redis_namespace)
    try:
        for call in (
            backend.get("k"),
            backend.incr("k"),
            backend.update("k", lambda v: v),
            backend.lb_top("b", 3),
        ):
            with pytest.raises(StoreError, match="WRONGTYPE"):
                await call
    finally:
        await backend.close()


async def test_update_calls_fn_again_when_another_client_wrote_in_between(
    redis_server: RedisServer, redis_namespace: str, raw_redis: Any
) -> None:
    backend = RedisBackend(redis_server.url, redis_namespace)
    seen: list[Any] = []

    def fn(value: int) -> int:
        seen.append(value)
        if len(seen) == 1:
            raw_redis.set(f"{redis_namespace}:v:n", b"100")
        return value + 1

    try:
        await backend.set("n", 1)
        assert await bounded(backend.update("n", fn)) == 101
        assert seen == [1, 100]
        assert await backend.get("n") == 101
    finally:
        await backend.close()


async def test_concurrent_updates_through_one_backend_never_need_a_retry(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    backend = RedisBackend(redis_server.url, redis_namespace, update_retries=0)
    calls = 0

    def bump(value: int) -> int:
        nonlocal calls
        calls += 1
        return value + 1

    try:
        await bounded(asyncio.gather(*(backend.update("n", bump, 0) for _ in range(50))))
        assert await backend.get("n") == 50
        assert calls == 50
    finally:
        await backend.close()


async def test_update_gives_up_with_a_store_error_after_update_retries(
    redis_server: RedisServer, redis_namespace: str, raw_redis: Any
) -> None:
    backend = RedisBackend(redis_server.url, redis_namespace, update_retries=3)
    calls = 0

    def always_contended(value: int) -> int:
        nonlocal calls
        calls += 1
        raw_redis.incr(f"{redis_namespace}:v:n")
        return -1

    try:
        await backend.set("n", 0)
        with pytest.raises(StoreError, match="gave up after 4 attempts"):
            await bounded(backend.update("n", always_contended))
        assert calls == 4
        assert await backend.get("n") == 4
    finally:
        await backend.close()


async def test_a_pool_of_two_connections_serves_many_concurrent_operations(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    backend = RedisBackend(redis_server.url, redis_namespace, max_connections=2)
    try:
        await bounded(asyncio.gather(*(backend.incr("n") for _ in range(200))))
        await bounded(asyncio.gather(*(backend.update("u", lambda v: v + 1, 0) for _ in range(20))))
        assert await backend.get("n") == 200
        assert await backend.get("u") == 20
    finally:
        await backend.close()


def test_a_namespace_with_a_colon_or_a_bad_setting_is_refused() -> None:
    with pytest.raises(StoreError, match="namespace"):
        RedisBackend("redis://127.0.0.1:1/0", "a:b")
    with pytest.raises(StoreError, match="namespace"):
        RedisBackend("redis://127.0.0.1:1/0", "")
    with pytest.raises(StoreError, match="socket_timeout"):
        RedisBackend("redis://127.0.0.1:1/0", socket_timeout=0)
    with pytest.raises(StoreError, match="update_retries"):
        RedisBackend("redis://127.0.0.1:1/0", update_retries=-1)
    with pytest.raises(StoreError, match="cannot use the Redis URL"):
        RedisBackend("redis://127.0.0.1:notaport/0")


async def test_a_redis_nobody_listens_on_is_store_unavailable_without_the_password(
    redis_namespace: str,
) -> None:
    port = _closed_port()
    backend = RedisBackend(f"redis://:hunter2@127.0.0.1:{port}/0", redis_namespace)
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await bounded(backend.get("k"))
        message = str(caught.value)
        assert f"127.0.0.1:{port}" in message
        assert "hunter2" not in message
        assert isinstance(caught.value, StoreError)
    finally:
        await backend.close()


def _closed_port() -> int:
    """A loopback port nothing listens on (bound for a moment, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _every_operation(backend: RedisBackend) -> list[Callable[[], Any]]:
    return [
        lambda: backend.get("k"),
        lambda: backend.set("k", 1),
        lambda: backend.delete("k"),
        lambda: backend.incr("n"),
        lambda: backend.update("u", lambda v: v),
        lambda: backend.list_append("l", 1, maxlen=5),
        lambda: backend.list_range("l"),
        lambda: backend.lb_add("b", "m", 1, keep=3),
        lambda: backend.lb_incr("b", "m"),
        lambda: backend.lb_top("b", 3),
        lambda: backend.lb_rank("b", "m"),
        lambda: backend.lb_score("b", "m"),
    ]


async def test_a_killed_redis_makes_every_operation_unavailable_until_it_restarts(
    own_redis_server: RedisServer, redis_namespace: str
) -> None:
    backend = RedisBackend(own_redis_server.url, redis_namespace)
    try:
        # Warm the pool and the script cache, so stale connections are exercised.
        for op in _every_operation(backend):
            await bounded(op())
        assert await backend.incr("n") == 2

        own_redis_server.kill()
        for op in _every_operation(backend):
            with pytest.raises(StoreUnavailable, match="unavailable"):
                await bounded(op())

        own_redis_server.restart()
        # Nothing was persisted; the same backend reconnects and reloads its scripts.
        assert await bounded(backend.get("n")) is None
        assert await bounded(backend.incr("n", 5)) == 5
        assert await bounded(backend.list_append("l", "x", maxlen=2)) == 1
        await bounded(backend.lb_add("b", "m", 1, keep=1))
        assert await bounded(backend.lb_top("b", 5)) == [("m", 1.0)]
        assert await bounded(backend.update("u", lambda v: v + 1, 0)) == 1
    finally:
        await backend.close()


async def test_a_hung_redis_times_out_as_unavailable_and_recovers_when_it_resumes(
    own_redis_server: RedisServer, redis_namespace: str
) -> None:
    backend = RedisBackend(
        own_redis_server.url, redis_namespace, socket_timeout=0.5, socket_connect_timeout=0.5
    )
    try:
        await backend.set("k", "v")
        own_redis_server.pause()
        try:
            with pytest.raises(StoreUnavailable, match="Timeout"):
                await bounded(backend.get("k"))
            with pytest.raises(StoreUnavailable, match="Timeout"):
                await bounded(backend.update("k", lambda v: v))
        finally:
            own_redis_server.resume()
        assert await bounded(backend.get("k")) == "v"
    finally:
        await backend.close()


async def test_a_cleanly_stopped_redis_is_unavailable_and_the_backend_recovers(
    own_redis_server: RedisServer, redis_namespace: str
) -> None:
    backend = RedisBackend(own_redis_server.url, redis_namespace)
    try:
        await backend.set("k", 1)
        own_redis_server.stop()
        with pytest.raises(StoreUnavailable):
            await bounded(backend.incr("k"))
        own_redis_server.restart()
        assert await bounded(backend.incr("k")) == 1
    finally:
        await backend.close()
