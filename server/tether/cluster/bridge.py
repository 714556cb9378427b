"""Topics across nodes: every publish goes through Redis pub/sub to every node.

``hub.forward`` hands each locally published event frame to the bridge, which
PUBLISHes it on the topic's channel (``channels.topic_channel``) from a single
sender task (one connection, so one node's events keep their order). A
listener task PSUBSCRIBEs the namespace's ``channels.topic_pattern`` and
delivers what arrives — from this node or another — to local subscribers.
Store operations that publish (leaderboards, room history, presence) PUBLISH
the same frames from inside their Lua script or transaction, so those events
are ordered with the changes, across nodes.

A topic's current value (protocol 8) lives in Redis (``channels.current_key``):
a retained publish runs ``RETAIN``, which stores the change and PUBLISHes it in
one step; store operations that keep a value do the same inside their own
script. ``fetch_current`` reads a current value for a node's new subscribers
with ``CURRENT``, which also PUBLISHes a marker on this node's marker channel:
when the listener reads the marker, every change published before the read
has been delivered, so the hub can hand out the newest without a gap or a
duplicate.

The listener never dies silently: on any error it marks itself unhealthy,
reconnects with jittered backoff, subscribes again, and marks itself healthy.
Delivery is at most once: events published while the link is down are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Protocol

from ..protocol import retained_event_parts
from ..store.bounds import RETAINED_TTL
from ..store.redis_scripts import CURRENT, RETAIN
from .channels import channel_topic, current_key, marker_channel, topic_channel, topic_pattern

__all__ = ["RedisBridge", "TopicHub"]

log = logging.getLogger("tether.redis")

MAX_OUTBOX: Final = 10_000
"""Events waiting to be published while Redis is slow or down; more are dropped."""

_PUBLISH, _RETAIN, _FORGET = "publish", "retain", "forget"

MARKER_TIMEOUT: Final = 2.0
"""Seconds a current-value read waits for its marker (the listener may be down);
after that the value read is handed out as it is."""


class TopicHub(Protocol):
    """What the bridge needs of a node's topic hub (``core.hub.Hub``)."""

    # Set by the bridge: where the hub hands locally published frames instead
    # of delivering them itself.
    forward: Callable[[str, bytes], None] | None
    # Where retained data (topic, data JSON) goes, and where current values are read.
    forward_retained: Callable[[str, bytes], None] | None
    forward_forget: Callable[[str], None] | None
    fetch_current: Callable[[str], Any] | None

    def deliver(self, topic: str, frame: bytes) -> object:
        """Put an encoded event on every local subscriber's send queue."""
        ...


class RedisBridge:
    def __init__(
        self, url: str, namespace: str, hub: TopicHub, *, retained_ttl: float = RETAINED_TTL
    ) -> None:
        self.url = url
        self.namespace = namespace
        self.hub = hub
        self.healthy = False
        self.dropped = 0
        self.reconnects = 0
        self.retained_ttl_ms = max(1, round(retained_ttl * 1000))
        self._marker_channel = marker_channel(namespace, uuid.uuid4().hex)
        self._markers: dict[bytes, asyncio.Future[None]] = {}
        # (topic, payload, kind): a frame to publish (PUBLISH), data JSON to
        # retain (RETAIN), or a current value to forget (FORGET, no payload).
        self._outbox: deque[tuple[str, bytes, str]] = deque()
        self._wake = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._client: Any = None

    async def start(self, wait: float = 5.0) -> None:
        import redis.asyncio as aioredis

        self._client = aioredis.Redis.from_url(
            self.url, socket_connect_timeout=2.0, health_check_interval=10
        )
        loop = asyncio.get_running_loop()
        self._retain = self._client.register_script(RETAIN)
        self._current = self._client.register_script(CURRENT)
        self._tasks = [loop.create_task(self._listen()), loop.create_task(self._send())]
        self.hub.forward = self.forward
        self.hub.forward_retained = self.forward_retained
        self.hub.forward_forget = self.forget
        self.hub.fetch_current = self.fetch_current
        # Wait (bounded) for the first subscription, so events published right
        # after startup are not missed; if Redis is down the server starts anyway.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), wait)

    async def close(self) -> None:
        self.hub.forward = self.hub.forward_retained = self.hub.forward_forget = None
        self.hub.fetch_current = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.aclose()

    def forward(self, topic: str, frame: bytes) -> None:
        self._queue(topic, frame, _PUBLISH)

    def forward_retained(self, topic: str, data: bytes) -> None:
        self._queue(topic, data, _RETAIN)

    def forget(self, topic: str) -> None:
        self._queue(topic, b"", _FORGET)

    def _queue(self, topic: str, payload: bytes, kind: str) -> None:
        if len(self._outbox) >= MAX_OUTBOX:
            self.dropped += 1
            return
        self._outbox.append((topic, payload, kind))
        self._wake.set()

    async def fetch_current(self, topic: str) -> bytes | None:
        """The change frame of ``topic``'s current value in Redis (None: it has none),
        once every change published before it was read has reached the hub."""
        marker = uuid.uuid4().hex.encode()
        arrived = self._markers[marker] = asyncio.get_running_loop().create_future()
        try:
            frame: bytes | None = await self._current(
                keys=[current_key(self.namespace, topic)], args=[self._marker_channel, marker]
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived, MARKER_TIMEOUT)
            return frame
        finally:
            self._markers.pop(marker, None)

    async def _publish(self, topic: str, payload: bytes, kind: str) -> None:
        channel = topic_channel(self.namespace, topic)
        if kind is _PUBLISH:
            await self._client.publish(channel, payload)
            return
        if kind is _FORGET:
            await self._client.delete(current_key(self.namespace, topic))
            return
        head, tail = retained_event_parts(topic)
        await self._retain(
            keys=[current_key(self.namespace, topic)],
            args=[channel, head, tail, payload, self.retained_ttl_ms],
        )

    async def _send(self) -> None:
        delay = 0.05
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                topic, payload, kind = self._outbox[0]
                try:
                    await self._publish(topic, payload, kind)
                except Exception as exc:
                    log.warning("publishing to Redis failed (%s); retrying", exc)
                    await asyncio.sleep(random.uniform(0, delay))
                    delay = min(delay * 2, 2.0)
                    continue
                delay = 0.05
                self._outbox.popleft()

    async def _listen(self) -> None:
        delay = 0.05
        pattern = topic_pattern(self.namespace)
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.psubscribe(pattern)
                await pubsub.subscribe(self._marker_channel)
                self.healthy = True
                self._subscribed.set()
                delay = 0.05
                log.info("listening for topics on Redis (%s)", pattern)
                # health_check_interval makes redis-py ping an idle link, so a
                # dead connection raises here instead of hanging forever.
                async for message in pubsub.listen():
                    kind = message.get("type")
                    if kind == "message":  # a marker: what was published before it is in
                        arrived = self._markers.get(message["data"])
                        if arrived is not None and not arrived.done():
                            arrived.set_result(None)
                        continue
                    if kind != "pmessage":
                        continue
                    topic = channel_topic(self.namespace, message["channel"])
                    if topic is not None:
                        self.hub.deliver(topic, message["data"])
                raise ConnectionError("the subscription ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.healthy:
                    log.warning("the Redis topic listener lost its link: %s", exc)
                self.healthy = False
                self.reconnects += 1
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(random.uniform(0, delay))
            delay = min(delay * 2, 2.0)
