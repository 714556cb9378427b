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
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from ..protocol import Error, Result, ServerMessage
from .histogram import Histogram

__all__ = [
    "DEFAULT_TURNS",
    "Check",
    "Function",
    "Options",
    "Scenario",
    "ScenarioError",
    "Step",
    "Wait",
    "functions_of",
    "missing_function",
]

DEFAULT_TURNS: Final = 10

Check = Callable[[list[Any]], "str | None"]
"""Judges a result's data: ``None`` when it is right, else what is wrong."""


def missing_function(fn: str, names: list[str], hint: bool = True) -> str:
    """The one line that stops a run calling a function the server does not have
    (``hint``: suggest the scenario that calls whatever the server has)."""
    have = ", ".join(names) if names else "no functions"
    line = f"the server has no function {fn!r} (it has: {have})"
    return line + ("; --scenario auto calls the app's own" if hint else "")


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
class Function:
    """One function of the welcome: its name and public components."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def functions_of(listed: list[dict[str, Any]]) -> tuple[Function, ...]:
    """The welcome's ``functions``, as ``Function`` s."""
    return tuple(
        Function(
            str(f.get("name")),
            tuple(str(c) for c in f.get("inputs", ())),
            tuple(str(c) for c in f.get("outputs", ())),
        )
        for f in listed
        if isinstance(f, dict) and isinstance(f.get("name"), str)
    )


@dataclass(frozen=True, slots=True)
class Options:
    """What a scenario may be configured with from the command line."""

    turns: int = DEFAULT_TURNS
    rooms: int = 1
    check: bool = False
    # Tells this run's rooms (and the messages in them) from any other run's.
    run_id: str = "run"
    # auto: (function, weight) pairs; empty: every function alike.
    mix: tuple[tuple[str, float], ...] = ()


class Scenario:
    """One kind of simulated user, for the built-in driver.

    ``conversation`` yields the steps of one conversation (``Step`` s, and
    ``Wait`` s); the driver runs each conversation on a fresh connection (a new
    session), closes the generator when the conversation ends, however it
    ends, and then starts the next one. Messages that answer no submit (topic
    events, ``Subscribed``, ``Queued``...) go to ``on_frame``, which may return
    a violation. ``event_latency`` holds the delivery latencies (µs) of topic
    events the scenario can time; the driver adds them to the results, and
    ``calls`` the results it counted per function (the auto scenario's).

    Before any user starts, the driver gives ``bind`` the functions the
    server's welcome lists; a scenario that cannot run against them says why
    (by default: when the server lacks one of ``uses``), and the run stops.
    ``judge_error`` judges, with ``--check``, an error answering a step.
    """

    name: ClassVar[str]
    uses: ClassVar[tuple[str, ...]] = ()
    """The functions the scenario calls (the auto scenario: whatever the server has)."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.event_latency = Histogram()
        self.calls: Counter[str] = Counter()

    def bind(self, functions: tuple[Function, ...]) -> str | None:
        """Ready the scenario for a server with ``functions``; else what stops it."""
        names = [f.name for f in functions]
        for fn in self.uses:
            if fn not in names:
                return missing_function(fn, names)
        return None

    def judge_error(self, step: Step, reply: Error) -> str | None:
        """With ``--check``: ``None`` when ``reply`` is a right answer to ``step``."""
        return None

    def conversation(self, user: int, number: int, rng: random.Random) -> Iterator[Step | Wait]:
        raise NotImplementedError

    def on_frame(self, user: int, message: ServerMessage) -> str | None:
        return None
