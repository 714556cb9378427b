"""What making a call undoable costs per call: the journal vs copy_value vs copy.deepcopy.

    python bench/snapshot_cost.py

For chat histories of 1, 100 and 1000 turns, microseconds per call (median of 7
rounds) of: a journaled turn (``Journal.begin``, one ``append`` of a pair, then
``commit``: what a chat submit pays today), ``copy_value`` (the pre-call copy
that journaled slots no longer take; still used for values that cannot be
journaled) and ``copy.deepcopy``.
"""

from __future__ import annotations

import copy
import statistics
import timeit
from collections.abc import Callable
from typing import Any

from tether.app.journal import Journal, adopt
from tether.app.state import copy_value


def history(turns: int) -> list[list[str]]:
    return [[f"user message number {i}", f"bot reply number {i} to that"] for i in range(turns)]


def per_call_us(fn: Callable[[], Any], number: int) -> float:
    rounds = timeit.repeat(fn, number=number, repeat=7)
    return statistics.median(rounds) / number * 1e6


def journaled_turn(turns: int) -> Callable[[], Any]:
    journal = Journal()
    value = adopt(history(turns), journal)

    def turn() -> None:
        journal.begin()
        value.append(["a new message", "and its reply"])
        journal.commit()
        list.pop(value)  # (keep the size constant between rounds, unjournaled)

    return turn


def main() -> None:
    print(f"{'turns':>6} {'journal us':>11} {'copy_value us':>14} {'deepcopy us':>12}")
    for turns in (1, 100, 1000):
        value = history(turns)
        number = max(10, 20000 // turns)
        ours = per_call_us(journaled_turn(turns), 2000)
        copied = per_call_us(lambda v=value: copy_value(v), number)
        base = per_call_us(lambda v=value: copy.deepcopy(v), max(5, number // 5))
        print(f"{turns:>6} {ours:>11.2f} {copied:>14.2f} {base:>12.2f}")


if __name__ == "__main__":
    main()
