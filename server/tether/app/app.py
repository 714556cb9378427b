"""The user-facing registry: an ``App`` holds functions, their components and state slots.

Registering mirrors Gradio's Interface::

    app = tether.App()

    @app.function(inputs=["text", "state"], outputs=["chatbot", "state"])
    def chat(message, history=[]):
        history = history + [[message, "hi"]]
        return history, history

A ``"state"`` input is bound to the function parameter at the same position;
its default is that parameter's default (copied per session), else ``None``.
A ``"state"`` output replaces the session's value of the slot that the n-th
``"state"`` input read. ``tether.State`` objects name slots explicitly, allow
several per function, and can be shared by several functions.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import AppError
from ..store import Store
from .function import DEFAULT, ComponentSpec, Function, build_function
from .runtime import Runtime
from .state import State

__all__ = ["App"]


SessionHook = Callable[[Any], Any]


class App:
    """A set of functions served together, with one global store."""

    def __init__(
        self, title: str = "tether", *, topics: Sequence[str] | Mapping[str, str] = ()
    ) -> None:
        """``topics``: the topics clients may subscribe to (``allow_topics``); a mapping
        ``{topic: description}`` also describes each one (``describe_topic``)."""
        self.title = title
        self.functions: dict[str, Function] = {}
        self.store = Store()
        self.session_end_hooks: list[SessionHook] = []
        self.topics: list[str] = []
        # What clients show for a topic: {topic: {"label": ..., "description": ...}}.
        self.topic_info: dict[str, dict[str, str]] = {}
        # Widgets that group functions (``room``), in the welcome's ``widgets``.
        self.widgets: list[dict[str, Any]] = []
        self.authenticator: Callable[[Any], Any] | None = None
        self._runtime: Runtime | None = None
        self.allow_topics(*topics)
        if isinstance(topics, Mapping):
            for topic, description in topics.items():
                self.describe_topic(topic, description)

    def authenticate(self, hook: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Decorator: ``hook(request)`` checks every WebSocket handshake before the upgrade.

        It gets the aiohttp request (headers, cookies, query, remote address) and
        returns the connection's identity (``tether.context().identity``), or
        refuses it: ``raise tether.Refused(401, "why")`` (or 403); returning
        ``None`` refuses with 401. Sync hooks run in the thread pool, async ones
        on the loop; both are bounded by the ``handshake_timeout`` setting.
        """
        self.authenticator = hook
        return hook

    def allow_topics(self, *patterns: str) -> None:
        """Let clients subscribe to these topics: names, or patterns with ``*`` (``room:*``).

        Any other subscription gets ``forbidden_topic``. Server code may publish
        to any topic and subscribe a session to any topic.
        """
        for pattern in patterns:
            if not isinstance(pattern, str) or not pattern:
                raise AppError(f"a topic pattern must be a non-empty string, not {pattern!r}")
            if pattern not in self.topics:
                self.topics.append(pattern)

    def describe_topic(self, topic: str, description: str = "", *, label: str = "") -> None:
        """What the browser page shows for an allowed topic: a ``description`` under its
        heading and a ``label`` for the heading (default: the name made readable).
        Sent in the welcome's ``topic_info`` (protocol 9)."""
        if not self.topic_allowed(topic):
            raise AppError(f"describe_topic: {topic!r} is not an allowed topic (allow_topics)")
        info: dict[str, str] = {}
        for key, value in (("label", label), ("description", description)):
            if not isinstance(value, str):
                raise AppError(f"describe_topic: {key} must be a string, not {value!r}")
            if value:
                info[key] = value
        self.topic_info[topic] = info

    def room(
        self,
        *,
        join: str,
        say: str,
        leave: str,
        topic: str = "room:{room}",
        label: str = "Chat room",
        description: str = "",
    ) -> None:
        """Declare three registered functions as one chat room, which the browser page shows
        as a single widget instead of three forms (welcome ``widgets``, protocol 9).

        ``join(name, room)`` (two text inputs) returns ``{"room", "name", "history":
        [message...], "members": [name...]}`` and subscribes the session to ``topic`` with
        ``{room}`` replaced by the room; ``say(text)`` returns the message it posted;
        ``leave()`` takes no input. Events on the room's topic are ``{"kind": "message",
        "id", "name", "text", "at"}`` and ``{"kind": "presence", "members": [...]}``.
        """
        shapes = {"join": (join, ["text", "text"]), "say": (say, ["text"]), "leave": (leave, [])}
        for role, (fname, inputs) in shapes.items():
            function = self.functions.get(fname)
            if function is None:
                raise AppError(f"room: {role}={fname!r} is not a registered function")
            if list(function.public_inputs) != inputs:
                want = ", ".join(inputs) or "none"
                raise AppError(
                    f"room: {role}={fname!r} must take the inputs ({want}), "
                    f"not ({', '.join(function.public_inputs) or 'none'})"
                )
        if "{room}" not in topic or not self.topic_allowed(topic.replace("{room}", "x")):
            raise AppError(
                f"room: topic {topic!r} must contain {{room}} and match an allowed topic pattern"
            )
        widget: dict[str, Any] = {
            "kind": "room",
            "label": label,
            "join": join,
            "say": say,
            "leave": leave,
            "topic": topic,
        }
        if description:
            widget["description"] = description
        self.widgets.append(widget)

    def welcome_fields(self) -> dict[str, Any]:
        """The app's part of every welcome besides its functions (protocol 9)."""
        return {
            "title": self.title,
            "topics": self.topics,
            "topic_info": self.topic_info,
            "widgets": self.widgets,
        }

    def slots_by_key(self) -> dict[str, State]:
        """Every state slot of the app by its stable key."""
        return {slot.stable_key: slot for f in self.functions.values() for slot in f.slots}

    def topic_allowed(self, topic: str) -> bool:
        return any(fnmatch.fnmatchcase(topic, pattern) for pattern in self.topics)

    def publish(self, topic: str, data: Any, *, retain: bool = False) -> None:
        """Send ``data`` to every subscriber of ``topic``; callable from sync or async code.

        Delivery is at most once: a subscriber that is gone, or too slow to keep
        its send queue bounded, misses the event. With ``retain=True``, ``data``
        is also the topic's *current value*: a session that subscribes later
        gets it at once, then every later change (protocol 8; on a cluster the
        value is kept in Redis, for ``retained_ttl`` after its last change).
        """
        runtime = self._runtime
        if runtime is None:
            raise RuntimeError("app.publish() works only while the app is being served")
        runtime.publish(topic, data, retain)

    def forget(self, topic: str) -> None:
        """``topic`` has no current value any more: a later subscriber gets none until
        the next retained publish (subscribers now are not told). For a topic whose
        data is gone, so that its value does not outlive it (e.g. a freed room)."""
        runtime = self._runtime
        if runtime is None:
            raise RuntimeError("app.forget() works only while the app is being served")
        runtime.forget(topic)

    @property
    def runtime(self) -> Runtime | None:
        """The server serving this app now (its loop, store backend, topics), or None."""
        return self._runtime

    def attach(self, runtime: Runtime) -> None:
        """Called by the server that starts serving this app: ``app.store`` and
        ``app.publish`` then act through ``runtime``. One server at a time: a second
        would silently take over the first one's store and topics."""
        if self._runtime is not None and self._runtime is not runtime:
            raise AppError(
                f"the app {self.title!r} is already being served by another server in this "
                "process; stop that one first, or build one App per server"
            )
        self._runtime = runtime
        self.store.attach(runtime)

    def detach(self, runtime: Runtime) -> None:
        """Called by the server when it stops serving this app."""
        if self._runtime is runtime:
            self._runtime = None
            self.store.detach(runtime)

    def function(
        self,
        inputs: ComponentSpec | Sequence[ComponentSpec] = (),
        outputs: ComponentSpec | Sequence[ComponentSpec] = (),
        *,
        name: str | None = None,
        label: str | None = None,
        concurrency_limit: int | None = DEFAULT,
        max_queue: int | None = None,
        timeout: float | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator form of ``add``; returns the function unchanged."""

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.add(
                fn,
                inputs,
                outputs,
                name=name,
                label=label,
                concurrency_limit=concurrency_limit,
                max_queue=max_queue,
                timeout=timeout,
            )
            return fn

        return register

    def add(
        self,
        fn: Callable[..., Any],
        inputs: ComponentSpec | Sequence[ComponentSpec] = (),
        outputs: ComponentSpec | Sequence[ComponentSpec] = (),
        *,
        name: str | None = None,
        label: str | None = None,
        concurrency_limit: int | None = DEFAULT,
        max_queue: int | None = None,
        timeout: float | None = None,
    ) -> Function:
        """Register ``fn`` under ``name`` (default: its ``__name__``).

        ``label``: the title the browser page shows for it (default: the name made
        readable, ``track_score`` → "Track score"); sent in the manifest.

        ``concurrency_limit``: submits of this function running at once across
        all sessions (default: the thread pool size; ``None``: unlimited); the
        rest wait in a queue of at most ``max_queue`` (default: the
        ``max_queue`` setting). ``timeout``: seconds a submit may run.
        Generator functions (sync or async) stream: every yield is sent to the
        client as a ``partial``, and the last one is the result.
        """
        function = build_function(
            fn,
            inputs,
            outputs,
            name=name,
            concurrency_limit=concurrency_limit,
            max_queue=max_queue,
            timeout=timeout,
        )
        if label is not None:
            if not isinstance(label, str) or not label.strip():
                raise AppError(f"{function.name}: label must be a non-empty string")
            function = dataclasses.replace(function, label=label)
        if function.name in self.functions:
            raise AppError(f"a function named {function.name!r} is already registered")
        self.functions[function.name] = function
        return function

    def on_session_end(self, hook: SessionHook) -> SessionHook:
        """Decorator: ``hook(session)`` runs exactly once when a session ends (sync or async)."""
        self.session_end_hooks.append(hook)
        return hook

    def manifest(self) -> list[dict[str, Any]]:
        return [f.manifest() for f in self.functions.values()]
