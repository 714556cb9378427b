"""Bounds and expiry of the memory store: a cap on its keys, and TTLs that free memory.

``KeySpace`` watches the memory backend's key spaces (values, lists,
leaderboards: one dictionary each, named by kind) without owning them:

- a key's deadline (``expire``) is kept in a dictionary and a heap; an expired
  key is dropped when it is next touched (``live``, before any access), and
  the heap hands out the due keys oldest first, so a sweep costs only the keys
  it frees, never a scan of the store;
- every write sweeps a few due keys (``SWEEP_PER_WRITE``), so expired keys
  free their memory while the store is in use; a write that would create a key
  past ``max_keys`` sweeps everything due first, then is refused with a
  ``StoreError`` (writes to existing keys always go through).

Deadlines follow Redis: a TTL belongs to one key of one kind; replacing a
value (``set``, ``update``) clears it, changing one in place (``incr``,
``list_append``, ``lb_*``) keeps it, ``delete`` removes it with the key.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from ..errors import StoreError

__all__ = [
    "DEFAULT_MAX_KEYS",
    "MAX_TTL",
    "RETAINED_TTL",
    "SWEEP_PER_WRITE",
    "KeySpace",
    "check_ttl",
    "ttl_ms",
]

DEFAULT_MAX_KEYS: Final = 1_000_000
"""Keys (values + lists + leaderboards) the memory store holds at most by default."""

MAX_TTL: Final = 100 * 365 * 86400.0
"""The longest TTL (100 years, in seconds): Redis refuses deadlines far beyond it."""

RETAINED_TTL: Final = 24 * 3600.0
"""Seconds a topic's current value is kept in Redis after its last change (the
setting ``retained_ttl``); on one process the hub bounds them by count and bytes."""

SWEEP_PER_WRITE: Final = 16
"""Expired keys a write frees at most on its way (more when it meets the cap)."""


def check_ttl(what: str, ttl: Any, *, optional: bool = False) -> float | None:
    """``ttl`` as seconds (a positive, finite number), or None when optional and absent."""
    if ttl is None and optional:
        return None
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, (int, float))
        or not math.isfinite(ttl)
        or not 0 < ttl <= MAX_TTL
    ):
        raise StoreError(
            f"{what} must be a positive, finite number of seconds (at most {MAX_TTL:.0f}), "
            f"not {ttl!r}"
        )
    return float(ttl)


def ttl_ms(ttl: float) -> int:
    """A TTL in whole milliseconds for Redis (at least 1, rounded up)."""
    return max(1, math.ceil(ttl * 1000))


Slot = tuple[str, str]  # (kind, key)


class KeySpace:
    """Deadlines and the key cap over ``spaces`` (kind -> that kind's dictionary)."""

    def __init__(
        self,
        spaces: Mapping[str, dict[str, Any]],
        max_keys: int | None = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spaces = spaces
        self.max_keys = max_keys
        self.clock = clock
        self._deadlines: dict[Slot, float] = {}
        self._heap: list[tuple[float, str, str]] = []

    def __len__(self) -> int:
        """Keys held now (expired ones not yet swept included: ``sweep`` first)."""
        return sum(len(space) for space in self.spaces.values())

    @property
    def expiring(self) -> int:
        """Keys that have a deadline."""
        return len(self._deadlines)

    def live(self, kind: str, key: str) -> None:
        """Drop ``key`` of ``kind`` if it has expired (call before touching it)."""
        deadline = self._deadlines.get((kind, key))
        if deadline is not None and deadline <= self.clock():
            self._drop(kind, key)

    def admit(self, kind: str, key: str) -> None:
        """Before a write to ``key`` of ``kind``: refuse it if it would create a key
        past ``max_keys``. Frees a few expired keys on the way."""
        self.live(kind, key)
        self.sweep(SWEEP_PER_WRITE)
        if self.max_keys is None or key in self.spaces[kind]:
            return
        if len(self) >= self.max_keys:
            self.sweep()
            if len(self) >= self.max_keys:
                raise StoreError(
                    f"the memory store is full: it holds {len(self)} keys, its limit "
                    f"(store_max_keys); a new key {key!r} is refused. Delete keys or give "
                    "them a ttl, or raise the limit"
                )

    def expire(self, kind: str, key: str, ttl: float | None) -> None:
        """Give ``key`` of ``kind`` a deadline ``ttl`` seconds from now (None: none)."""
        slot = (kind, key)
        if ttl is None:
            self._deadlines.pop(slot, None)
            return
        deadline = self.clock() + ttl
        self._deadlines[slot] = deadline
        heapq.heappush(self._heap, (deadline, kind, key))
        if len(self._heap) > 2 * len(self._deadlines) + 64:
            # Entries of deadlines since replaced or cleared: rebuild without them.
            self._heap = [(d, k, n) for (k, n), d in self._deadlines.items()]
            heapq.heapify(self._heap)

    def forget(self, kind: str, key: str) -> None:
        """``key`` of ``kind`` was removed: its deadline goes with it."""
        self._deadlines.pop((kind, key), None)

    def sweep(self, limit: int | None = None) -> int:
        """Drop expired keys, oldest deadline first (at most ``limit``); return how many."""
        now = self.clock()
        freed = 0
        heap = self._heap
        while heap and heap[0][0] <= now and (limit is None or freed < limit):
            deadline, kind, key = heapq.heappop(heap)
            if self._deadlines.get((kind, key)) == deadline:
                self._drop(kind, key)
                freed += 1
        return freed

    def _drop(self, kind: str, key: str) -> None:
        self._deadlines.pop((kind, key), None)
        self.spaces[kind].pop(key, None)
