"""A session's topic subscriptions: what its client may subscribe to, and the hub calls.

A client's ``subscribe`` is refused with a structured error (and changes nothing)
for a topic the app does not allow, and past ``max_subscriptions`` topics; a
function subscribes its session to any topic (``subscribe_server_side``: the
server decides). ``topics`` starts as the hub's shared ``NO_ENTRIES``: the hub
gives a session a dict of its own at its first subscription.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..protocol import Code, encode_error, encode_subscribed

if TYPE_CHECKING:
    from .services import Services
    from .session import Peer

__all__ = ["Subscriptions"]


class Subscriptions:
    """The topics part of a ``Session``, and its side of the hub's ``Subscriber``
    interface (a mixin: its state is the session's)."""

    __slots__ = ()

    topics: dict[str, None]
    closed: bool
    _services: Services
    _peer: Peer

    def send(self, frame: bytes) -> None:
        """Queue a frame to this session's client (the hub's subscriber interface)."""
        self._peer.send(frame)

    def subscribe(self, topic: str) -> None:
        """A client's subscription: only to topics the app allows."""
        if not self._services.app.topic_allowed(topic):
            self._topic_refused(topic, Code.FORBIDDEN_TOPIC, "you may not subscribe to it")
            return
        limit = self._services.settings.max_subscriptions
        if topic not in self.topics and len(self.topics) >= limit:
            self._topic_refused(
                topic,
                Code.TOO_MANY_SUBSCRIPTIONS,
                f"this session is subscribed to {len(self.topics)} topics, the limit",
            )
            return
        self.subscribe_server_side(topic)

    def _topic_refused(self, topic: str, code: str, why: str) -> None:
        self._services.refused(code)
        self._peer.send(encode_error(None, code, f"topic {topic[:128]!r}: {why}", topic=topic))

    def subscribe_server_side(self, topic: str) -> None:
        hub = self._services.hub
        if hub is None or self.closed:
            return
        self._peer.send(encode_subscribed(topic))
        hub.subscribe(self, topic)  # then the topic's current value, if it has one

    def unsubscribe_server_side(self, topic: str) -> None:
        hub = self._services.hub
        if hub is not None:
            hub.unsubscribe(self, topic)
        self._peer.send(encode_subscribed(topic, subscribed=False))
