"""``--scenario auto`` (the default): the app's own functions, as its welcome lists them.

Every conversation (a new session, ``--turns`` submits) calls the functions
the server's welcome lists, picked at random by weight (``--mix fn=weight,...``;
by default all alike), with valid inputs generated for each public component.
A session keeps to its own state: the server keeps it, this scenario never
mixes two sessions' submits. A ``rate_limited`` answer makes the session wait
the ``retry_after`` it carries before each of its next submits (see
``AutoScenario._done``): it keeps to the server's rate limit rather than sending
on into a flood close (1008).

What ``--check`` verifies of each answer:

- a result has one value per declared output, each of its component's type
  (text a string, number a number, checkbox a boolean, chatbot a list of
  ``[user, bot]`` pairs; json anything);
- a chatbot output holds no message another session of this run sent (a
  chatbot is taken to be its session's own conversation);
- an error is one the protocol documents for a valid submit (``fn_error``,
  ``timeout``, ``queue_full``, ``rate_limited``...); ``bad_arguments`` means the
  generated inputs were refused, which is a violation here.

That each answer reaches its own session (its id was sent on that connection,
and answered once) the connection checks for every scenario.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Iterator
from functools import partial
from typing import Any, Final

from ...protocol import Code, Error, Partial, Result, ServerMessage
from ..scenario import Function, Options, Scenario, ScenarioError, Step, Wait

__all__ = [
    "ACCEPTED_ERRORS",
    "COMPONENTS",
    "AutoScenario",
    "mix_problem",
    "parse_mix",
]

COMPONENTS: Final = ("text", "number", "checkbox", "json", "chatbot")

# Errors a valid submit may get, by the protocol: the function's own failure, the
# server's limits and its state. Any other code answering a generated submit is wrong.
ACCEPTED_ERRORS: Final = frozenset(
    {
        Code.FN_ERROR,
        Code.TIMEOUT,
        Code.QUEUE_FULL,
        Code.RATE_LIMITED,
        Code.TOO_MANY_PENDING,
        Code.STORE_UNAVAILABLE,
        Code.STATE_TOO_LARGE,
        Code.SHUTTING_DOWN,
    }
)

# The longest pause a rate_limited answer makes a session take before each submit.
MAX_PAUSE: Final = 5.0
# A rate-limited session's pause shrinks by a tenth after this many results in a row,
# and goes once it is under MIN_PACE.
PACE_RELAX: Final = 20
MIN_PACE: Final = 0.001

_WORDS: Final = ("hello", "load", "test", "what", "is", "the", "weather", "ok", "again")


def parse_mix(text: str) -> tuple[tuple[str, float], ...]:
    """``--mix fn=weight,...``; ``ValueError`` with what is wrong."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, sep, weight = part.strip().partition("=")
        name = name.strip()
        if not name:
            raise ValueError(f"--mix {text!r}: expected fn=weight,..., got {part!r}")
        try:
            value = float(weight) if sep else 1.0
        except ValueError:
            raise ValueError(f"--mix: the weight of {name} is not a number: {weight!r}") from None
        if not value >= 0 or value == float("inf"):
            raise ValueError(f"--mix: the weight of {name} must be zero or more, not {weight}")
        mix[name] = value
    if not any(mix.values()):
        raise ValueError(f"--mix {text!r}: at least one weight must be above zero")
    return tuple(mix.items())


def mix_problem(mix: tuple[tuple[str, float], ...], functions: tuple[Function, ...]) -> str | None:
    """What is wrong with ``mix`` for a server with ``functions``, or None."""
    names = [f.name for f in functions]
    unknown = [name for name, _ in mix if name not in names]
    if unknown:
        return (
            f"--mix names {', '.join(unknown)}, which the server does not have "
            f"(it has: {', '.join(names) or 'no functions'})"
        )
    return None


class _Marks:
    """The texts one conversation sends carry ``lt-<run> u<user>.<number>``."""

    def __init__(self, run_id: str) -> None:
        self.pattern = re.compile(rf"lt-{re.escape(run_id)} u(\d+\.\d+) ")


def _value(component: str, rng: random.Random, mark: str, turn: int) -> Any:
    if component == "text":
        # Short (the demo takes names of at most 40 characters), and marked.
        return f"{mark}t{turn} {rng.choice(_WORDS)}"
    if component == "number":
        return rng.randint(-1000, 1000) if rng.random() < 0.8 else round(rng.uniform(-1e3, 1e3), 3)
    if component == "checkbox":
        return rng.random() < 0.5
    if component == "json":
        return rng.choice(
            (
                {"turn": turn, "text": f"{mark}t{turn} ", "flag": rng.random() < 0.5},
                [rng.randint(0, 100) for _ in range(rng.randint(0, 5))],
                rng.randint(0, 1000),
                f"{mark}t{turn} ",
                None,
            )
        )
    if component == "chatbot":
        return [[f"{mark}t{turn} hi ", "hello"], [f"{mark}t{turn} again ", None]]
    raise ScenarioError(f"no input can be generated for component {component!r}")


def _shape(component: str, value: Any) -> str | None:
    if component == "text" and not isinstance(value, str):
        return f"a text output is {type(value).__name__}, not a string"
    if component == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"a number output is {type(value).__name__}, not a number"
    if component == "checkbox" and not isinstance(value, bool):
        return f"a checkbox output is {type(value).__name__}, not true or false"
    if component == "chatbot":
        if not isinstance(value, list):
            return f"a chatbot output is {type(value).__name__}, not a list of pairs"
        for pair in value:
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or any(p is not None and not isinstance(p, str) for p in pair)
            ):
                return f"a chatbot output holds {pair!r:.60}, not a [user, bot] pair"
    return None


