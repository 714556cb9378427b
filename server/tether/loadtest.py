"""Load testing a tether server: many scripted sessions, latency percentiles, throughput.

::

    tether loadtest ws://127.0.0.1:8000/ws --users 200 --duration 30 --scenario chat --check

N simulated users start over ``--ramp`` seconds. Each runs a *scenario* in a
closed loop (send, wait for the reply, send the next) or, with ``--rate``, in an
open loop where submits leave on a fixed schedule whatever the replies do, and
latency counts from the scheduled time (so a stalled server shows up as
latency, not as a politely slower generator).

Scenarios are pluggable. The built-ins drive the demo (``tether demo``):
``chat`` (conversations of ``--turns`` messages with the chatbot), ``score``
(scores for the shared leaderboard) and ``rooms`` (users spread over
``--rooms`` chat rooms, default one per 10 users: each conversation joins,
says ``--turns`` messages and leaves; ``--check`` verifies that each message
reaches every member that was in its room meanwhile, once and in order, and
that presence is right: see ``RoomsScenario``; the summary counts the topic
events received and times them from the say's submit). A built-in scenario is
a ``Scenario`` subclass in ``SCENARIOS`` that yields ``Step`` s (function,
inputs, and how to check the reply); each conversation runs on a fresh
connection. Built-ins use ``LeanConnection``, a small aiohttp client that
costs less CPU per submit than ``tether.Client`` (measured by
``bench/clients.py``), so one generator core drives more load. A custom
scenario is a Python file defining ``async def user(client, index)``; it gets
the regular ``tether.Client`` API (with submits timed and counted). ``user``
is called again and again on one session until the time is up (a new session
per call if the file sets ``RECONNECT = True``); with ``--rate``, calls start
on the open-loop schedule. ``--check`` on a custom scenario checks that every
submit got its reply; the content is the scenario's to check (an exception
counts as a violation).

Latencies are kept in ``Histogram`` s, log-bucketed like HdrHistogram: memory
is bounded whatever the run length, and histograms from several generator
processes (``--procs``) merge exactly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import inspect
import itertools
import math
import multiprocessing
import queue
import random
import secrets
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Generator, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, TypeGuard

import aiohttp
import orjson
from aiohttp import WSMsgType

from .protocol import PROTOCOL_VERSION

if TYPE_CHECKING:
    from .client import Client

__all__ = [
    "SCENARIOS",
    "ChatScenario",
    "Config",
    "Histogram",
    "LeanConnection",
    "LoadTest",
    "MeasuredClient",
    "Options",
    "Result",
    "Scenario",
    "ScenarioError",
    "ScoreScenario",
    "Step",
    "add_parser",
    "execute",
    "main",
    "run_cli",
]

# Sub-buckets per power of two: values are kept within 1/128 (< 0.8%) of their true value.
SUB_BUCKET_BITS: Final = 7
# How long in-flight submits may take to finish once the duration is over.
DRAIN_TIMEOUT: Final = 10.0
CONNECT_TIMEOUT: Final = 10.0
# Largest reply a generator connection accepts (a chat history is far smaller).
MAX_REPLY_SIZE: Final = 16 << 20
# Open loop: submits one simulated user may have in flight before it waits.
MAX_IN_FLIGHT_PER_USER: Final = 64
# Violations are all counted; only this many are kept to be shown.
MAX_VIOLATIONS_KEPT: Final = 50
PROGRESS_INTERVAL: Final = 1.0
# Above this share of one core a generator process is the bottleneck, not the server.
CPU_SATURATED: Final = 0.90
RECONNECT_BACKOFF: Final = (0.05, 1.0)
# Submit ids of one generator connection: (n + 1) * ID_RANGE + k, k < ID_RANGE.
ID_RANGE: Final = 1 << 32
DEFAULT_TURNS: Final = 10
MAX_SCORE: Final = 1_000_000


# -- histograms --------------------------------------------------------------


class Histogram:
    """Counts of integer values (microseconds) in log-spaced buckets.

    Values below ``2**SUB_BUCKET_BITS`` are exact; above, each power of two
    is split into ``2**SUB_BUCKET_BITS`` buckets. A run of any length uses a
    few thousand counters at most, and ``merge`` is exact.
    """

    __slots__ = ("count", "counts", "max", "min", "total")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.count = 0
        self.total = 0
        self.min = 0
        self.max = 0

    @staticmethod
    def bucket(value: int) -> int:
        shift = value.bit_length() - SUB_BUCKET_BITS - 1
        if shift <= 0:
            return value
        return (shift << SUB_BUCKET_BITS) + (value >> shift)

    @staticmethod
    def bucket_range(index: int) -> tuple[int, int]:
        """The smallest and largest value that fall into bucket ``index``."""
        if index < 2 << SUB_BUCKET_BITS:
            return index, index
        shift = (index >> SUB_BUCKET_BITS) - 1
        top = index - (shift << SUB_BUCKET_BITS)
        return top << shift, ((top + 1) << shift) - 1

    def record(self, value: int) -> None:
        value = max(value, 0)
        index = self.bucket(value)
        self.counts[index] = self.counts.get(index, 0) + 1
        if self.count == 0 or value < self.min:
            self.min = value
        self.max = max(self.max, value)
        self.count += 1
        self.total += value

    def merge(self, other: Histogram) -> None:
        if other.count == 0:
            return
        for index, n in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + n
        self.min = other.min if self.count == 0 else min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.count += other.count
        self.total += other.total

    def percentile(self, q: float) -> int:
        """The value at or below which ``q`` percent of the values lie (0 if empty)."""
        if self.count == 0:
            return 0
        rank = max(1, math.ceil(self.count * q / 100))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                low, high = self.bucket_range(index)
                return min(max((low + high) // 2, self.min), self.max)
        return self.max

    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": sorted(self.counts.items()),
            "count": self.count,
            "total": self.total,
            "min": self.min,
            "max": self.max,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Histogram:
        h = cls()
        h.counts = {int(i): int(n) for i, n in data["counts"]}
        h.count, h.total, h.min, h.max = data["count"], data["total"], data["min"], data["max"]
        return h

    def summary_ms(self, *quantiles: float) -> dict[str, float]:
        out = {f"p{q:g}": round(self.percentile(q) / 1000, 3) for q in quantiles}
        out["max"] = round(self.max / 1000, 3)
        out["mean"] = round(self.mean() / 1000, 3)
        return out


# -- scenarios ---------------------------------------------------------------

Check = Callable[[list[Any]], "str | None"]


@dataclass(frozen=True, slots=True)
class Step:
    """One submit of a scenario: call ``fn`` with ``data``; ``check`` judges the result's data.

    ``check`` returns ``None`` when the result is right, else what is wrong; it
    runs only with ``--check``. ``sent`` and ``done`` always run: ``sent(now)``
    just before the submit leaves (``now``: ``time.perf_counter()``; not the
    open loop's due time, which the loop's timers may wake up before),
    ``done(reply)`` as soon as its ``result`` or ``error`` frame is seen
    (``None`` when none will come).
    """

    fn: str
    data: list[Any]
    check: Check | None = None
    sent: Callable[[float], None] | None = None
    done: Callable[[dict[str, Any] | None], None] | None = None


@dataclass(frozen=True, slots=True)
class Wait:
    """A pause in a conversation until ``ready`` is set.

    The driver first lets the conversation's submits in flight be answered,
    then waits for ``ready`` at most the drain timeout; if it is still not set
    (and the connection is open), ``--check`` reports ``missing()`` as a
    violation and the conversation goes on.
    """

    ready: asyncio.Event
    missing: Callable[[], str]


@dataclass(frozen=True, slots=True)
class Options:
    """What a scenario may be configured with from the command line."""

    turns: int = DEFAULT_TURNS
    rooms: int = 1
    check: bool = False
    # Tells this run's rooms (and the messages in them) from any other run's.
    run_id: str = "run"


class Scenario:
    """One kind of simulated user, for the built-in driver.

    ``conversation`` yields the steps of one conversation (``Step`` s, and
    ``Wait`` s); the driver runs each conversation on a fresh connection (a new
    session), closes the generator when the conversation ends, however it
    ends, and then starts the next one. Frames that answer no submit (topic
    events, ``subscribed``, ``queued``...) go to ``on_frame``, which may return
    a violation. ``event_latency`` holds the delivery latencies (µs) of topic
    events the scenario can time; the driver adds them to the results.
    """

    name: ClassVar[str]

    def __init__(self, options: Options) -> None:
        self.options = options
        self.event_latency = Histogram()

    def conversation(self, user: int, number: int, rng: random.Random) -> Iterator[Step | Wait]:
        raise NotImplementedError

    def on_frame(self, user: int, message: dict[str, Any]) -> str | None:
        return None


def _check_history(expected: tuple[str, ...], data: list[Any]) -> str | None:
    history = data[0] if data else None
    if not isinstance(history, list):
        return f"chat returned {type(history).__name__}, not a history"
    said = [pair[0] if isinstance(pair, list) and pair else pair for pair in history]
    if said == list(expected):
        return None
    foreign = [m for m in said if m not in expected]
    detail = f"; messages not from this session: {foreign[:2]!r}" if foreign else ""
    return (
        f"history after turn {len(expected) - 1} holds {len(said)} messages, "
        f"expected the {len(expected)} this session sent, in order{detail}"
    )


class ChatScenario(Scenario):
    """The demo's chatbot: conversations of ``--turns`` messages, each on a new session.

    Check: every reply's history holds exactly the messages this session sent, in order.
    """

    name = "chat"

    def conversation(self, user: int, number: int, rng: random.Random) -> Iterator[Step | Wait]:
        sent: list[str] = []
        for turn in range(self.options.turns):
            text = f"user {user} conversation {number} turn {turn}"
            sent.append(text)
            yield Step("chat", [text], partial(_check_history, tuple(sent)))


def _check_top(score: int, data: list[Any]) -> str | None:
    top = data[0] if data else None
    if not isinstance(top, list) or len(top) > 3:
        return f"track_score returned {top!r}, not a top 3"
    if any(not isinstance(s, (int, float)) for s in top) or top != sorted(top, reverse=True):
        return f"track_score returned {top!r}, not scores from high to low"
    if score in top or (len(top) == 3 and top[-1] >= score):
        return None
    return f"the top 3 {top!r} misses the score {score} just added"


class ScoreScenario(Scenario):
    """The demo's score tracker: random scores on one long session.

    Check: the returned top 3 is sorted and contains the score just added unless
    three scores at least as high are already on the board.
    """

    name = "score"

    def conversation(self, user: int, number: int, rng: random.Random) -> Iterator[Step | Wait]:
        while True:
            score = rng.randint(0, MAX_SCORE)
            yield Step("track_score", [score], partial(_check_top, score))


USERS_PER_ROOM: Final = 10


def default_rooms(users: int) -> int:
    """``--rooms`` when not given: one room per ``USERS_PER_ROOM`` users."""
    return max(1, math.ceil(users / USERS_PER_ROOM))


def _room_topic(room: str) -> str:
    """The topic the demo publishes a room's messages and presence on (``demo.room_topic``)."""
    return f"room:{room}"


