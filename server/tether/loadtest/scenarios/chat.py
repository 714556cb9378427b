"""``--scenario chat``: conversations with the demo's chatbot, each on a new session."""

from __future__ import annotations

import random
from collections.abc import Iterator
from functools import partial
from typing import Any

from ..scenario import Scenario, Step, Wait

__all__ = ["ChatScenario"]


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
    uses = ("chat",)

    def conversation(self, user: int, number: int, rng: random.Random) -> Iterator[Step | Wait]:
        prefix = f"user {user} conversation {number} turn "
        if not self.options.check:  # the hot path: no history to keep for a check
            for turn in range(self.options.turns):
                yield Step("chat", [prefix + str(turn)])
            return
        sent: list[str] = []
        for turn in range(self.options.turns):
            sent.append(prefix + str(turn))
            yield Step("chat", [sent[-1]], partial(_check_history, tuple(sent)))
