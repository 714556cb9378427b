"""What one generator process knows of the rooms, for the rooms scenario to check against.

A ``Room`` holds the ``Member`` s of this process now in it and what they
``Said`` there (until no member of this process can still receive it); a
``Member`` (one conversation of one user) records what it received. Only users
of this process are known: with ``--procs`` > 1, others are in the rooms too.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Member", "Room", "Said", "room_topic"]


def room_topic(room: str) -> str:
    """The topic the demo publishes a room's messages and presence on (``demo.room_topic``)."""
    return f"room:{room}"


class Said:
    """A message a user of this generator process said, or set out to say, in a room.

    Times are ``time.perf_counter()`` values: ``submitted`` is never later than
    the say left, ``answered`` never earlier than its result arrived.
    """

    __slots__ = ("answered", "id", "ok", "settled", "submitted", "text", "turn", "user")

    def __init__(self, text: str, user: Member, turn: int, submitted: float) -> None:
        self.text = text
        self.user = user
        self.turn = turn
        self.submitted = submitted
        self.answered: float | None = None  # set when the reply is a result
        self.ok = False  # the reply was a result: the message was published
        # When its reply was seen or its conversation ended without one (for pruning).
        self.settled: float | None = None
        self.id: str | None = None  # from the say's result or the first event, whichever came first


class Room:
    """A room as one generator process sees it: its users now in it, and what they said."""

    __slots__ = ("appended", "by_text", "members", "name", "said", "topic")

    def __init__(self, name: str) -> None:
        self.name = name
        self.topic = room_topic(name)
        self.members: set[Member] = set()
        # In the order sent; dropped once no user of this process can receive them.
        self.said: deque[Said] = deque()
        self.by_text: dict[str, Said] = {}
        self.appended = 0


class Member:
    """One conversation of one simulated user: a session that joins its room, says, leaves."""

    def __init__(self, room: Room, name: str) -> None:
        self.room = room
        self.name = name
        self.join_sent: float | None = None
        # When its join_room result was seen: it was subscribed to the room by then.
        self.joined: float | None = None
        self.first = 0  # room.appended then: what was said later is at the deque's end
        self.leaving = False  # leave_room was sent, or the conversation is over
        self.left = False  # leave_room got a result: the session lived to the end
        self.ended = False
        self.own: list[Said] = []
        self.got_ids: set[str] = set()
        self.got: set[str] = set()  # texts of this process's messages received as events
        # The submit time of the latest own message received as an event: every
        # message answered before then was published before it, so has arrived too.
        self.confirmed: float | None = None
        self.presence: frozenset[str] | None = None  # the latest presence event's members
        self.seen_self = False
        self.last_turn: dict[str, int] = {}  # per sayer, the latest turn received
        self.latest: Said | None = None  # of the messages received, the one submitted last
        self.awaited: set[str] = set()  # own messages published but not received yet
        self.caught_up = asyncio.Event()
        self.caught_up.set()
        # Problems other users found that are real only if this session lives to
        # the end: a session the server closes (a slow consumer) leaves its room
        # at once, before its client can know.
        self.deferred: list[str] = []

    def blame(self, problem: str) -> str | None:
        """``problem`` if this session ended normally; deferred while it runs; else dropped."""
        if self.left:
            return problem
        if not self.ended:
            self.deferred.append(problem)
        return None