class _Said:
    """A message a user of this generator process said, or set out to say, in a room.

    Times are ``time.perf_counter()`` values: ``submitted`` is never later than
    the say left, ``answered`` never earlier than its result arrived.
    """

    __slots__ = ("answered", "id", "ok", "settled", "submitted", "text", "turn", "user")

    def __init__(self, text: str, user: _Member, turn: int, submitted: float) -> None:
        self.text = text
        self.user = user
        self.turn = turn
        self.submitted = submitted
        self.answered: float | None = None  # set when the reply is a result
        self.ok = False  # the reply was a result: the message was published
        # When its reply was seen or its conversation ended without one (for pruning).
        self.settled: float | None = None
        self.id: str | None = None  # from the say's result or the first event, whichever came first


class _Room:
    """A room as one generator process sees it: its users now in it, and what they said."""

    __slots__ = ("appended", "by_text", "members", "name", "said", "topic")

    def __init__(self, name: str) -> None:
        self.name = name
        self.topic = _room_topic(name)
        self.members: set[_Member] = set()
        # In the order sent; dropped once no user of this process can receive them.
        self.said: deque[_Said] = deque()
        self.by_text: dict[str, _Said] = {}
        self.appended = 0


class _Member:
    """One conversation of one simulated user: a session that joins its room, says, leaves."""

    def __init__(self, room: _Room, name: str) -> None:
        self.room = room
        self.name = name
        self.join_sent: float | None = None
        # When its join_room result was seen: it was subscribed to the room by then.
        self.joined: float | None = None
        self.first = 0  # room.appended then: what was said later is at the deque's end
        self.leaving = False  # leave_room was sent, or the conversation is over
        self.left = False  # leave_room got a result: the session lived to the end
        self.ended = False
        self.own: list[_Said] = []
        self.got_ids: set[str] = set()
        self.got: set[str] = set()  # texts of this process's messages received as events
        # The submit time of the latest own message received as an event: every
        # message answered before then was published before it, so has arrived too.
        self.confirmed: float | None = None
        self.presence: frozenset[str] | None = None  # the latest presence event's members
        self.seen_self = False
        self.last_turn: dict[str, int] = {}  # per sayer, the latest turn received
        self.latest: _Said | None = None  # of the messages received, the one submitted last
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

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        rooms = max(1, options.rooms)
        self.rooms = [_Room(f"loadtest-{options.run_id}-{r}") for r in range(rooms)]
        self.members: dict[int, _Member] = {}

    def conversation(self, user: int, number: int, rng: random.Random) -> Iterator[Step | Wait]:
        room = self.rooms[user % len(self.rooms)]
        me = _Member(room, f"u{user}.{number}")
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

    def _join_sent(self, me: _Member, now: float) -> None:
        me.join_sent = now

    def _join_done(self, me: _Member, reply: dict[str, Any] | None) -> None:
        if reply is not None and reply["type"] == "result":
            me.joined = time.perf_counter()
            me.first = me.room.appended

    def _say_sent(self, me: _Member, text: str, turn: int, now: float) -> None:
        said = _Said(text, me, turn, now)
        room = me.room
        room.said.append(said)
        room.by_text[text] = said
        room.appended += 1
        me.own.append(said)

    def _say_done(self, me: _Member, text: str, reply: dict[str, Any] | None) -> None:
        said = me.room.by_text[text]  # not pruned: it was not settled
        said.settled = now = time.perf_counter()
        if reply is not None and reply["type"] == "result":
            said.answered = now
            said.ok = True
            if text not in me.got:
                me.awaited.add(text)
                me.caught_up.clear()

    def _leave_sent(self, me: _Member, now: float) -> None:
        me.leaving = True

    def _leave_done(self, me: _Member, reply: dict[str, Any] | None) -> None:
        me.left = reply is not None and reply["type"] == "result"

    def _end(self, user: int, me: _Member) -> None:
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

    def _check_join(self, me: _Member, data: list[Any]) -> str | None:
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

    def _check_say(self, me: _Member, text: str, data: list[Any]) -> str | None:
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

    def _check_leave(self, me: _Member, data: list[Any]) -> str | None:
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

    def _missing(self, me: _Member) -> str:
        example = next(iter(me.awaited), "")
        return (
            f"{me.name}: {len(me.awaited)} of its own messages never came back as events "
            f"on {me.room.topic}, e.g. {example!r}"
        )

    # -- events ----------------------------------------------------------------------

    def on_frame(self, user: int, message: dict[str, Any]) -> str | None:
        if message.get("type") != "event":
            return None
        me = self.members.get(user)
        if me is None:
            return None  # between the end of a conversation and the close of its session
        now = time.perf_counter()
        data = message.get("data")
        kind = data.get("kind") if isinstance(data, dict) else None
        if not self.options.check:
            if isinstance(data, dict) and kind == "message":
                text = data.get("text")
                said = me.room.by_text.get(text) if isinstance(text, str) else None
                if said is not None:
                    self.event_latency.record(_micros(now - said.submitted))
            return None
        topic = message.get("topic")
        if topic != me.room.topic:
            return f"{me.name}: an event on {topic!r}, but its room is {me.room.topic!r}"
        if isinstance(data, dict) and kind == "presence":
            return self._on_presence(me, data)
        if isinstance(data, dict) and kind == "message":
            return self._on_message(me, data, now)
        return f"{me.name}: an event on {topic} that is no message nor presence: {data!r:.80}"

    def _on_presence(self, me: _Member, data: dict[str, Any]) -> str | None:
        members = data.get("members")
        if not _is_names(members) or len(set(members)) != len(members):
            return f"{me.name}: a presence event with members {members!r:.80}"
        me.presence = present = frozenset(members)
        if me.name in present:
            me.seen_self = True
        elif me.seen_self and not me.leaving:
            return f"{me.name}: a presence event of {me.room.name} without itself, still in it"
        return None

    def _on_message(self, me: _Member, data: dict[str, Any], now: float) -> str | None:
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
        self.event_latency.record(_micros(now - said.submitted))
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


