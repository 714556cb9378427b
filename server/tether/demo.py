"""The demo app: the guide's two examples, a chatbot (session state) and a score tracker
(global state).

Serve it with ``tether demo``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from .app import App, State, context
from .store import plain_number

__all__ = ["app", "create_app"]

LEADERBOARD = "scores"
LEADERBOARD_KEEP = 1000
ROOM_HISTORY = 100
MAX_NAME = 40
MAX_ROOM = 40
MAX_MESSAGE = 2000
STREAM_DELAY = 0.02  # seconds between streamed words: slow enough to watch

History = list[list[str]]


def reply_to(message: str) -> str:
    """A small rule-based bot: enough to show that each session has its own history."""
    text = message.strip()
    lowered = text.lower()
    if not text:
        return "Say something and I will answer."
    if any(lowered.startswith(word) for word in ("hi", "hello", "hey")):
        return "Hello! I remember everything you say in this session."
    if lowered.endswith("?"):
        return f"Good question. What do you think about {text[:-1].strip()!r}?"
    return f"You said: {text}"


class RoomError(ValueError):
    pass


def _clean(value: str, what: str, limit: int) -> str:
    text = " ".join(value.split())
    if not text:
        raise RoomError(f"{what} must not be empty")
    if len(text) > limit:
        raise RoomError(f"{what} must be at most {limit} characters")
    return text


def room_topic(room: str) -> str:
    return f"room:{room}"


def _presence(members: dict[str, str]) -> dict[str, Any]:
    return {"kind": "presence", "members": sorted(set(members.values()), key=str.lower)}


def create_app() -> App:
    """A fresh demo app with its own (empty) store."""
    app = App("tether demo", topics=[LEADERBOARD, "room:*"])

    @app.function(inputs=["text", "state"], outputs=["chatbot", "state"])
    def chat(message: str, history: History = []) -> tuple[History, History]:  # noqa: B006
        """Chat with a bot that remembers this session's conversation."""
        # The mutable default is safe: tether copies it per session, and rolls the
        # session's state back if this function raises after mutating it.
        history.append([message, reply_to(message)])
        return history, history

    @app.function(inputs=["text", "state"], outputs=["chatbot", "state"])
    async def chat_stream(message: str, history: History = []) -> AsyncIterator[Any]:  # noqa: B006
        """Chat with a bot that streams its reply word by word."""
        history.append([message, ""])
        words = reply_to(message).split(" ")
        for i, word in enumerate(words):
            history[-1][1] += word if i == 0 else " " + word
            yield history, history
            if i < len(words) - 1:
                await asyncio.sleep(STREAM_DELAY)

    @app.function(inputs="number", outputs="json")
    def track_score(score: float) -> list[int | float]:
        """Add a score to the shared leaderboard; returns the top 3 scores of all users."""
        # One atomic store operation adds the score and publishes the new top 3
        # on topic "scores", in the order the changes happened.
        top = app.store.sync.lb_add(
            LEADERBOARD, uuid.uuid4().hex, score, keep=LEADERBOARD_KEEP, top=3, topic=LEADERBOARD
        )
        return [plain_number(s) for _, s in top]

    # -- chat rooms: global state (history, presence) plus a per-session membership --

    membership = State(default=None, name="room membership")

    async def leave(session_id: str, where: dict[str, str]) -> None:
        room = where["room"]
        await app.store.update(
            f"presence:{room}",
            lambda members: {k: v for k, v in (members or {}).items() if k != session_id},
            {},
            topic=room_topic(room),
            event=_presence,
        )

    @app.function(inputs=["text", "text", membership], outputs=["json", membership])
    async def join_room(name: str, room: str, where: Any = None) -> tuple[Any, Any]:
        """Join a chat room under a display name; you get its recent history and members."""
        name = _clean(name, "name", MAX_NAME)
        room = _clean(room, "room", MAX_ROOM)
        ctx = context()
        if where is not None:
            await leave(ctx.session_id, where)
            ctx.unsubscribe(room_topic(where["room"]))
        ctx.subscribe(room_topic(room))
        members = await app.store.update(
            f"presence:{room}",
            lambda members: {**(members or {}), ctx.session_id: name},
            {},
            topic=room_topic(room),
            event=_presence,
        )
        history = await app.store.list_range(f"history:{room}", -ROOM_HISTORY, -1)
        joined = {"room": room, "name": name}
        info = {**joined, "history": history, "members": _presence(members)["members"]}
        return info, joined

    @app.function(inputs=["text", membership], outputs=["json", membership])
    async def say(text: str, where: Any = None) -> tuple[Any, Any]:
        """Say something in the room you joined; everyone in it sees it."""
        if where is None:
            raise RoomError("join a room first")
        text = _clean(text, "message", MAX_MESSAGE)
        message = {
            "kind": "message",
            "id": uuid.uuid4().hex,
            "name": where["name"],
            "text": text,
            "at": time.time(),
        }
        await app.store.list_append(
            f"history:{where['room']}", message, ROOM_HISTORY, topic=room_topic(where["room"])
        )
        return message, where

    @app.function(inputs=[membership], outputs=["json", membership])
    async def leave_room(where: Any = None) -> tuple[Any, Any]:
        """Leave the room you joined."""
        if where is None:
            return {"left": None}, None
        await leave(context().session_id, where)
        context().unsubscribe(room_topic(where["room"]))
        return {"left": where["room"]}, None

    @app.on_session_end
    async def gone(session: Any) -> None:
        where = session.state.get(membership)
        if where is not None:
            await leave(session.id, where)

    return app


app = create_app()
