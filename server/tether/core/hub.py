"""Topics: who is subscribed to what, delivering published events, current values.

An event is encoded once and the same frame goes to every subscriber's
connection (written at once, or to its bounded send queue when the peer is
behind), so a publish to N subscribers costs one encode and N sends, and no
copy of the subscribers: subscribing or leaving during a delivery changes a
copy of them (copy on write), which the next delivery goes through. A
subscriber whose queue is full is closed as a slow consumer by its connection
(close 4008): delivery is at most once.

Events published from worker threads (synchronous functions) reach the event
loop through a bounded backlog: a thread that publishes faster than the loop
hands events out waits (backpressure) rather than piling up frames in memory.

**Current values** (protocol 8). A publish with ``retain=True`` also makes its
data the topic's current value: each such change gets a ``seq``, larger than the
topic's previous one, and a new subscriber gets the current value first (the
same event flagged ``current``), then every later change. On one process the
hub holds the current values itself (at most ``max_topics`` topics and
``max_bytes`` of frames; the least recently changed go first). On a cluster
(``fetch_current`` set by the Redis bridge) they live in Redis, written by the
same script as the change; a new subscriber's current value is fetched once per
topic at a time, and changes of that topic that arrive meanwhile are held back
from it (it gets the newest of them as its current value), so it sees no change
twice and misses none.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ..protocol import encode_event, encode_event_data, event_as_current, event_seq, retained_event

__all__ = ["NO_ENTRIES", "Hub", "Subscriber"]

log = logging.getLogger("tether.hub")


class _NoEntries(dict[Any, None]):
    """An empty dict that refuses entries: a default many objects share (a write
    must replace it with a dict of its own first)."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a shared empty default: give the object a dict of its own first")

    __setitem__ = setdefault = update = __ior__ = _refuse  # type: ignore[assignment]


# What a new session's ``topics`` (and its state, tasks and cancels) start as:
# subscribing gives a subscriber a dict of its own.
NO_ENTRIES: dict[Any, Any] = _NoEntries()


class Subscriber(Protocol):
    # A dict used as an ordered set (an empty dict is a third of an empty set's
    # size, and every session has one).
    topics: dict[str, None]

    def send(self, frame: bytes) -> None: ...


