"""Latency histograms: log-bucketed like HdrHistogram, bounded in memory, exactly mergeable.

Values are integer microseconds (``micros``). A run of any length uses a few
thousand counters at most, and histograms from several generator processes
(``--procs``) merge exactly.
"""

from __future__ import annotations

import math
from typing import Any, Final

__all__ = ["SUB_BUCKET_BITS", "Histogram", "micros"]

# Sub-buckets per power of two: values are kept within 1/128 (< 0.8%) of their true value.
SUB_BUCKET_BITS: Final = 7


def micros(seconds: float) -> int:
    """Seconds as the integer microseconds histograms count."""
    return int(seconds * 1_000_000)


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
        if value < 0:
            value = 0
        shift = value.bit_length() - SUB_BUCKET_BITS - 1  # bucket(), inlined: the hot path
        index = value if shift <= 0 else (shift << SUB_BUCKET_BITS) + (value >> shift)
        counts = self.counts
        counts[index] = counts.get(index, 0) + 1
        if self.count == 0:
            self.min = self.max = value
        elif value < self.min:
            self.min = value
        elif value > self.max:
            self.max = value
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
