"""The protocol's messages, both directions, as frozen dataclasses.

Client to server: ``Submit``, ``Cancel``, ``Subscribe``, ``Unsubscribe``,
``Ping``. Server to client: ``Welcome``, ``Result``, ``Partial``, ``Error``,
``Queued``, ``Started``, ``Event``, ``Subscribed``, ``Unsubscribed``, ``Pong``.
``server.py`` decodes the first kind and encodes the second; ``client.py`` the
other way round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Cancel",
    "ClientMessage",
    "Error",
    "Event",
    "Partial",
    "Ping",
    "Pong",
    "Queued",
    "Result",
    "ServerMessage",
    "Started",
    "Submit",
    "SubmitId",
    "Subscribe",
    "Subscribed",
    "Unsubscribe",
    "Unsubscribed",
    "Welcome",
]

SubmitId = str | int


# -- client to server -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submit:
    """Run function ``fn`` with the public inputs ``data``; answer with the same ``id``."""

    id: SubmitId
    fn: str
    data: list[Any]


@dataclass(frozen=True, slots=True)
class Ping:
    """Application-level heartbeat; answered with ``pong``."""


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel submit ``id`` (queued or running). Unknown or finished ids are ignored."""

    id: SubmitId


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Start receiving ``event`` messages of ``topic``."""

    topic: str


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Stop receiving ``event`` messages of ``topic``."""

    topic: str


ClientMessage = Submit | Ping | Cancel | Subscribe | Unsubscribe


# -- server to client -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Welcome:
    """The first frame of every connection: who you are and what you can call."""

    protocol: int
    session: str
    functions: list[dict[str, Any]]
    topics: list[str] = field(default_factory=list)
    deltas: bool = False
    resume: str | None = None
    resumed: bool = False
    # Protocol 9: what the app declares for clients to show (protocol.md, "welcome").
    title: str | None = None
    topic_info: dict[str, dict[str, str]] = field(default_factory=dict)
    widgets: list[dict[str, Any]] = field(default_factory=list)

    def outputs(self) -> dict[str, list[str]]:
        """Each function's public output components, by name (what deltas are keyed by)."""
        return {f["name"]: list(f.get("outputs", ())) for f in self.functions}


@dataclass(frozen=True, slots=True)
class Result:
    """The outputs of submit ``id`` (its last message)."""

    id: SubmitId
    data: list[Any]


@dataclass(frozen=True, slots=True)
class Partial:
    """One streamed step of a generator function."""

    id: SubmitId
    data: list[Any]


@dataclass(frozen=True, slots=True)
class Error:
    """Submit ``id`` (or, with ``id`` None, a message) failed with ``code``.

    ``topic`` is set for refused subscriptions, ``retry_after`` for ``rate_limited``.
    """

    id: SubmitId | None
    code: str
    message: str
    topic: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Queued:
    """Submit ``id`` waits for its function's concurrency limit at ``position`` (1-based)."""

    id: SubmitId
    position: int


@dataclass(frozen=True, slots=True)
class Started:
    """Submit ``id``, which was told it was queued, now runs."""

    id: SubmitId


@dataclass(frozen=True, slots=True)
class Event:
    """Something published on a topic this connection is subscribed to."""

    topic: str
    data: Any
    # Protocol 8: an event that changes the topic's current value has a ``seq``
    # (increasing within the topic); ``current`` marks the current value a
    # subscriber gets first. Events that are not values have neither.
    seq: int | None = None
    current: bool = False


@dataclass(frozen=True, slots=True)
class Subscribed:
    topic: str


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    topic: str


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to a ``ping``."""


ServerMessage = (
    Welcome | Result | Partial | Error | Queued | Started | Event | Subscribed | Unsubscribed | Pong
)