def next_seq(previous: int) -> int:
    """The ``seq`` of a topic's next change: above the previous one, and above any a
    forgotten (evicted, expired) value of the topic had: microseconds since the epoch."""
    return max(previous + 1, time.time_ns() // 1000)


class _Joining:
    """Subscribers of a topic waiting for its current value (on a cluster)."""

    __slots__ = ("latest", "latest_seq", "members")

    def __init__(self) -> None:
        self.members: set[Subscriber] = set()
        self.latest: bytes | None = None  # the newest change seen while they wait
        self.latest_seq = -1


class Hub:
    """Topic subscriptions of one server process."""

    def __init__(
        self,
        max_backlog_bytes: int = 4 << 20,
        *,
        max_topics: int = 10_000,
        max_bytes: int = 64 << 20,
    ) -> None:
        # Topic -> its subscribers, in the order they subscribed: a dict iterates in
        # that order, which is about the order their objects sit in memory (a set's
        # hash order jumps around it: 30% slower per delivery at 10,000).
        self._subscribers: dict[str, dict[Subscriber, None]] = {}
        # The subscriber dicts a delivery is going through now: a change to one of
        # them meanwhile replaces it with a changed copy (the loop goes on over the
        # old), so a delivery needs no copy of them.
        self._delivering: list[dict[Subscriber, None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        # Bytes of events published from other threads and not yet handed out.
        self._backlog = 0
        self._max_backlog = max_backlog_bytes
        self._backlog_changed = threading.Condition()
        # Current values held here (one process): topic -> (seq, change frame).
        self._retained: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        self._retained_bytes = 0
        self._max_topics = max_topics
        self._max_bytes = max_bytes
        self.evicted = 0
        self._joining: dict[str, _Joining] = {}
        self._join_tasks: set[asyncio.Task[None]] = set()
        # Set by a bridge (Redis): where locally published frames go instead of
        # to local subscribers, where retained data goes (topic, data JSON), and
        # where a topic's current value is read (the change frame, or None).
        self.forward: Callable[[str, bytes], None] | None = None
        self.forward_retained: Callable[[str, bytes], None] | None = None
        self.forward_forget: Callable[[str], None] | None = None
        self.fetch_current: Callable[[str], Awaitable[bytes | None]] | None = None

    def bind(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident() if loop is not None else None
        if loop is None:
            for task in self._join_tasks:
                task.cancel()
        with self._backlog_changed:
            self._backlog_changed.notify_all()  # threads waiting to publish see the change

    # -- subscriptions -----------------------------------------------------------

    def subscribe(self, subscriber: Subscriber, topic: str) -> None:
        """Subscribe; a new subscriber of a topic with a current value gets it first."""
        members = self._subscribers.get(topic)
        if members is None:
            members = self._subscribers[topic] = {}
        elif subscriber in members:
            return
        else:
            members = self._changing(topic, members)
        members[subscriber] = None
        topics = subscriber.topics
        if not topics:  # perhaps the shared NO_ENTRIES: a dict of its own now
            topics = subscriber.topics = {}
        topics[topic] = None
        if self.fetch_current is None:
            held = self._retained.get(topic)
            if held is not None:
                subscriber.send(event_as_current(held[1]))
            return
        joining = self._joining.get(topic)
        if joining is None:
            joining = self._joining[topic] = _Joining()
            loop = self._loop or asyncio.get_running_loop()
            task = loop.create_task(self._join(topic, joining, self.fetch_current))
            self._join_tasks.add(task)
            task.add_done_callback(self._join_tasks.discard)
        joining.members.add(subscriber)

    async def _join(
        self, topic: str, joining: _Joining, fetch: Callable[[str], Awaitable[bytes | None]]
    ) -> None:
        frame: bytes | None = None
        try:
            frame = await fetch(topic)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis down: they join without a current value
            log.warning("could not read the current value of topic %r: %s", topic, exc)
        finally:
            if self._joining.get(topic) is joining:
                del self._joining[topic]
        seq = event_seq(frame) if frame is not None else None
        if seq is None or seq <= joining.latest_seq:
            frame = joining.latest
        if frame is None:
            return
        current = event_as_current(frame)
        members = self._subscribers.get(topic, ())
        for subscriber in joining.members:
            if subscriber in members:
                subscriber.send(current)

    def unsubscribe(self, subscriber: Subscriber, topic: str) -> None:
        subscriber.topics.pop(topic, None)
        members = self._subscribers.get(topic)
        if members is not None and subscriber in members:
            members = self._changing(topic, members)
            del members[subscriber]
            if not members:
                del self._subscribers[topic]
        joining = self._joining.get(topic)
        if joining is not None:
            joining.members.discard(subscriber)

    def _changing(self, topic: str, members: dict[Subscriber, None]) -> dict[Subscriber, None]:
        """The subscribers of ``topic`` to change: a copy if a delivery is going
        through them now."""
        for busy in self._delivering:
            if busy is members:
                members = self._subscribers[topic] = dict(members)
                break
        return members

    def drop(self, subscriber: Subscriber) -> None:
        """Remove every subscription of a subscriber that is going away."""
        for topic in list(subscriber.topics):
            self.unsubscribe(subscriber, topic)

    def topic_count(self) -> int:
        return len(self._subscribers)

    def retained_count(self) -> int:
        """Topics whose current value this process holds (none on a cluster)."""
        return len(self._retained)

    # -- publishing --------------------------------------------------------------

    def publish(self, topic: str, data: Any, retain: bool = False) -> None:
        """Publish from anywhere: the event loop, or any other thread.

        ``retain``: ``data`` is also the topic's current value, which a new
        subscriber gets first.
        """
        payload = encode_event_data(data) if retain else encode_event(topic, data)
        if self._loop is None:
            raise RuntimeError("publish() works only while the app is being served")
        if threading.get_ident() == self._loop_thread:
            self._publish_frame(topic, payload, retain)
            return
        with self._backlog_changed:
            # Backpressure. One event always fits an empty backlog, however big it is.
            while (
                self._loop is not None
                and self._backlog
                and self._backlog + len(payload) > self._max_backlog
            ):
                self._backlog_changed.wait()
            loop = self._loop
            if loop is None:
                raise RuntimeError("publish() works only while the app is being served")
            self._backlog += len(payload)
        try:
            loop.call_soon_threadsafe(self._publish_from_thread, topic, payload, retain)
        except RuntimeError:  # the loop is closed
            self._backlog_done(len(payload))
            raise

    def forget(self, topic: str) -> None:
        """The topic has no current value any more (from the loop or any thread): later
        subscribers get none until its next retained publish. Subscribers are not told."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("forget() works only while the app is being served")
        if threading.get_ident() != self._loop_thread:
            loop.call_soon_threadsafe(self.forget, topic)
            return
        forward_forget = self.forward_forget
        if forward_forget is not None:
            forward_forget(topic)
            return
        held = self._retained.pop(topic, None)
        if held is not None:
            self._retained_bytes -= len(held[1])

    def _backlog_done(self, size: int) -> None:
        with self._backlog_changed:
            self._backlog -= size
            self._backlog_changed.notify_all()

    def _publish_from_thread(self, topic: str, payload: bytes, retain: bool) -> None:
        try:
            self._publish_frame(topic, payload, retain)
        finally:
            self._backlog_done(len(payload))

    def _publish_frame(self, topic: str, payload: bytes, retain: bool) -> None:
        if retain:
            forward_retained = self.forward_retained
            if forward_retained is not None:
                forward_retained(topic, payload)
                return
            payload = self._retain(topic, payload)
        forward = self.forward
        if forward is not None:
            forward(topic, payload)
        else:
            self.deliver(topic, payload)

    def _retain(self, topic: str, data: bytes) -> bytes:
        """Make ``data`` the topic's current value here; the change's frame."""
        held = self._retained.pop(topic, None)
        if held is not None:
            self._retained_bytes -= len(held[1])
        seq = next_seq(held[0] if held is not None else 0)
        frame = retained_event(topic, seq, data)
        self._retained[topic] = (seq, frame)
        self._retained_bytes += len(frame)
        while len(self._retained) > 1 and (
            len(self._retained) > self._max_topics or self._retained_bytes > self._max_bytes
        ):
            old, (_, dropped) = self._retained.popitem(last=False)
            self._retained_bytes -= len(dropped)
            if not self.evicted:
                log.warning(
                    "forgetting the current value of topic %r: more than %d topics or "
                    "%d bytes of current values (the settings max_retained_topics and "
                    "max_retained_bytes)",
                    old,
                    self._max_topics,
                    self._max_bytes,
                )
            self.evicted += 1
        return frame

    def deliver(self, topic: str, frame: bytes) -> int:
        """Hand an encoded event to every local subscriber (the same bytes to each)."""
        members = self._subscribers.get(topic)
        if not members:
            return 0
        waiting: set[Subscriber] | None = None
        if self._joining:
            joining = self._joining.get(topic)
            if joining is not None:
                seq = event_seq(frame)
                if seq is not None:
                    # A change: those waiting for the current value get the newest instead.
                    if seq > joining.latest_seq:
                        joining.latest, joining.latest_seq = frame, seq
                    waiting = joining.members
        delivering = self._delivering
        delivering.append(members)
        try:
            if waiting is None:
                for subscriber in members:
                    subscriber.send(frame)
            else:
                for subscriber in members:
                    if subscriber not in waiting:
                        subscriber.send(frame)
        finally:
            delivering.pop()
        return len(members)