class AutoScenario(Scenario):
    """The app's own functions, weighted by ``--mix``; see the module's docstring."""

    name = "auto"

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self.functions: tuple[Function, ...] = ()
        self.weights: list[float] = []
        self.marks = _Marks(options.run_id)
        # user -> seconds between its submits, since the server said rate_limited
        self.pace: dict[int, float] = {}
        # user -> the functions of its submits in flight (and the conversation's mark)
        self.in_flight: dict[int, list[tuple[Function, str]]] = {}
        self.paced: dict[int, int] = {}  # user -> results since its pace last changed

    def bind(self, functions: tuple[Function, ...]) -> str | None:
        mix = dict(self.options.mix)
        problem = mix_problem(self.options.mix, functions)
        if problem is not None:
            return problem
        for f in functions:
            bad = [c for c in f.inputs if c not in COMPONENTS]
            if bad and mix.get(f.name, 0.0):  # named in --mix: say so (else: left out)
                return f"{f.name} takes a {bad[0]!r} input, which the load tester cannot generate"
        chosen = [
            (f, mix.get(f.name, 0.0) if mix else 1.0)
            for f in functions
            if not any(c not in COMPONENTS for c in f.inputs)
        ]
        chosen = [(f, w) for f, w in chosen if w > 0]
        if not chosen:
            return "the server has no function to call" + (
                "" if functions else " (its welcome lists none)"
            )
        self.functions = tuple(f for f, _ in chosen)
        self.weights = [w for _, w in chosen]
        return None

    def conversation(self, user: int, number: int, rng: random.Random) -> Iterator[Step | Wait]:
        mark = f"lt-{self.options.run_id} u{user}.{number} "
        own = f"{user}.{number}"
        for turn in range(self.options.turns):
            pause = self.pace.get(user, 0.0)
            if pause > 0:
                ready = asyncio.Event()
                asyncio.get_running_loop().call_later(pause, ready.set)
                yield Wait(ready, partial(str, f"a pause of {pause:g} s for rate_limited"))
            fn = rng.choices(self.functions, self.weights)[0]
            data = [_value(c, rng, mark, turn) for c in fn.inputs]
            yield Step(
                fn.name,
                data,
                partial(self._check, fn, own),
                sent=partial(self._sent, user, fn, own),
                done=partial(self._done, user, fn.name),
            )

    def _sent(self, user: int, fn: Function, own: str, now: float) -> None:
        self.in_flight.setdefault(user, []).append((fn, own))

    def on_frame(self, user: int, message: ServerMessage) -> str | None:
        """With ``--check``: a partial of the one submit in flight has its function's
        shape, as a result must (with several in flight, open loop, it is not judged)."""
        if type(message) is not Partial or not self.options.check:
            return None
        flying = self.in_flight.get(user)
        if not flying or len(flying) != 1:
            return None
        fn, own = flying[0]
        problem = self._check(fn, own, message.data)
        return None if problem is None else f"{fn.name}: a partial: {problem}"

    def _done(self, user: int, fn: str, reply: Result | Error | None) -> None:
        """Count results; keep to the server's rate limit.

        A ``rate_limited`` answer makes the session wait its ``retry_after`` before
        every later submit (longer each time it comes again), so that it sends at
        the rate the server allows instead of being closed for flooding; after
        ``PACE_RELAX`` results in a row the pause shrinks by a tenth, until it is gone.
        """
        flying = self.in_flight.get(user)
        if flying:
            for k, (f, _) in enumerate(flying):
                if f.name == fn:
                    del flying[k]
                    break
            if not flying:
                del self.in_flight[user]
        if type(reply) is Result:
            self.calls[fn] += 1
            if user in self.pace:
                self.paced[user] = n = self.paced.get(user, 0) + 1
                if n >= PACE_RELAX:
                    self.paced[user] = 0
                    self.pace[user] *= 0.9
                    if self.pace[user] < MIN_PACE:
                        del self.pace[user]
        elif type(reply) is Error and reply.code == Code.RATE_LIMITED:
            retry = reply.retry_after if reply.retry_after is not None else 0.1
            pace = max(retry, self.pace.get(user, 0.0) * 1.25, MIN_PACE)
            self.pace[user] = min(MAX_PAUSE, pace)
            self.paced[user] = 0

    def _check(self, fn: Function, own: str, data: list[Any]) -> str | None:
        if len(data) != len(fn.outputs):
            return f"{len(data)} output value(s), but {fn.name} declares {len(fn.outputs)}"
        for component, value in zip(fn.outputs, data, strict=True):
            problem = _shape(component, value)
            if problem is not None:
                return problem
            if component == "chatbot":
                for pair in value:
                    for text in pair:
                        found = self.marks.pattern.search(text) if text else None
                        if found is not None and found.group(1) != own:
                            return (
                                f"a chatbot output holds {text!r:.60}, sent by another "
                                f"session (u{found.group(1)}), not this one (u{own})"
                            )
        return None

    def judge_error(self, step: Step, reply: Error) -> str | None:
        if reply.code in ACCEPTED_ERRORS:
            return None
        return f"{step.fn}: a generated submit got {reply.code}: {reply.message:.120}"
