"""The store's bounds: the memory store's key cap (``store_max_keys``) and expired
keys freeing their memory (``bounds.KeySpace``, on a fake clock); Redis' own TTLs
and ``maxmemory``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

import tether
from tests.conftest import RunningServer
from tests.redis_server import RedisServer
from tests.store.helpers import BOUND
from tether.cluster.channels import board_key, list_key, value_key
from tether.settings import Settings
from tether.store import MemoryBackend, StoreError
from tether.store.bounds import DEFAULT_MAX_KEYS, SWEEP_PER_WRITE
from tether.store.redis_backend import RedisBackend


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def backend(max_keys: int | None = None) -> tuple[MemoryBackend, Clock]:
    store = MemoryBackend(max_keys=max_keys)
    clock = Clock()
    store.keys.clock = clock
    return store, clock


async def test_a_new_key_past_the_cap_is_a_store_error_and_changes_nothing() -> None:
    store, _ = backend(max_keys=3)
    await store.set("a", 1)
    await store.list_append("a", 1)  # a list is a key of its own
    await store.lb_add("a", "m", 1)
    full = "the memory store is full: it holds 3 keys"
    refused: list[Callable[[], Any]] = [
        lambda: store.set("b", 1),
        lambda: store.incr("b"),
        lambda: store.update("b", lambda v: 1, 0),
        lambda: store.list_append("b", 1),
        lambda: store.lb_add("b", "m", 1),
        lambda: store.lb_incr("b", "m", 1),
    ]
    for write in refused:
        with pytest.raises(StoreError, match=full):
            await write()
    assert len(store.keys) == 3
    assert await store.get("b") is None
    assert await store.list_range("b") == []
    assert await store.lb_top("b", 1) == []


async def test_writes_to_existing_keys_go_on_at_the_cap() -> None:
    store, _ = backend(max_keys=3)
    await store.set("a", 1)
    await store.list_append("l", 1)
    await store.lb_add("b", "m", 1)
    await store.set("a", 2)
    assert await store.incr("a") == 3
    assert await store.update("a", lambda v: v * 2) == 6
    assert await store.list_append("l", 2) == 2
    await store.lb_add("b", "n", 2)
    assert await store.lb_incr("b", "m", 5) == 6
    assert await store.delete("a") is True
    await store.set("c", 1)  # a deleted key's slot is free again


async def test_expired_keys_free_their_slot_under_the_cap() -> None:
    store, clock = backend(max_keys=2)
    await store.set("a", 1, ttl=1)
    await store.list_append("l", 1)
    assert await store.expire("l", 2)
    with pytest.raises(StoreError):
        await store.set("b", 1)
    clock.now += 1.5
    await store.set("b", 1)  # "a" expired: its slot is free
    with pytest.raises(StoreError):
        await store.set("c", 1)
    clock.now += 1
    await store.set("c", 1)
    assert await store.get("a") is None
    assert await store.list_range("l") == []


async def test_expired_keys_are_reclaimed_by_a_sweep() -> None:
    store, clock = backend()
    n = 1000
    for i in range(n):
        await store.set(f"v{i}", i, ttl=1)
        await store.list_append(f"l{i}", i)
        await store.expire(f"l{i}", 1)
    assert len(store.keys) == 2 * n
    clock.now += 2
    assert store.keys.sweep() == 2 * n
    assert len(store.keys) == 0
    assert store.keys.expiring == 0


async def test_writes_reclaim_expired_keys_a_few_at_a_time() -> None:
    store, clock = backend()
    for i in range(10 * SWEEP_PER_WRITE):
        await store.set(f"v{i}", i, ttl=1)
    clock.now += 2
    await store.set("other", 0)
    assert len(store.keys) == 10 * SWEEP_PER_WRITE + 1 - SWEEP_PER_WRITE
    for _ in range(9):
        await store.set("other", 0)
    assert len(store.keys) == 1
    assert store.keys.expiring == 0


async def test_renewing_a_ttl_over_and_over_keeps_the_heap_small() -> None:
    store, _ = backend()
    for i in range(10_000):
        await store.set("k", i, ttl=60)
    assert store.keys.expiring == 1
    assert len(store.keys._heap) <= 2 + 64 + 1


def test_the_setting_and_the_backend_default_agree() -> None:
    assert Settings().store_max_keys == DEFAULT_MAX_KEYS
    assert MemoryBackend().keys.max_keys == DEFAULT_MAX_KEYS


def test_store_max_keys_reaches_the_apps_memory_store(
    serve_app: Callable[..., RunningServer],
) -> None:
    app = tether.App("bounded")
    serve_app(app, store_max_keys=2)
    assert isinstance(app.store.backend, MemoryBackend)
    assert app.store.backend.keys.max_keys == 2


# -- Redis: its own TTLs, and maxmemory as its bound ------------------------------------


async def test_redis_ttls_are_redis_own(redis_server: RedisServer, redis_namespace: str) -> None:
    store = RedisBackend(redis_server.url, redis_namespace)
    raw = redis.Redis.from_url(redis_server.url, socket_timeout=BOUND)
    try:
        await store.set("k", 1, ttl=60)
        assert 0 < raw.pttl(value_key(redis_namespace, "k")) <= 60_000
        await store.set("k", 2)
        assert raw.pttl(value_key(redis_namespace, "k")) == -1  # SET cleared it
        await store.list_append("k", 1)
        assert await store.expire("k", 30)
        assert 0 < raw.pttl(list_key(redis_namespace, "k")) <= 30_000
        assert 0 < raw.pttl(value_key(redis_namespace, "k")) <= 30_000
        assert raw.pttl(board_key(redis_namespace, "k")) == -2  # no board: none made
    finally:
        raw.close()
        await store.close()


async def test_a_write_past_redis_maxmemory_is_a_store_error(
    own_redis_server: RedisServer,
) -> None:
    raw = redis.Redis.from_url(own_redis_server.url, socket_timeout=BOUND)
    store = RedisBackend(own_redis_server.url, "bounded")
    try:
        used = int(raw.info("memory")["used_memory"])
        raw.config_set("maxmemory-policy", "noeviction")
        raw.config_set("maxmemory", used + (1 << 20))
        with pytest.raises(StoreError, match="maxmemory"):
            for i in range(10_000):
                await store.set(f"k{i}", "x" * 1000)
        await store.set("k0", "small")  # what is there can still be replaced
    finally:
        raw.config_set("maxmemory", 0)
        raw.close()
        await store.close()
