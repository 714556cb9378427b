"""``--scenario rooms``: the demo's chat rooms, and what ``--check`` verifies of them."""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Iterator
from functools import partial
from typing import Any, Final, TypeGuard

from ...protocol import Error, Event, Result, ServerMessage
from ..histogram import micros
from ..scenario import Options, Scenario, Step, Wait
from .rooms_model import Member, Room, Said

__all__ = ["USERS_PER_ROOM", "RoomsScenario", "default_rooms"]

USERS_PER_ROOM: Final = 10


def default_rooms(users: int) -> int:
    """``--rooms`` when not given: one room per ``USERS_PER_ROOM`` users."""
    return max(1, math.ceil(users / USERS_PER_ROOM))


def _is_names(value: Any) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(n, str) for n in value)


class RoomsScenario(Scenario):
    """The demo's chat rooms: users spread over ``--rooms`` rooms (user ``i`` in room
    ``i % rooms``); each conversation joins the user's room on a new session, says
    ``--turns`` messages and leaves.

    What ``--check`` verifies is what the demo and the protocol guarantee while
    nothing is lost (events are at most once: a session the server closes as a
    slow consumer misses them, so whatever depends on a session's events counts
    only for sessions that lived to their ``leave_room`` result):

    - each reply is its own: ``join_room`` echoes the name and room and lists the
      joiner and every user of this process who had joined before it was sent and
      had not yet sent ``leave_room`` when it was answered; ``say`` returns the
      message just said; ``leave_room`` the room left (``null`` if the join failed);
    - events come only on the user's room topic, no message twice;
    - a user's own messages all come back to it as events (before it leaves, it
      waits for them at most the drain timeout);
    - a user receives every message said by a user of this process that was sent
      after its join was answered, and answered before the user's last own message
      that came back was sent (such a message was published while it was subscribed,
      and before that own message, so in topic order it came first);
    - messages arrive in the order they were published: one user's in turn order,
      and never one answered before another was sent after it;
    - presence: a user sees itself listed (its join publishes presence after
      subscribing it), and then in every presence event until it leaves; the
      latest presence event a user received before a message (from a user of
      this process) lists the message's sayer.

    Messages are timed (say submitted → event received, at every receiver) when
    said by users of this generator process: all of them with ``--procs 1``.
    """

    name = "rooms"
    uses = ("join_room", "say", "leave_room")

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        rooms = max(1, options.rooms)
        self.rooms = [Room(f"loadtest-{options.run_id}-{r}") for r in range(rooms)]
        self.members: dict[int, Member] = {}

    def conversation(self, user: int, number: int, rng: random.Random) -> Iterator[Step | Wait]:
        room = self.rooms[user % len(self.rooms)]
        me = Member(room, f"u{user}.{number}")
        self.members[user] = me
        room.members.add(me)
        try:
            yield Step(
                "join_room",
                [me.name, room.name],
                partial(self._check_join, me),
                sent=partial(self._join_sent, me),
                done=partial(self._join_done, me),
            )
            for turn in range(self.options.turns):
                text = f"user {user} conversation {number} turn {turn}"
                yield Step(
                    "say",
                    [text],
                    partial(self._check_say, me, text),
                    sent=partial(self._say_sent, me, text, turn),
                    done=partial(self._say_done, me, text),
                )
            if self.options.check:
                yield Wait(me.caught_up, partial(self._missing, me))
            yield Step(
                "leave_room",
                [],
                partial(self._check_leave, me),
                sent=partial(self._leave_sent, me),
                done=partial(self._leave_done, me),
            )
        finally:
            self._end(user, me)

    # -- what the driver reports -------------------------------------------------

    def _join_sent(self, me: Member, now: float) -> None:
        me.join_sent = now

    def _join_done(self, me: Member, reply: Result | Error | None) -> None:
        if type(reply) is Result:
            me.joined = time.perf_counter()
            me.first = me.room.appended

    def _say_sent(self, me: Member, text: str, turn: int, now: float) -> None:
        said = Said(text, me, turn, now)
        room = me.room
        room.said.append(said)
        room.by_text[text] = said
        room.appended += 1
        me.own.append(said)

    def _say_done(self, me: Member, text: str, reply: Result | Error | None) -> None:
        said = me.room.by_text[text]  # not pruned: it was not settled
        said.settled = now = time.perf_counter()
        if type(reply) is Result:
            said.answered = now
            said.ok = True
            if text not in me.got:
                me.awaited.add(text)
                me.caught_up.clear()

    def _leave_sent(self, me: Member, now: float) -> None:
        me.leaving = True

    def _leave_done(self, me: Member, reply: Result | Error | None) -> None:
        me.left = type(reply) is Result

    def _end(self, user: int, me: Member) -> None:
        me.leaving = me.ended = True
        if not me.left:
            me.deferred.clear()
        now = time.perf_counter()
        for said in me.own:
            if said.settled is None:
                said.settled = now
        room = me.room
        room.members.discard(me)
        if self.members.get(user) is me:
            del self.members[user]
        # A message answered before every current member's join was sent reaches
        # none of them, nor anyone joining later: forget it.
        horizon = min((m.join_sent for m in room.members if m.join_sent is not None), default=now)
        said_ = room.said
        while said_ and (settled := said_[0].settled) is not None and settled < horizon:
            del room.by_text[said_.popleft().text]

    # -- checks of replies (with --check) ---------------------------------------------

    def _check_join(self, me: Member, data: list[Any]) -> str | None:
        info = data[0] if data else None
        room = me.room
        if not isinstance(info, dict):
            return f"join_room returned {info!r:.80}, not the room"
        if info.get("room") != room.name or info.get("name") != me.name:
            return (
                f"join_room({me.name!r}, {room.name!r}) returned room {info.get('room')!r} "
                f"and name {info.get('name')!r}"
            )
        members, history = info.get("members"), info.get("history")
        if not _is_names(members) or not isinstance(history, list):
            return f"join_room returned members {members!r:.60} and history {history!r:.60}"
        if any(not isinstance(m, dict) or m.get("kind") != "message" for m in history):
            return f"join_room's history holds something that is not a message: {history!r:.80}"
        if me.name not in members:
            return f"join_room's members {members!r:.80} do not list the joiner {me.name!r}"
        assert me.join_sent is not None
        for other in room.members:
            if (
                other is not me
                and other.joined is not None
                and other.joined < me.join_sent
                and not other.leaving
                and other.name not in members
            ):
                # Its presence was added before me.join_sent and removed (if at all)
                # after now: unless the server closed its session meanwhile.
                other.blame(
                    f"{me.name}'s join_room listed {len(members)} members without "
                    f"{other.name}, in {room.name} since before that join was sent"
                )
        return None

    def _check_say(self, me: Member, text: str, data: list[Any]) -> str | None:
        message = data[0] if data else None
        if not isinstance(message, dict):
            return f"say returned {message!r:.80}, not the message"
        if (
            message.get("kind") != "message"
            or message.get("name") != me.name
            or message.get("text") != text
            or not isinstance(message.get("id"), str)
        ):
            return f"say({text!r}) by {me.name} returned {message!r:.120}"
        said = me.room.by_text[text]
        if said.id is None:
            said.id = message["id"]
        elif said.id != message["id"]:
            return f"say({text!r}) returned id {message['id']!r}, its event had {said.id!r}"
        return None

    def _check_leave(self, me: Member, data: list[Any]) -> str | None:
        room = me.room
        problems = me.deferred
        me.deferred = []
        expected = {"left": room.name if me.joined is not None else None}
        if data != [expected]:
            problems.append(f"leave_room returned {data!r:.80}, not [{expected!r}]")
        if me.confirmed is not None and me.joined is not None:
            if not me.seen_self:
                problems.append(f"{me.name} never saw itself in a presence event of {room.name}")
            # Only what was said after me.joined can be expected: it is at the end.
            later = itertools.islice(reversed(room.said), room.appended - me.first)
            missing = [
                s
                for s in later
                if s.user is not me
                and s.ok
                and s.answered is not None
                and me.joined < s.submitted
                and s.answered < me.confirmed
                and s.text not in me.got
            ]
            if missing:
                example = missing[-1]
                problems.append(
                    f"{me.name} in {room.name} never received {len(missing)} message(s) said "
                    f"while it was in the room, e.g. {example.text!r} by {example.user.name}"
                )
        return "; ".join(problems) or None

    def _missing(self, me: Member) -> str:
        example = next(iter(me.awaited), "")
        return (
            f"{me.name}: {len(me.awaited)} of its own messages never came back as events "
            f"on {me.room.topic}, e.g. {example!r}"
        )

    # -- events ----------------------------------------------------------------------

    def on_frame(self, user: int, message: ServerMessage) -> str | None:
        if type(message) is not Event:
            return None
        me = self.members.get(user)
        if me is None:
            return None  # between the end of a conversation and the close of its session
        now = time.perf_counter()
        data = message.data
        kind = data.get("kind") if isinstance(data, dict) else None
        if not self.options.check:
            if isinstance(data, dict) and kind == "message":
                text = data.get("text")
                said = me.room.by_text.get(text) if isinstance(text, str) else None
                if said is not None:
                    self.event_latency.record(micros(now - said.submitted))
            return None
        topic = message.topic
        if topic != me.room.topic:
            return f"{me.name}: an event on {topic!r}, but its room is {me.room.topic!r}"
        if isinstance(data, dict) and kind == "presence":
            return self._on_presence(me, data)
        if isinstance(data, dict) and kind == "message":
            return self._on_message(me, data, now)
        return f"{me.name}: an event on {topic} that is no message nor presence: {data!r:.80}"

    def _on_presence(self, me: Member, data: dict[str, Any]) -> str | None:
        members = data.get("members")
        if not _is_names(members) or len(set(members)) != len(members):
            return f"{me.name}: a presence event with members {members!r:.80}"
        me.presence = present = frozenset(members)
        if me.name in present:
            me.seen_self = True
        elif me.seen_self and not me.leaving:
            return f"{me.name}: a presence event of {me.room.name} without itself, still in it"
        return None

    def _on_message(self, me: Member, data: dict[str, Any], now: float) -> str | None:
        id, name, text = data.get("id"), data.get("name"), data.get("text")
        if not isinstance(id, str) or not isinstance(name, str) or not isinstance(text, str):
            return f"{me.name}: a malformed message event {data!r:.80}"
        if id in me.got_ids:
            return f"{me.name}: message {text!r:.60} (id {id}) arrived twice"
        me.got_ids.add(id)
        said = me.room.by_text.get(text)
        if said is None:
            return None  # said by someone else (another generator process): unknown times
        if text in me.got:
            return f"{me.name}: message {text!r:.60} arrived twice, the second time as {id}"
        me.got.add(text)
        self.event_latency.record(micros(now - said.submitted))
        sayer = said.user
        problems: list[str] = []
        if name != sayer.name:
            problems.append(f"{text!r} arrived as said by {name!r}, not {sayer.name!r}")
        if said.id is None:
            said.id = id
        elif said.id != id:
            problems.append(f"{text!r} arrived with id {id!r}, not {said.id!r}")
        last = me.last_turn.get(sayer.name, -1)
        if said.turn <= last:
            problems.append(f"{text!r} arrived after turn {last} of the same conversation")
        else:
            me.last_turn[sayer.name] = said.turn
        latest = me.latest
        if latest is not None and said.answered is not None and said.answered < latest.submitted:
            problems.append(
                f"{text!r} arrived after {latest.text!r}, which was sent after it was answered"
            )
        if latest is None or said.submitted > latest.submitted:
            me.latest = said
        if sayer is me:
            me.confirmed = max(me.confirmed or said.submitted, said.submitted)
            me.awaited.discard(text)
            if not me.awaited:
                me.caught_up.set()
        if me.presence is not None and sayer.name not in me.presence:
            blamed = sayer.blame(
                f"{me.name} received {text!r} from {sayer.name} after a presence event of "
                f"{me.room.name} that did not list {sayer.name}"
            )
            if blamed is not None:
                problems.append(blamed)
        return f"{me.name}: " + "; ".join(problems) if problems else None