SCENARIOS: dict[str, type[Scenario]] = {
    "chat": ChatScenario,
    "score": ScoreScenario,
    "rooms": RoomsScenario,
}


# -- the lean client -----------------------------------------------------------


class ConnectionLost(Exception):
    """The connection closed while a submit waited for its reply."""


class LeanConnection:
    """A minimal protocol v1 client on aiohttp, for generating load.

    Replies are matched to submits by id. Ids count up from ``first_id``;
    giving every connection its own range (``ID_RANGE`` apart) makes a reply
    meant for another session stand out. A reply whose id was never sent on
    this connection, or was already answered, is reported through
    ``on_violation``; frames that are not replies go to ``on_frame``.
    """

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse[Literal[False]],
        welcome: dict[str, Any],
        on_frame: Callable[[dict[str, Any]], None],
        on_violation: Callable[[str], None],
        first_id: int = 1,
    ) -> None:
        self.ws = ws
        self.session: str = welcome["session"]
        self._on_frame = on_frame
        self._on_violation = on_violation
        self._first_id = self._next_id = first_id
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.closed = False
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def open(
        cls,
        http: aiohttp.ClientSession,
        url: str,
        on_frame: Callable[[dict[str, Any]], None],
        on_violation: Callable[[str], None],
        first_id: int = 1,
    ) -> LeanConnection:
        ws = await http.ws_connect(
            url, max_msg_size=MAX_REPLY_SIZE, compress=0, autoping=True, decode_text=False
        )
        try:
            welcome = orjson.loads((await ws.receive()).data)
            if not isinstance(welcome, dict) or welcome.get("type") != "welcome":
                raise ConnectionError(f"expected a welcome frame, got {welcome!r:.80}")
            if welcome.get("protocol") != PROTOCOL_VERSION:
                raise ConnectionError(f"server speaks protocol {welcome.get('protocol')!r}")
        except BaseException:
            await ws.close()
            raise
        return cls(ws, welcome, on_frame, on_violation, first_id)

    def submit(self, fn: str, data: list[Any]) -> Awaitable[dict[str, Any]]:
        """Send a submit; the awaitable gives its ``result`` or ``error`` frame."""
        if self.closed:
            raise ConnectionLost("the connection is closed")
        id = self._next_id
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[id] = future
        frame = orjson.dumps({"type": "submit", "id": id, "fn": fn, "data": data})
        return self._send_and_wait(frame, id, future)

    async def _send_and_wait(
        self, frame: bytes, id: int, future: asyncio.Future[dict[str, Any]]
    ) -> dict[str, Any]:
        try:
            await self.ws.send_frame(frame, WSMsgType.TEXT)
            return await future
        finally:
            self._pending.pop(id, None)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def _read_loop(self) -> None:
        ws = self.ws
        pending = self._pending
        try:
            while True:
                msg = await ws.receive()
                if msg.type is not WSMsgType.TEXT:
                    break
                obj = orjson.loads(msg.data)
                kind = obj.get("type")
                if kind == "result" or kind == "error":
                    id = obj.get("id")
                    future = pending.pop(id, None) if type(id) is int else None
                    if future is not None:
                        if not future.done():
                            future.set_result(obj)
                    elif kind == "error" and id is None:
                        self._on_frame(obj)
                    elif type(id) is int and self._first_id <= id < self._next_id:
                        self._on_violation(f"a second reply to submit {id} ({kind})")
                    else:
                        self._on_violation(f"a {kind} for submit {id!r}, which was never sent")
                else:
                    self._on_frame(obj)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.closed = True
            lost = ConnectionLost(f"connection closed ({ws.close_code})")
            for future in pending.values():
                if not future.done():
                    future.set_exception(lost)

    async def wait_closed(self) -> None:
        """Return once the connection has closed, from either side."""
        await asyncio.wait((self._reader,))

    async def close(self) -> None:
        self.closed = True
        with contextlib.suppress(Exception):
            await self.ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


