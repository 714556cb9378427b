"""The demo app: the guide's two examples, a chatbot (session state) and a score tracker
(global state).

Serve it with ``tether demo``.

Every piece of global data it keeps is bounded, so no client can grow it for
everyone (demo constants, not server settings: they are this app's choices):

- the leaderboard keeps its best ``LEADERBOARD_KEEP`` scores; a score must lie
  within +-``MAX_SCORE``, checked before anything is written;
- at most ``MAX_ROOMS`` chat rooms exist at once (``create_app(max_rooms=)``);
  a ``join_room`` that would create one more is refused and changes nothing.
  A room keeps its last ``ROOM_HISTORY`` messages, and gives all its data back
  when its last member leaves; its data also expires after ``ROOM_TTL`` seconds
  without a join or a message (``create_app(room_ttl=)``), so a room whose
  members never left (their node died) does not keep it forever.

Rooms are kept as ``rooms`` (a value: ``{room: [epoch, sessions in it]}``), and
per room ``presence:<room>:<epoch>`` (``{session: name}``) and the list
``history:<room>:<epoch>``. A join counts itself in first (refused there when
the room would be one too many), a leave counts itself out last; the leave
that takes a room's count to 0 removes the room from ``rooms`` and deletes its
two keys. Each join, message and leave gives those keys ``ROOM_TTL`` again
(``store.expire``). A room created again gets a new epoch, so a late delete of the old
room's keys can never touch the new room's data.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from .app import App, State, context
from .store import plain_number

__all__ = ["app", "create_app"]

LEADERBOARD = "scores"
LEADERBOARD_KEEP = 1000
MAX_SCORE = 2**53 - 1  # beyond it a whole score is no longer exact (in a double, in JavaScript)
ROOMS = "rooms"
MAX_ROOMS = 1000
ROOM_HISTORY = 100
ROOM_TTL = 24 * 3600.0  # seconds an idle room's presence and history are kept
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


class ScoreError(ValueError):
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


def presence_key(room: str, epoch: str) -> str:
    return f"presence:{room}:{epoch}"


def history_key(room: str, epoch: str) -> str:
    return f"history:{room}:{epoch}"


def _presence(members: dict[str, str]) -> dict[str, Any]:
    return {"kind": "presence", "members": sorted(set(members.values()), key=str.lower)}


def create_app(*, max_rooms: int = MAX_ROOMS, room_ttl: float = ROOM_TTL) -> App:
    """A fresh demo app with its own (empty) store; at most ``max_rooms`` rooms at once,
    whose data expires ``room_ttl`` seconds after their last join, message or leave."""
    app = App("tether demo", topics=[LEADERBOARD, "room:*"])
    app.describe_topic(
        LEADERBOARD,
        "The top scores of all users, updated live whenever anyone submits one.",
        label="Top scores",
    )

    @app.function(inputs=["text", "state"], outputs=["chatbot", "state"], label="Chat")
    def chat(message: str, history: History = []) -> tuple[History, History]:  # noqa: B006
        """Chat with a bot that remembers this session's conversation."""
        # The mutable default is safe: tether copies it per session, and rolls the
        # session's state back if this function raises after mutating it.
        history.append([message, reply_to(message)])
        return history, history

    @app.function(inputs=["text", "state"], outputs=["chatbot", "state"], label="Streaming chat")
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
        # Checked before anything is written: store writes are not rolled back.
        if not -MAX_SCORE <= score <= MAX_SCORE:
            raise ScoreError(f"a score must lie between {-MAX_SCORE} and {MAX_SCORE}")
        # One atomic store operation adds the score and publishes the new top 3
        # on topic "scores", in the order the changes happened.
        top = app.store.sync.lb_add(
            LEADERBOARD, uuid.uuid4().hex, score, keep=LEADERBOARD_KEEP, top=3, topic=LEADERBOARD
        )
        return [plain_number(s) for _, s in top]

    # -- chat rooms: global state (history, presence) plus a per-session membership --

    membership = State(default=None, name="room membership")

    async def count_in(room: str) -> str:
        """Count one more session in ``room`` (creating it); return the room's epoch."""
        fresh = uuid.uuid4().hex[:16]

        def enter(rooms: dict[str, list[Any]]) -> dict[str, list[Any]]:
            entry = rooms.get(room)
            if entry is None:
                if len(rooms) >= max_rooms:
                    raise RoomError(
                        f"there are already {max_rooms} rooms, the most this server keeps; "
                        "join one of them, or try again later"
                    )
                entry = [fresh, 0]
            rooms[room] = [entry[0], entry[1] + 1]
            return rooms

        rooms = await app.store.update(ROOMS, enter, {})
        return str(rooms[room][0])

    async def count_out(room: str, epoch: str) -> None:
        """Count one session out of ``room``; the last one out frees the room's data."""

        def out(rooms: dict[str, list[Any]]) -> dict[str, list[Any]]:
            entry = rooms.get(room)
            if entry is not None and entry[0] == epoch:
                if entry[1] > 1:
                    rooms[room] = [epoch, entry[1] - 1]
                else:
                    del rooms[room]
            return rooms

        rooms = await app.store.update(ROOMS, out, {})
        entry = rooms.get(room)
        if entry is None or entry[0] != epoch:
            await app.store.delete(presence_key(room, epoch))
            await app.store.delete(history_key(room, epoch))
            # Nor does its presence outlive it as the topic's current value. (A room
            # made again at this moment shows nobody until its next presence change.)
            app.forget(room_topic(room))

    async def drop(session_id: str, room: str, epoch: str) -> bool:
        """Take the session out of the room's presence; True if it was there."""
        found = False

        def without(members: dict[str, str]) -> dict[str, str]:
            nonlocal found  # set by the call whose result is stored (a retry calls again)
            found = session_id in members
            return {k: v for k, v in members.items() if k != session_id}

        await app.store.update(
            presence_key(room, epoch), without, {}, topic=room_topic(room), event=_presence
        )
        await app.store.expire(presence_key(room, epoch), room_ttl)  # update cleared it
        return found

    async def leave(session_id: str, where: dict[str, str]) -> None:
        room, epoch = where["room"], where["epoch"]
        # Counted out only when it was in: a second leave of the same membership (its
        # state rolled back after a failure) cannot count another session out.
        if await drop(session_id, room, epoch):
            await count_out(room, epoch)

    @app.function(inputs=["text", "text", membership], outputs=["json", membership])
    async def join_room(name: str, room: str, where: Any = None) -> tuple[Any, Any]:
        """Join a chat room under a display name; you get its recent history and members."""
        name = _clean(name, "name", MAX_NAME)
        room = _clean(room, "room", MAX_ROOM)
        ctx = context()
        # Counted in before anything else: a room too many is refused with nothing changed.
        epoch = await count_in(room)
        try:
            if where is not None:
                await leave(ctx.session_id, where)
                ctx.unsubscribe(room_topic(where["room"]))
            ctx.subscribe(room_topic(room))
            members = await app.store.update(
                presence_key(room, epoch),
                lambda members: {**members, ctx.session_id: name},
                {},
                topic=room_topic(room),
                event=_presence,
            )
            await app.store.expire(presence_key(room, epoch), room_ttl)
            await app.store.expire(history_key(room, epoch), room_ttl)
            history = await app.store.list_range(history_key(room, epoch), -ROOM_HISTORY, -1)
        except BaseException:
            # The session's state goes back to before the join: so must its count, or
            # the room could never be freed (best effort: the store may be down).
            with contextlib.suppress(Exception):
                await drop(ctx.session_id, room, epoch)
                await count_out(room, epoch)
            raise
        info = {"room": room, "name": name, "history": history}
        info["members"] = _presence(members)["members"]
        return info, {"room": room, "name": name, "epoch": epoch}

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
            history_key(where["room"], where["epoch"]),
            message,
            ROOM_HISTORY,
            topic=room_topic(where["room"]),
        )
        await app.store.expire(history_key(where["room"], where["epoch"]), room_ttl)
        return message, where

    @app.function(inputs=[membership], outputs=["json", membership])
    async def leave_room(where: Any = None) -> tuple[Any, Any]:
        """Leave the room you joined."""
        if where is None:
            return {"left": None}, None
        await leave(context().session_id, where)
        context().unsubscribe(room_topic(where["room"]))
        return {"left": where["room"]}, None

    app.room(
        join="join_room",
        say="say",
        leave="leave_room",
        topic="room:{room}",
        label="Chat room",
        description="Pick a name and a room; everyone in the room sees messages and who is "
        "there, live.",
    )

    @app.on_session_end
    async def gone(session: Any) -> None:
        where = session.state.get(membership)
        if where is not None:
            await leave(session.id, where)

    return app


app = create_app()
