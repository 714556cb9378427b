"""What the rollback snapshot costs per call: tether's copy_value vs copy.deepcopy.

    python bench/snapshot_cost.py

Prints microseconds per copy (median of 7 rounds) for chat histories of
1, 100 and 1000 turns, and the ratio to copy.deepcopy in the same run.
"""

from __future__ import annotations

import copy
import statistics
import timeit

from tether.state import copy_value


def history(turns: int) -> list[list[str]]:
    return [[f"user message number {i}", f"bot reply number {i} to that"] for i in range(turns)]


def per_call_us(fn, value, number: int) -> float:
    rounds = timeit.repeat(lambda: fn(value), number=number, repeat=7)
    return statistics.median(rounds) / number * 1e6


def main() -> None:
    print(f"{'turns':>6} {'copy_value us':>14} {'deepcopy us':>12} {'ratio':>6}")
    for turns in (1, 100, 1000):
        value = history(turns)
        number = max(10, 20000 // turns)
        ours = per_call_us(copy_value, value, number)
        base = per_call_us(copy.deepcopy, value, max(5, number // 5))
        print(f"{turns:>6} {ours:>14.2f} {base:>12.2f} {ours / base:>6.2f}")


if __name__ == "__main__":
    main()
