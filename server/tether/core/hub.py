"""Topics: who is subscribed to what, and delivering published events.

An event is encoded once and the same frame goes to every subscriber's
bounded send queue, so a publish to N subscribers costs one encode and N
queue appends. A subscriber whose queue is full is closed as a slow consumer
by its connection (close 4008): delivery is at most once.

Events published from worker threads (synchronous functions) reach the event
loop through a bounded backlog: a thread that publishes faster than the loop
hands events out waits (backpressure) rather than piling up frames in memory.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from ..protocol import encode_event

__all__ = ["Hub", "Subscriber"]

log = logging.getLogger("tether.hub")


class Subscriber(Protocol):
    # A dict used as an ordered set (an empty dict is a third of an empty set's
    # size, and every session has one).
    topics: dict[str, None]

    def send(self, frame: bytes) -> None: ...


class Hub:
    """Topic subscriptions of one server process."""

    def __init__(self, max_backlog_bytes: int = 4 << 20) -> None:
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        # Bytes of events published from other threads and not yet handed out.
        self._backlog = 0
        self._max_backlog = max_backlog_bytes
        self._backlog_changed = threading.Condition()
        # Later: a bridge that forwards publishes to other nodes (Redis).
        self.forward: Callable[[str, bytes], None] | None = None

    def bind(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident() if loop is not None else None
        with self._backlog_changed:
            self._backlog_changed.notify_all()  # threads waiting to publish see the change

    def subscribe(self, subscriber: Subscriber, topic: str) -> None:
        self._subscribers.setdefault(topic, set()).add(subscriber)
        subscriber.topics[topic] = None

    def unsubscribe(self, subscriber: Subscriber, topic: str) -> None:
        subscriber.topics.pop(topic, None)
        members = self._subscribers.get(topic)
        if members is not None:
            members.discard(subscriber)
            if not members:
                del self._subscribers[topic]

    def drop(self, subscriber: Subscriber) -> None:
        """Remove every subscription of a subscriber that is going away."""
        for topic in list(subscriber.topics):
            self.unsubscribe(subscriber, topic)

    def topic_count(self) -> int:
        return len(self._subscribers)

    def publish(self, topic: str, data: Any) -> None:
        """Publish from anywhere: the event loop, or any other thread."""
        frame = encode_event(topic, data)
        if self._loop is None:
            raise RuntimeError("publish() works only while the app is being served")
        if threading.get_ident() == self._loop_thread:
            self._publish_frame(topic, frame)
            return
        with self._backlog_changed:
            # Backpressure. One event always fits an empty backlog, however big it is.
            while (
                self._loop is not None
                and self._backlog
                and self._backlog + len(frame) > self._max_backlog
            ):
                self._backlog_changed.wait()
            loop = self._loop
            if loop is None:
                raise RuntimeError("publish() works only while the app is being served")
            self._backlog += len(frame)
        try:
            loop.call_soon_threadsafe(self._publish_from_thread, topic, frame)
        except RuntimeError:  # the loop is closed
            self._backlog_done(len(frame))
            raise

    def _backlog_done(self, size: int) -> None:
        with self._backlog_changed:
            self._backlog -= size
            self._backlog_changed.notify_all()

    def _publish_from_thread(self, topic: str, frame: bytes) -> None:
        try:
            self._publish_frame(topic, frame)
        finally:
            self._backlog_done(len(frame))

    def _publish_frame(self, topic: str, frame: bytes) -> None:
        forward = self.forward
        if forward is not None:
            forward(topic, frame)
        else:
            self.deliver(topic, frame)

    def deliver(self, topic: str, frame: bytes) -> int:
        """Put an encoded event on every local subscriber's send queue."""
        members = self._subscribers.get(topic)
        if not members:
            return 0
        for subscriber in list(members):
            subscriber.send(frame)
        return len(members)
