"""The scenario API of the built-in driver: a ``Scenario`` yields ``Step`` s and ``Wait`` s.

A scenario is one kind of simulated user. Each of its conversations runs on a
fresh connection; a ``Step`` is one submit (and how to judge its result), a
``Wait`` a pause until something the scenario watches for has happened.
``Options`` is what the command line configures scenarios with. The built-in
scenarios are in ``scenarios/``; a custom scenario file (``custom.py``) uses
the regular client instead.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from ..protocol import Error, Result, ServerMessage
from .histogram import Histogram

__all__ = ["DEFAULT_TURNS", "Check", "Options", "Scenario", "ScenarioError", "Step", "Wait"]

DEFAULT_TURNS: Final = 10

Check = Callable[[list[Any]], "str | None"]
"""Judges a result's data: ``None`` when it is right, else what is wrong."""


class ScenarioError(Exception):
    """The scenario given cannot be used."""


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 1-2 µs per submit
class Step:
    """One submit of a scenario: call ``fn`` with ``data``; ``check`` judges the result's data.

    ``check`` returns ``None`` when the result is right, else what is wrong; it
    runs only with ``--check``. ``sent`` and ``done`` always run: ``sent(now)``
    just before the submit leaves (``now``: ``time.perf_counter()``; not the
    open loop's due time, which the loop's timers may wake up before),
    ``done(reply)`` as soon as its ``Result`` or ``Error`` is seen (``None``
    when none will come).
    """

    fn: str
    data: list[Any]
    check: Check | None = None
    sent: Callable[[float], None] | None = None
    done: Callable[[Result | Error | None], None] | None = None


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
    ends, and then starts the next one. Messages that answer no submit (topic
    events, ``Subscribed``, ``Queued``...) go to ``on_frame``, which may return
    a violation. ``event_latency`` holds the delivery latencies (µs) of topic
    events the scenario can time; the driver adds them to the results.
    """

    name: ClassVar[str]

    def __init__(self, options: Options) -> None:
        self.options = options
        self.event_latency = Histogram()

    def conversation(self, user: int, number: int, rng: random.Random) -> Iterator[Step | Wait]:
        raise NotImplementedError

    def on_frame(self, user: int, message: ServerMessage) -> str | None:
        return None
