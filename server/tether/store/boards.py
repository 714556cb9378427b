"""``Board``: one in-memory leaderboard, every operation O(log n).

The order is Redis' ZREVRANGE: score descending, equal scores by member
descending (Python compares ``str`` by code point, which is UTF-8 byte order,
the order Redis compares members in). Rank 0 is the best member.

A ``SortedList`` of ``(score, member)`` holds the ascending order (the worst
member first), and a dict holds each member's score; the best member is at
the end of the list, so a rank is ``len - 1 - index``. ``keep`` drops from
the front. Scores are checked by the caller (``checks``): finite doubles.
"""

from __future__ import annotations

import math
from itertools import islice

from sortedcontainers import SortedList  # type: ignore[import-untyped, unused-ignore]

__all__ = ["Board"]


class Board:
    """Members and their scores, kept in leaderboard order."""

    __slots__ = ("_order", "_scores")

    def __init__(self) -> None:
        self._scores: dict[str, float] = {}
        self._order = SortedList()

    def __len__(self) -> int:
        return len(self._scores)

    def set(self, member: str, score: float) -> None:
        """Give ``member`` the score ``score`` (adding it when absent)."""
        old = self._scores.get(member)
        if old is not None:
            if old == score and math.copysign(1.0, old) == math.copysign(1.0, score):
                return
            self._order.remove((old, member))
        self._scores[member] = score
        self._order.add((score, member))

    def incr(self, member: str, by: float) -> float:
        """Add ``by`` to ``member``'s score (0 when absent); return the new score."""
        value = self._scores.get(member, 0.0) + by
        self.set(member, value)
        return value

    def remove(self, member: str) -> bool:
        """Remove ``member``; True if it was there."""
        old = self._scores.pop(member, None)
        if old is None:
            return False
        self._order.remove((old, member))
        return True

    def keep(self, n: int) -> None:
        """Keep only the best ``n`` members (``n`` >= 0)."""
        drop = len(self._order) - n
        if drop <= 0:
            return
        for _, member in islice(self._order, drop):
            del self._scores[member]
        del self._order[:drop]

    def score(self, member: str) -> float | None:
        return self._scores.get(member)

    def rank(self, member: str) -> int | None:
        """0-based rank of ``member`` (0 is the best), or None."""
        score = self._scores.get(member)
        if score is None:
            return None
        index: int = self._order.index((score, member))
        return len(self._order) - 1 - index

    def top(self, n: int) -> list[tuple[str, float]]:
        """The best ``n`` ``(member, score)`` pairs, best first."""
        if n <= 0:
            return []
        best = self._order[max(len(self._order) - n, 0) :]
        return [(member, score) for score, member in reversed(best)]
