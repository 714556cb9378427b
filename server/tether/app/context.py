"""The context of the submit being run: which session, which client.

``tether.context()`` inside a function (sync or async) returns it. Sync
functions see it too: the runner copies context variables into the worker
thread.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Protocol

__all__ = ["Context", "SessionView", "context"]


class SessionView(Protocol):
    """What a context needs of the session running the submit (``core.session.Session``)."""

    id: str
    client: str | None
    identity: Any

    def call_on_loop(self, fn: Callable[..., Any], *args: Any) -> None: ...
    def subscribe_server_side(self, topic: str) -> None: ...
    def unsubscribe_server_side(self, topic: str) -> None: ...
    def publish(self, topic: str, data: Any, retain: bool = False) -> None: ...


class Context:
    """What a running function may know and do about its session."""

    __slots__ = ("_session", "submit_id")

    def __init__(self, session: SessionView, submit_id: Any) -> None:
        self._session = session
        self.submit_id = submit_id

    @property
    def session_id(self) -> str:
        return self._session.id

    @property
    def client(self) -> str | None:
        """The client's address, as the server saw it."""
        return self._session.client

    @property
    def identity(self) -> Any:
        """What the app's authentication hook returned for this connection (or None)."""
        return self._session.identity

    def subscribe(self, topic: str) -> None:
        """Subscribe this session to ``topic`` (any topic: the server decides)."""
        self._session.call_on_loop(self._session.subscribe_server_side, topic)

    def unsubscribe(self, topic: str) -> None:
        self._session.call_on_loop(self._session.unsubscribe_server_side, topic)

    def publish(self, topic: str, data: Any, *, retain: bool = False) -> None:
        """``app.publish``: ``retain=True`` also makes ``data`` the topic's current value."""
        self._session.publish(topic, data, retain)


_current: ContextVar[Context] = ContextVar("tether_context")


def context() -> Context:
    """The context of the submit running now; LookupError outside a submit."""
    try:
        return _current.get()
    except LookupError:
        raise LookupError("tether.context() is only available inside a running submit") from None
