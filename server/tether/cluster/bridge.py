"""Topics across nodes: every publish goes through Redis pub/sub to every node.

``hub.forward`` hands each locally published event frame to the bridge, which
PUBLISHes it on the topic's channel (``channels.topic_channel``) from a single
sender task (one connection, so one node's events keep their order). A
listener task PSUBSCRIBEs the namespace's ``channels.topic_pattern`` and
delivers what arrives — from this node or another — to local subscribers.
Store operations that publish (leaderboards, room history, presence) PUBLISH
the same frames from inside their Lua script or transaction, so those events
are ordered with the changes, across nodes.

The listener never dies silently: on any error it marks itself unhealthy,
reconnects with jittered backoff, subscribes again, and marks itself healthy.
Delivery is at most once: events published while the link is down are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Protocol

from .channels import channel_topic, topic_channel, topic_pattern

__all__ = ["RedisBridge", "TopicHub"]

log = logging.getLogger("tether.redis")

MAX_OUTBOX: Final = 10_000
"""Events waiting to be published while Redis is slow or down; more are dropped."""


class TopicHub(Protocol):
    """What the bridge needs of a node's topic hub (``core.hub.Hub``)."""

    # Set by the bridge: where the hub hands locally published frames instead
    # of delivering them itself.
    forward: Callable[[str, bytes], None] | None

    def deliver(self, topic: str, frame: bytes) -> object:
        """Put an encoded event on every local subscriber's send queue."""
        ...


class RedisBridge:
    def __init__(self, url: str, namespace: str, hub: TopicHub) -> None:
        self.url = url
        self.namespace = namespace
        self.hub = hub
        self.healthy = False
        self.dropped = 0
        self.reconnects = 0
        self._outbox: deque[tuple[str, bytes]] = deque()
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
        self._tasks = [loop.create_task(self._listen()), loop.create_task(self._send())]
        self.hub.forward = self.forward
        # Wait (bounded) for the first subscription, so events published right
        # after startup are not missed; if Redis is down the server starts anyway.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), wait)

    async def close(self) -> None:
        self.hub.forward = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.aclose()

    def forward(self, topic: str, frame: bytes) -> None:
        if len(self._outbox) >= MAX_OUTBOX:
            self.dropped += 1
            return
        self._outbox.append((topic, frame))
        self._wake.set()

    async def _send(self) -> None:
        delay = 0.05
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                topic, frame = self._outbox[0]
                try:
                    await self._client.publish(topic_channel(self.namespace, topic), frame)
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
                self.healthy = True
                self._subscribed.set()
                delay = 0.05
                log.info("listening for topics on Redis (%s)", pattern)
                # health_check_interval makes redis-py ping an idle link, so a
                # dead connection raises here instead of hanging forever.
                async for message in pubsub.listen():
                    if message.get("type") != "pmessage":
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