# -- configuration and results -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Config:
    url: str
    users: int
    duration: float
    scenario: str = "chat"
    ramp: float = 0.0
    rate: float | None = None
    procs: int = 1
    check: bool = False
    turns: int = DEFAULT_TURNS
    rooms: int | None = None  # rooms scenario; None: default_rooms(users)
    drain_timeout: float = DRAIN_TIMEOUT
    connect_timeout: float = CONNECT_TIMEOUT
    progress: bool = True
    # Shared by the generator processes of one run; names its rooms.
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))


@dataclass
class Stats:
    """What one generator process measured. Merged across processes in ``merge``."""

    latency: Histogram = field(default_factory=Histogram)
    connect: Histogram = field(default_factory=Histogram)
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    violation_count: int = 0
    checked: int = 0
    cpu_seconds: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0
    # Topic events received, and the latencies the scenario could time.
    events: int = 0
    event_latency: Histogram = field(default_factory=Histogram)

    def violation(self, text: str) -> None:
        self.violation_count += 1
        if len(self.violations) < MAX_VIOLATIONS_KEPT:
            self.violations.append(text)

    def merge(self, other: Stats) -> None:
        self.latency.merge(other.latency)
        self.connect.merge(other.connect)
        self.ok += other.ok
        self.errors.update(other.errors)
        self.violation_count += other.violation_count
        room = MAX_VIOLATIONS_KEPT - len(self.violations)
        self.violations.extend(other.violations[: max(room, 0)])
        self.checked += other.checked
        self.cpu_seconds.extend(other.cpu_seconds)
        self.wall_seconds = max(self.wall_seconds, other.wall_seconds)
        self.events += other.events
        self.event_latency.merge(other.event_latency)

    def to_dict(self) -> dict[str, Any]:
        return {
            "latency": self.latency.to_dict(),
            "connect": self.connect.to_dict(),
            "ok": self.ok,
            "errors": dict(self.errors),
            "violations": self.violations,
            "violation_count": self.violation_count,
            "checked": self.checked,
            "cpu_seconds": self.cpu_seconds,
            "wall_seconds": self.wall_seconds,
            "events": self.events,
            "event_latency": self.event_latency.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stats:
        return cls(
            latency=Histogram.from_dict(data["latency"]),
            connect=Histogram.from_dict(data["connect"]),
            ok=data["ok"],
            errors=Counter(data["errors"]),
            violations=list(data["violations"]),
            violation_count=data["violation_count"],
            checked=data["checked"],
            cpu_seconds=list(data["cpu_seconds"]),
            wall_seconds=data["wall_seconds"],
            events=data["events"],
            event_latency=Histogram.from_dict(data["event_latency"]),
        )


@dataclass
class Tick:
    """One progress interval of one generator process."""

    ok: int = 0
    errors: int = 0
    violations: int = 0
    latency: Histogram = field(default_factory=Histogram)
    connected: int = 0


Report = Callable[[str, Any], None]


# -- the generator -------------------------------------------------------------


def _micros(seconds: float) -> int:
    return int(seconds * 1_000_000)


class LoadTest:
    """The users of one generator process: those whose index ``% procs == proc``."""

    def __init__(self, config: Config, proc: int, start_at: float, report: Report) -> None:
        self.config = config
        self.proc = proc
        self.report = report
        self.stats = Stats()
        self.tick = Tick()
        self.connected = 0
        self.opened = 0
        # start_at is wall-clock time shared by all processes; work in monotonic time.
        self.start = time.monotonic() + max(0.0, start_at - time.time())
        self.end = self.start + config.duration
        self.stopping = False
        self.indexes = range(proc, config.users, config.procs)
        self.scenario: Scenario | None = None
        self.custom: ModuleType | None = None
        if config.scenario in SCENARIOS:
            rooms = config.rooms if config.rooms is not None else default_rooms(config.users)
            options = Options(
                turns=config.turns,
                rooms=min(rooms, config.users),
                check=config.check,
                run_id=config.run_id,
            )
            self.scenario = SCENARIOS[config.scenario](options)
        else:
            self.custom = load_scenario_file(config.scenario)
        # Open loop: the seconds between two submits of one user.
        self.interval = config.users / config.rate if config.rate else 0.0

    # -- bookkeeping ---------------------------------------------------------

    def _ok(self, latency: float) -> None:
        micros = _micros(latency)
        self.stats.latency.record(micros)
        self.tick.latency.record(micros)
        self.stats.ok += 1
        self.tick.ok += 1

    def _error(self, code: str) -> None:
        self.stats.errors[code] += 1
        self.tick.errors += 1

    def _violation(self, text: str) -> None:
        self.stats.violation(text)
        self.tick.violations += 1

    def _first_id(self) -> int:
        """The start of a fresh id range, unique over all generator processes."""
        number = self.proc + self.config.procs * self.opened
        self.opened += 1
        return (number + 1) * ID_RANGE

    def _start_of(self, index: int) -> float:
        if self.config.users <= 1:
            return self.start
        return self.start + self.config.ramp * index / self.config.users

    # -- running ---------------------------------------------------------------

    async def run(self) -> Stats:
        # Processes start together at ``start``; measure from there, not from spawning.
        await asyncio.sleep(max(0.0, self.start - time.monotonic()))
        cpu0, wall0 = time.process_time(), time.monotonic()
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, self._stop_now)
            handles_sigint = True
        except (NotImplementedError, RuntimeError, ValueError):
            handles_sigint = False  # not the main thread: the caller decides
        try:
            return await self._run(loop, cpu0, wall0)
        finally:
            if handles_sigint:
                loop.remove_signal_handler(signal.SIGINT)

    async def _run(self, loop: asyncio.AbstractEventLoop, cpu0: float, wall0: float) -> Stats:
        ticker = loop.create_task(self._ticker())
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:
            self.http = http
            run_user = self._run_user if self.scenario is not None else self._run_custom_user
            users = [loop.create_task(run_user(i)) for i in self.indexes]
            if users:
                await asyncio.wait(users, timeout=max(0.0, self.end - time.monotonic()))
            self.stopping = True
            if users:
                _, late = await asyncio.wait(users, timeout=self.config.drain_timeout)
                for task in late:
                    task.cancel()
                await asyncio.gather(*users, return_exceptions=True)
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        self._send_tick()
        if self.scenario is not None:
            self.stats.event_latency.merge(self.scenario.event_latency)
        wall = time.monotonic() - wall0
        self.stats.cpu_seconds = [time.process_time() - cpu0]
        self.stats.wall_seconds = wall
        return self.stats

    def _stopped(self) -> bool:
        return self.stopping

    def _stop_now(self) -> None:
        self.end = min(self.end, time.monotonic())
        self.stopping = True

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL)
            if time.monotonic() >= self.end:
                self.stopping = True
            self._send_tick()

    def _send_tick(self) -> None:
        tick, self.tick = self.tick, Tick()
        tick.connected = self.connected
        self.report("tick", tick)

    async def _sleep_until(self, moment: float) -> None:
        delay = min(moment, self.end) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if time.monotonic() >= self.end:
            self.stopping = True

    async def _pace(self, schedule: list[float]) -> float:
        """Open loop: wait for this user's next slot and return when it was due."""
        due = schedule[0]
        schedule[0] = due + self.interval
        await self._sleep_until(due)
        return due

    async def _backoff(self, attempt: int) -> None:
        low, high = RECONNECT_BACKOFF
        await self._sleep_until(time.monotonic() + min(high, low * 2**attempt))

    # -- built-in scenarios ----------------------------------------------------

    async def _run_user(self, index: int) -> None:
        assert self.scenario is not None
        rng = random.Random(index)
        await self._sleep_until(self._start_of(index))
        schedule = [time.monotonic() + rng.random() * self.interval]
        number = 0
        failures = 0
        while not self.stopping:
            conn = await self._connect(index)
            if conn is None:
                failures += 1
                await self._backoff(failures)
                continue
            failures = 0
            self.connected += 1
            steps = self.scenario.conversation(index, number, rng)
            try:
                if self.interval:
                    await self._converse_open(conn, steps, schedule)
                else:
                    await self._converse_closed(conn, steps)
            finally:
                self.connected -= 1
                # The scenario learns the conversation is over while its session still exists.
                if isinstance(steps, Generator):
                    steps.close()
                await conn.close()
            number += 1

    async def _connect(self, index: int) -> LeanConnection | None:
        assert self.scenario is not None
        scenario = self.scenario

        def on_frame(msg: dict[str, Any]) -> None:
            kind = msg.get("type")
            if kind == "event":
                self.stats.events += 1
            elif kind == "error":
                self._error(str(msg.get("code")))
                return
            problem = scenario.on_frame(index, msg)
            if problem is not None:
                self._violation(f"user {index}: {problem}")

        def on_violation(text: str) -> None:
            self._violation(f"user {index}: {text}")

        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                conn = await LeanConnection.open(
                    self.http, self.config.url, on_frame, on_violation, self._first_id()
                )
        except asyncio.CancelledError:
            raise
        except Exception:
            self._error("connect_failed")
            return None
        self.stats.connect.record(_micros(time.perf_counter() - t0))
        return conn

    async def _converse_closed(self, conn: LeanConnection, steps: Iterator[Step | Wait]) -> None:
        for step in steps:
            if self.stopping or conn.closed:
                return
            if isinstance(step, Wait):
                if not await self._wait(conn, step):
                    return
            elif not await self._submit(conn, step, time.perf_counter()):
                return

    async def _converse_open(
        self, conn: LeanConnection, steps: Iterator[Step | Wait], schedule: list[float]
    ) -> None:
        in_flight: set[asyncio.Task[bool]] = set()
        loop = asyncio.get_running_loop()
        # perf_counter and monotonic are different clocks; latency counts from the due time.
        offset = time.perf_counter() - time.monotonic()
        try:
            for step in steps:
                if isinstance(step, Wait):
                    if in_flight:
                        await asyncio.gather(*in_flight, return_exceptions=True)
                    if self.stopping or conn.closed or not await self._wait(conn, step):
                        return
                    # The pause is not the server's latency: the schedule resumes from now.
                    schedule[0] = max(schedule[0], time.monotonic())
                    continue
                due = await self._pace(schedule)
                if self.stopping or conn.closed:
                    return
                if len(in_flight) >= MAX_IN_FLIGHT_PER_USER:
                    _, in_flight = await asyncio.wait(in_flight, return_when="FIRST_COMPLETED")
                task = loop.create_task(self._submit(conn, step, due + offset))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
        finally:
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)

    async def _submit(self, conn: LeanConnection, step: Step, t0: float) -> bool:
        """Run one step; False when the connection is gone."""
        if step.sent is not None:
            step.sent(time.perf_counter())
        try:
            reply = await conn.submit(step.fn, step.data)
        except ConnectionLost:
            self._lost(conn, step, "its connection closed")
            return False
        except asyncio.CancelledError:
            self._lost(conn, step, "no reply before the drain timeout")
            raise
        if step.done is not None:
            step.done(reply)
        if reply["type"] == "result":
            self._ok(time.perf_counter() - t0)
            if self.config.check and step.check is not None:
                self.stats.checked += 1
                problem = step.check(reply["data"])
                if problem is not None:
                    self._violation(f"session {conn.session[:8]}: {step.fn}: {problem}")
        else:
            self._error(str(reply.get("code")))
        return True

    def _lost(self, conn: LeanConnection, step: Step, why: str) -> None:
        if step.done is not None:
            step.done(None)
        self._error("lost")
        if self.config.check:
            self._violation(f"session {conn.session[:8]}: a {step.fn} submit got no reply: {why}")

    async def _wait(self, conn: LeanConnection, wait: Wait) -> bool:
        """Pause for ``wait`` (at most the drain timeout); False when the connection closed."""
        if not wait.ready.is_set():
            ready = asyncio.ensure_future(wait.ready.wait())
            closed = asyncio.ensure_future(conn.wait_closed())
            try:
                await asyncio.wait(
                    (ready, closed),
                    timeout=self.config.drain_timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                ready.cancel()
                closed.cancel()
        if conn.closed:
            return False
        if not wait.ready.is_set() and self.config.check:
            self._violation(
                f"session {conn.session[:8]}: {wait.missing()} "
                f"(waited {self.config.drain_timeout:g} s)"
            )
        return True

    # -- custom scenarios ----------------------------------------------------

    async def _run_custom_user(self, index: int) -> None:
        assert self.custom is not None
        from . import client as tether_client

        user = self.custom.user
        reconnect = bool(getattr(self.custom, "RECONNECT", False))
        rng = random.Random(index)
        await self._sleep_until(self._start_of(index))
        schedule = [time.monotonic() + rng.random() * self.interval]
        measured: MeasuredClient | None = None
        failures = 0
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while not self.stopping:
                if measured is None:
                    t0 = time.perf_counter()
                    try:
                        async with asyncio.timeout(self.config.connect_timeout):
                            raw = await tether_client.connect(self.config.url)
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        self._error("connect_failed")
                        failures += 1
                        await self._backoff(failures)
                        continue
                    failures = 0
                    self.stats.connect.record(_micros(time.perf_counter() - t0))
                    measured = MeasuredClient(raw, self)
                    self.connected += 1
                if self.interval:
                    await self._pace(schedule)
                    if self._stopped():
                        break
                    if len(in_flight) >= MAX_IN_FLIGHT_PER_USER:
                        _, in_flight = await asyncio.wait(in_flight, return_when="FIRST_COMPLETED")
                    task = asyncio.get_running_loop().create_task(
                        self._call_user(user, measured, index)
                    )
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                else:
                    await self._call_user(user, measured, index)
                    # A scenario that never awaits must not starve the other users.
                    await asyncio.sleep(0)
                if (reconnect and not in_flight) or measured.ws.close_code is not None:
                    if in_flight:
                        await asyncio.gather(*in_flight, return_exceptions=True)
                    self.connected -= 1
                    await measured.close()
                    measured = None
        finally:
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
            if measured is not None:
                self.connected -= 1
                await measured.close()

    async def _call_user(self, user: Any, client: MeasuredClient, index: int) -> None:
        from .client import TetherError

        try:
            await user(client, index)
        except TetherError:
            pass  # counted by MeasuredClient
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._error(f"scenario:{type(exc).__name__}")
            if self.config.check:
                self._violation(f"user {index}: the scenario raised {type(exc).__name__}: {exc}")
            await self._backoff(0)


class MeasuredClient:
    """A ``tether.Client`` whose submits are timed and counted; everything else passes through."""

    def __init__(self, client: Client, test: LoadTest) -> None:
        self._client = client
        self._test = test

    async def submit(self, fn: str, *args: Any) -> Any:
        outputs = await self.submit_raw(fn, list(args))
        if len(outputs) == 1:
            return outputs[0]
        return tuple(outputs)

    async def submit_raw(self, fn: str, data: list[Any], id: Any = None) -> list[Any]:
        from .client import TetherError

        t0 = time.perf_counter()
        try:
            outputs = await self._client.submit_raw(fn, data, id)
        except TetherError as exc:
            if exc.code == "connection_closed":
                self._test._error("lost")
                if self._test.config.check:
                    self._test._violation(f"session {self._client.session[:8]}: {fn}: {exc}")
            else:
                self._test._error(exc.code)
            raise
        except asyncio.CancelledError:
            self._test._error("lost")
            if self._test.config.check:
                self._test._violation(
                    f"session {self._client.session[:8]}: a {fn} submit got no reply "
                    "before the drain timeout"
                )
            raise
        except Exception:
            self._test._error("lost")
            raise
        self._test._ok(time.perf_counter() - t0)
        if self._test.config.check:
            # A custom scenario checks content itself; here: the reply reached its submitter.
            self._test.stats.checked += 1
        return outputs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def load_scenario_file(path: str) -> ModuleType:
    """Import a scenario file; it must define ``async def user(client, index)``."""
    file = Path(path)
    if not file.is_file():
        raise ScenarioError(
            f"no scenario {path!r}: use one of {', '.join(SCENARIOS)} or a Python file"
        )
    spec = importlib.util.spec_from_file_location(f"tether_scenario_{file.stem}", file)
    if spec is None or spec.loader is None:
        raise ScenarioError(f"cannot import {path!r}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ScenarioError(f"{path}: {type(exc).__name__}: {exc}") from None
    user = getattr(module, "user", None)
    if not inspect.iscoroutinefunction(user):
        raise ScenarioError(f"{path} must define `async def user(client, index)`")
    return module


class ScenarioError(Exception):
    """The scenario given cannot be used."""


# -- processes -------------------------------------------------------------------


def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        return None
    return uvloop.new_event_loop


def run_process(config: Config, proc: int, start_at: float, report: Report) -> Stats:
    """Run this process's share of the users to the end; return what they measured."""
    with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
        return runner.run(LoadTest(config, proc, start_at, report).run())


def _worker_main(config: Config, proc: int, start_at: float, out: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # until the loop installs its own handler

    def report(kind: str, payload: Any) -> None:
        if kind == "tick":
            payload = (
                payload.ok,
                payload.errors,
                payload.violations,
                payload.latency.to_dict(),
                payload.connected,
            )
        out.put((proc, kind, payload))

    try:
        stats = run_process(config, proc, start_at, report)
    except BaseException as exc:
        out.put((proc, "failed", f"{type(exc).__name__}: {exc}"))
        raise
    out.put((proc, "done", stats.to_dict()))


class Progress:
    """Merges ticks from the generator processes into a progress line and a timeline."""

    def __init__(self, config: Config, stream: Any) -> None:
        self.config = config
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.begin = time.monotonic()
        self.last = self.begin
        self.pending = Tick()
        self.connected: dict[int, int] = {}
        self.errors = 0
        self.violations = 0
        self.timeline: list[dict[str, float]] = []
        self.dirty = False

    def add(self, proc: int, tick: Tick) -> None:
        self.pending.ok += tick.ok
        self.pending.errors += tick.errors
        self.pending.violations += tick.violations
        self.pending.latency.merge(tick.latency)
        self.connected[proc] = tick.connected
        self.dirty = True

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        span = now - self.last
        if not self.dirty or span < PROGRESS_INTERVAL * (0.5 if force else 0.9):
            # The counts still reach the totals; a sliver of an interval makes no rate.
            if force:
                self.errors += self.pending.errors
                self.violations += self.pending.violations
            return
        tick, self.pending, self.last, self.dirty = self.pending, Tick(), now, False
        self.errors += tick.errors
        self.violations += tick.violations
        rate = tick.ok / span
        p50 = tick.latency.percentile(50) / 1000
        p99 = tick.latency.percentile(99) / 1000
        elapsed = now - self.begin
        self.timeline.append(
            {"t": round(elapsed, 2), "rate": round(rate, 1), "p50_ms": p50, "p99_ms": p99}
        )
        if not self.config.progress:
            return
        line = (
            f"[{elapsed:6.1f}s/{self.config.duration:g}s] "
            f"sessions {sum(self.connected.values()):>5}  {rate:9.1f} submits/s  "
            f"p50 {p50:8.2f} ms  p99 {p99:8.2f} ms  errors {self.errors}"
        )
        if self.config.check:
            line += f"  violations {self.violations}"
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.flush(force=True)
        if self.tty and self.config.progress:
            self.stream.write("\n")
            self.stream.flush()


def execute(config: Config, stream: Any = None) -> Result:
    """Run a load test as configured; return the merged result."""
    progress = Progress(config, stream if stream is not None else sys.stderr)
    if config.procs == 1:

        def report(kind: str, payload: Any) -> None:
            progress.add(0, payload)
            progress.flush()

        stats = run_process(config, 0, time.time(), report)
    else:
        stats = _execute_processes(config, progress)
    progress.close()
    return Result(config, stats, progress.timeline)


def _execute_processes(config: Config, progress: Progress) -> Stats:
    ctx = multiprocessing.get_context("spawn")
    out: Any = ctx.Queue()
    # Give every process time to start, so that they begin together.
    start_at = time.time() + 1.0 + 0.25 * config.procs
    procs = [
        ctx.Process(
            target=_worker_main, args=(config, k, start_at, out), name=f"tether-loadtest-{k}"
        )
        for k in range(config.procs)
    ]
    for p in procs:
        p.start()
    merged = Stats()
    finished: set[int] = set()
    failures: list[str] = []
    give_up = (
        time.monotonic()
        + (start_at - time.time())
        + config.duration
        + config.drain_timeout
        + config.connect_timeout
        + 30
    )
    try:
        while len(finished) < config.procs and time.monotonic() < give_up:
            try:
                proc, kind, payload = out.get(timeout=0.2)
            except queue.Empty:
                for k, p in enumerate(procs):
                    if k not in finished and not p.is_alive() and p.exitcode not in (0, None):
                        finished.add(k)
                        failures.append(f"generator process {k} died (exit {p.exitcode})")
                progress.flush()
                continue
            except KeyboardInterrupt:
                continue  # the workers got the signal too and are stopping early
            if kind == "tick":
                ok, errors, violations, hist, connected = payload
                progress.add(proc, Tick(ok, errors, violations, Histogram.from_dict(hist), 0))
                progress.connected[proc] = connected
            elif kind == "done":
                merged.merge(Stats.from_dict(payload))
                finished.add(proc)
            elif kind == "failed":
                failures.append(f"generator process {proc} failed: {payload}")
                finished.add(proc)
            progress.flush()
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
    if len(finished) < config.procs:
        failures.append("generator processes did not finish in time")
    for text in failures:
        merged.errors["generator_failed"] += 1
        merged.violation(text)
    return merged


# -- results ---------------------------------------------------------------------


class Result:
    """A finished load test: merged statistics and what to say about them."""

    def __init__(self, config: Config, stats: Stats, timeline: list[dict[str, float]]) -> None:
        self.config = config
        self.stats = stats
        self.timeline = timeline

    @property
    def elapsed(self) -> float:
        return max(self.stats.wall_seconds, 1e-9)

    @property
    def throughput(self) -> float:
        return self.stats.ok / self.elapsed

    @property
    def cpu_percent(self) -> list[float]:
        return [round(100 * cpu / self.elapsed, 1) for cpu in self.stats.cpu_seconds]

    @property
    def saturated(self) -> bool:
        return any(p > CPU_SATURATED * 100 for p in self.cpu_percent)

    @property
    def failed(self) -> bool:
        """True when --check found violations, or when no submit succeeded at all."""
        return (self.config.check and self.stats.violation_count > 0) or self.stats.ok == 0

    def to_json(self) -> dict[str, Any]:
        s = self.stats
        return {
            "config": asdict(self.config),
            "mode": "open" if self.config.rate else "closed",
            "elapsed_s": round(self.elapsed, 3),
            "submits_ok": s.ok,
            "throughput": round(self.throughput, 1),
            "latency_ms": s.latency.summary_ms(50, 90, 99),
            "errors": dict(s.errors),
            "error_count": sum(s.errors.values()),
            "connects": s.connect.count,
            "connect_ms": s.connect.summary_ms(50, 90, 99),
            "generator_cpu_percent": self.cpu_percent,
            "generator_saturated": self.saturated,
            "events": {
                "count": s.events,
                "per_s": round(s.events / self.elapsed, 1),
                # From a say's submit to its event at a receiver (rooms; the messages
                # of users in the same generator process).
                "timed": s.event_latency.count,
                "latency_ms": s.event_latency.summary_ms(50, 90, 99),
            },
            "check": {
                "enabled": self.config.check,
                "results_checked": s.checked,
                "violations": s.violation_count,
                "examples": s.violations,
            },
            "timeline": self.timeline,
            "latency_histogram_us": s.latency.to_dict(),
        }

    def table(self) -> str:
        c, s = self.config, self.stats
        lat = s.latency.summary_ms(50, 90, 99)
        con = s.connect.summary_ms(50, 90, 99)
        mode = f"open loop at {c.rate:g} submits/s" if c.rate else "closed loop"
        procs = f"{c.procs} process{'es' if c.procs > 1 else ''}"
        lines = [
            f"tether loadtest: {c.scenario}, {c.users} users, {c.duration:g} s, {mode}, {procs}",
            "",
            f"{'':10}{'count':>9}{'per s':>10}{'p50 ms':>10}{'p90 ms':>10}"
            f"{'p99 ms':>10}{'max ms':>10}",
            f"{'submits':10}{s.ok:>9}{self.throughput:>10.1f}{lat['p50']:>10.2f}"
            f"{lat['p90']:>10.2f}{lat['p99']:>10.2f}{lat['max']:>10.2f}",
            f"{'connects':10}{s.connect.count:>9}{s.connect.count / self.elapsed:>10.1f}"
            f"{con['p50']:>10.2f}{con['p90']:>10.2f}{con['p99']:>10.2f}{con['max']:>10.2f}",
        ]
        if s.events:
            ev = s.event_latency.summary_ms(50, 90, 99)
            timed = (
                f"{ev['p50']:>10.2f}{ev['p90']:>10.2f}{ev['p99']:>10.2f}{ev['max']:>10.2f}"
                if s.event_latency.count
                else ""
            )
            lines.append(f"{'events':10}{s.events:>9}{s.events / self.elapsed:>10.1f}{timed}")
        lines.append("")
        if s.event_latency.count:
            lines.append(
                f"events: topic events received; latency from a say's submit to its event, "
                f"over {s.event_latency.count} timed"
            )
        if s.errors:
            detail = ", ".join(f"{code} {n}" for code, n in s.errors.most_common())
            lines.append(f"errors: {sum(s.errors.values())} ({detail})")
        else:
            lines.append("errors: none")
        cpu = ", ".join(f"{p:g}%" for p in self.cpu_percent)
        lines.append(f"generator CPU: {cpu} of a core per process")
        if self.saturated:
            lines.append(
                f"WARNING: a generator process used more than {CPU_SATURATED:.0%} of a core; "
                "the figures may measure the generator, not the server (try --procs)"
            )
        if c.check:
            if s.violation_count:
                lines.append(f"check FAILED: {s.violation_count} violation(s)")
                lines.extend(f"  - {v}" for v in s.violations)
                if s.violation_count > len(s.violations):
                    lines.append(f"  ... and {s.violation_count - len(s.violations)} more")
            else:
                lines.append(f"check passed: {s.checked} results checked, no violation")
        elif s.violation_count:
            lines.append(f"protocol violations: {s.violation_count}")
            lines.extend(f"  - {v}" for v in s.violations[:10])
        if s.ok == 0:
            lines.append("no submit succeeded")
        return "\n".join(lines)


def plot(result: Result, path: str) -> None:
    """Throughput and latency over time, as a PNG (needs matplotlib)."""
    importlib.import_module("matplotlib").use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")

    t = [p["t"] for p in result.timeline]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8, 6))
    top.plot(t, [p["rate"] for p in result.timeline])
    top.set_ylabel("submits/s")
    top.set_title(f"tether loadtest: {result.config.scenario}, {result.config.users} users")
    bottom.plot(t, [p["p50_ms"] for p in result.timeline], label="p50")
    bottom.plot(t, [p["p99_ms"] for p in result.timeline], label="p99")
    bottom.set_ylabel("latency (ms)")
    bottom.set_xlabel("seconds")
    bottom.legend()
    for axes in (top, bottom):
        axes.set_ylim(bottom=0)  # from zero: a wiggle should look like one
        axes.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- command line ------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be zero or more, not {text}")
    return value


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``loadtest`` to the ``tether`` command's subparsers."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "loadtest",
        help="drive many scripted sessions against a server; report latency and throughput",
        description=(
            "Run N simulated users against a tether server and report throughput, "
            "latency percentiles and errors."
        ),
    )
    parser.add_argument("url", help="server address: ws://HOST:PORT/ws or http://HOST:PORT")
    parser.add_argument("--users", type=_positive_int, default=10, help="sessions (default 10)")
    parser.add_argument(
        "--duration", type=_positive_float, default=10.0, help="seconds to run (default 10)"
    )
    parser.add_argument(
        "--scenario",
        default="chat",
        help=f"{' | '.join(SCENARIOS)} | FILE.py defining `async def user(client, index)`",
    )
    parser.add_argument(
        "--ramp", type=_non_negative_float, default=0.0, help="seconds to start all users over"
    )
    parser.add_argument(
        "--rate",
        type=_positive_float,
        default=None,
        help="open loop: submits per second in total (custom scenarios: calls of user())",
    )
    parser.add_argument(
        "--procs", type=_positive_int, default=1, help="generator processes (default 1)"
    )
    parser.add_argument(
        "--turns",
        type=_positive_int,
        default=DEFAULT_TURNS,
        help=f"chat, rooms: messages per conversation before reconnecting "
        f"(default {DEFAULT_TURNS})",
    )
    parser.add_argument(
        "--rooms",
        type=_positive_int,
        default=None,
        help=f"rooms: chat rooms the users are spread over "
        f"(default one per {USERS_PER_ROOM} users)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="verify every reply: ids match, histories hold exactly what each session sent; "
        "rooms: every message reaches every member, once and in order, presence is right; "
        "exit non-zero on any violation",
    )
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON to OUT")
    parser.add_argument(
        "--plot", metavar="OUT.png", help="plot throughput and latency (needs matplotlib)"
    )
    parser.add_argument(
        "--drain-timeout",
        type=_non_negative_float,
        default=DRAIN_TIMEOUT,
        help=f"seconds in-flight submits may take after the end; rooms --check: also how "
        f"long a user waits for its own messages to come back as events "
        f"(default {DRAIN_TIMEOUT:g})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    return parser


def websocket_url(url: str) -> str:
    """Accept ``http(s)://host:port`` as well as the WebSocket address itself."""
    for http, ws in (("http://", "ws://"), ("https://", "wss://")):
        if url.startswith(http):
            url = ws + url[len(http) :]
    _, sep, rest = url.partition("://")
    if sep and "/" not in rest:
        url += "/ws"
    elif sep and rest.endswith("/") and rest.count("/") == 1:
        url += "ws"
    return url


def run_cli(args: argparse.Namespace) -> int:
    """``tether loadtest``: run, print the summary, write --json/--plot; the exit status."""
    if args.plot:
        try:
            importlib.import_module("matplotlib")
        except ImportError:
            print(
                "tether loadtest: --plot needs matplotlib, which is not installed "
                "(pip install matplotlib), or leave out --plot",
                file=sys.stderr,
            )
            return 2
    if args.scenario not in SCENARIOS:
        try:
            load_scenario_file(args.scenario)
        except ScenarioError as exc:
            print(f"tether loadtest: {exc}", file=sys.stderr)
            return 2
    url = websocket_url(args.url)
    if not url.startswith(("ws://", "wss://")):
        print(f"tether loadtest: {args.url!r} is not a ws:// or http:// address", file=sys.stderr)
        return 2
    config = Config(
        url=url,
        users=args.users,
        duration=args.duration,
        scenario=args.scenario,
        ramp=args.ramp,
        rate=args.rate,
        procs=min(args.procs, args.users),
        check=args.check,
        turns=args.turns,
        rooms=args.rooms,
        drain_timeout=args.drain_timeout,
        progress=not args.quiet,
    )
    _raise_open_files_limit()
    result = execute(config)
    print(result.table())
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2))
    if args.plot:
        plot(result, args.plot)
    return 1 if result.failed else 0


def _raise_open_files_limit() -> None:
    """Each session is a socket: allow as many as the hard limit does."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    """``python -m tether.loadtest ...``: the same as ``tether loadtest ...``."""
    parser = argparse.ArgumentParser(prog="tether")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run_cli(parser.parse_args(["loadtest", *(argv if argv is not None else sys.argv[1:])]))


if __name__ == "__main__":
    sys.exit(main())
