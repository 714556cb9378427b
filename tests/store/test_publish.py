"""Store operations that publish their change atomically, on both backends (memory,
and a real redis-server listened to as the node bridges listen)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from tests.redis_server import RedisServer
from tether.cluster.channels import channel_topic, topic_channel, topic_pattern
from tether.store import MemoryBackend, StoreBackend, StoreError
from tether.store.redis_backend import RedisBackend


class Capture:
    """Collects what a backend publishes, as (topic, data) pairs, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.retained: list[bool] = []  # per event: does it change the topic's current value
        self.arrived = asyncio.Event()

    def add(self, topic: str, data: Any, retain: bool = False) -> None:
        self.events.append((topic, data))
        self.retained.append(retain)
        self.arrived.set()

    async def wait_for(self, count: int) -> list[tuple[str, Any]]:
        async with asyncio.timeout(10):
            while len(self.events) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.events


Events = tuple[StoreBackend, Capture]


@pytest.fixture(params=["memory", "redis"])
async def backend_and_events(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Events]:
    capture = Capture()
    if request.param == "memory":
        backend = MemoryBackend()
        backend.publisher = capture.add
        yield backend, capture
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    namespace: str = request.getfixturevalue("redis_namespace")
    redis_backend = RedisBackend(server.url, namespace)
    listener = aioredis.Redis.from_url(server.url)
    pubsub = listener.pubsub()
    await pubsub.psubscribe(topic_pattern(namespace))
    async with asyncio.timeout(10):  # until Redis has the subscription
        while (await pubsub.get_message(timeout=1)) is None:
            pass

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] == "pmessage":
                frame = orjson.loads(message["data"])
                assert frame["type"] == "event"
                assert message["channel"].decode() == topic_channel(namespace, frame["topic"])
                assert channel_topic(namespace, message["channel"]) == frame["topic"]
                capture.add(frame["topic"], frame["data"], "seq" in frame)

    task = asyncio.create_task(listen())
    yield redis_backend, capture
    task.cancel()
    await pubsub.aclose()
    await listener.aclose()
    await redis_backend.close()


async def test_lb_add_returns_the_top_n_and_publishes_their_scores_in_change_order(
    backend_and_events: Events,
) -> None:
    backend, capture = backend_and_events
    assert await backend.lb_add("b", "ann", 10, top=3, topic="scores") == [("ann", 10.0)]
    await backend.lb_add("b", "bob", 2.5, top=3, topic="scores")
    top = await backend.lb_add("b", "cy", 30, keep=2, top=3, topic="scores")
    assert top == [("cy", 30.0), ("ann", 10.0)]
    events = await capture.wait_for(3)
    assert events == [("scores", [10]), ("scores", [10, 2.5]), ("scores", [30, 10])]
    assert capture.retained == [True, True, True]  # each is the topic's current value


async def test_lb_add_with_a_topic_needs_a_top(backend_and_events: Events) -> None:
    backend, _ = backend_and_events
    with pytest.raises(StoreError):
        await backend.lb_add("b", "ann", 1, topic="scores")


async def test_list_append_publishes_the_appended_value(backend_and_events: Events) -> None:
    backend, capture = backend_and_events
    await backend.list_append("h", {"text": "hi"}, 2, topic="room:x")
    await backend.list_append("h", {"text": "there"}, 2, topic="room:x")
    assert await capture.wait_for(2) == [
        ("room:x", {"text": "hi"}),
        ("room:x", {"text": "there"}),
    ]
    assert capture.retained == [False, False]  # items of a stream, not a value


async def test_update_publishes_the_new_value_or_its_event(backend_and_events: Events) -> None:
    backend, capture = backend_and_events
    await backend.update("p", lambda m: {**(m or {}), "a": "Ann"}, {}, topic="t")
    await backend.update(
        "p", lambda m: {**m, "b": "Bob"}, {}, topic="t", event=lambda m: sorted(m.values())
    )
    assert await capture.wait_for(2) == [("t", {"a": "Ann"}), ("t", ["Ann", "Bob"])]
    assert capture.retained == [True, True]


async def test_concurrent_publishing_updates_publish_every_state_in_order(
    backend_and_events: Events,
) -> None:
    backend, capture = backend_and_events
    await asyncio.gather(
        *(backend.update("n", lambda v: (v or 0) + 1, 0, topic="n") for _ in range(20))
    )
    events = await capture.wait_for(20)
    assert [data for _, data in events] == list(range(1, 21))
