"""``--scenario score``: random scores for the demo's shared leaderboard, on one long session."""

from __future__ import annotations

import random
from collections.abc import Iterator
from functools import partial
from typing import Any, Final

from ..scenario import Scenario, Step, Wait

__all__ = ["ScoreScenario"]

MAX_SCORE: Final = 1_000_000


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
    uses = ("track_score",)

    def conversation(self, user: int, number: int, rng: random.Random) -> Iterator[Step | Wait]:
        while True:
            score = rng.randint(0, MAX_SCORE)
            yield Step("track_score", [score], partial(_check_top, score))
