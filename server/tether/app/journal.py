"""Journaled state: lists and dicts that log how to undo their own mutations.

A session-state slot whose value is a tree of lists and dicts with JSON leaves is
kept as ``TrackedList`` / ``TrackedDict`` objects (subclasses of list and dict:
``isinstance`` holds, orjson encodes them as arrays and objects). Every mutation
method of those classes, before it changes anything, appends to the slot's
``Journal`` the step that undoes it: so rolling back a failed call costs what the
call changed, not what the state holds, and nothing is copied before a call.

What a journal keeps, under one lock (so that a sync function that timed out and
still runs in its thread cannot mutate between an undo and the copy the session
gets instead, see ``Journal.abandon``):

- ``undo``: the undo steps of the call in progress (None between calls).
- ``fresh``: plain lists and dicts put into tracked containers. They are made
  tracked (``adopt``) when the call commits, and measured then; until then their
  own mutations are not seen (they were not in the state before the call, so a
  rollback drops them anyway).
- ``grown`` / ``shrunk``: the JSON bytes that the call's mutations added and
  removed, for the state budget (``execution.py``) without a re-encode.
- ``events``: the last mutations (a clock, the container, the lowest index they
  touched), so that output deltas (protocol/deltas.py) find what changed in a
  chat history since they last sent it without comparing every item
  (``TrackedList.delta_since``). ``_up`` is each container's parent (``_MANY``
  once it is in two places), to place a nested change in the history.

Not journaled: mutations that bypass the list and dict methods (C code using the
concrete list API on the state's list, e.g. ``heapq.heappush``; ``list.append(h,
x)`` called unbound). A slot whose functions do that should use
``State(snapshot="copy")``.
"""

from __future__ import annotations

import threading
from typing import Any, Final

from .tracked import (
    _MANY,
    _SCALARS,
    TrackedDict,
    TrackedList,
    Untrackable,
    _locate,
    _size,
    _tick,
    check_tuple,
    is_tracked,
)

__all__ = [
    "Journal", "TrackedDict", "TrackedList", "Untrackable", "adopt", "detached", "dissolve",
    "is_tracked",
]  # fmt: skip

_EVENTS: Final = 32  # mutations kept for output deltas (beyond: a delta compares items)


class Journal:
    """The undo log, fresh containers, size changes and recent mutations of one slot."""

    __slots__ = (
        "broken", "events", "exact", "fresh", "fresh_bytes", "gross", "grown", "horizon",
        "lock", "mark", "shrunk", "undo",
    )  # fmt: skip

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.undo: list[tuple[Any, ...]] | None = None
        self.fresh: list[tuple[Any, Any, Any]] = []
        # What ``pending`` measured of ``fresh`` (its length then, the bytes), so that the
        # ``commit`` right after it does not encode the same containers again.
        self.fresh_bytes: tuple[int, int] | None = None
        self.grown = 0  # JSON bytes put in / taken out since the last commit
        self.shrunk = 0
        self.mark = (0, 0)  # (grown, shrunk) when the call began
        self.exact = 0  # the slot's size when last measured by a full encode
        self.gross = 0  # bytes grown since then (execution.py re-measures past a share)
        self.events: list[tuple[int, Any, int]] = []
        self.horizon = 0  # events at or before this clock were dropped
        self.broken = False  # something untrackable was put in: copy this slot instead

    def note(self, container: Any, index: int) -> None:
        events = self.events
        events.append((_tick(), container, index))
        if len(events) > _EVENTS:
            self.horizon = events[_EVENTS // 2 - 1][0]
            del events[: _EVENTS // 2]

    def begin(self) -> bool:
        """A call starts: log its undo steps from now on. False if the slot cannot be
        journaled any more (then nothing is logged)."""
        with self.lock:
            if self.fresh:  # put in between calls (a hook): measured and tracked now
                self.grown += self.measure_fresh()
                self.settle()
            if self.broken:
                return False
            self.undo = []
            self.mark = (self.grown, self.shrunk)
            self.fresh_bytes = None
            return True

    def rollback(self) -> None:
        """Undo the call's mutations, newest first; stop logging."""
        with self.lock:
            undo = self.undo
            self.undo = None
            self.fresh.clear()
            self.fresh_bytes = None
            self.grown, self.shrunk = self.mark
            if not undo:
                return
            for step in reversed(undo):
                step[0](*step[1:])
            for step in undo:
                self.note(step[1], 0)  # what changed back: deltas start over there

    def abandon(self, value: Any) -> Any:
        """Roll back, then a fresh copy of ``value`` under a new journal: the call may
        still run in its thread, on the objects it has (this journal stops logging)."""
        with self.lock:
            self.rollback()
            self.broken = True  # the orphaned call's later mutations are nobody's
            copy = Journal()
            copy.exact = self.exact
            return adopt(value, copy, copy=True)

    def measure_fresh(self) -> int:
        """The JSON bytes of the fresh containers still in place (before ``settle``)."""
        total = 0
        for parent, key, obj in self.fresh:
            if _locate(parent, key, obj) is not None:
                try:
                    total += _size(obj)
                except Untrackable:
                    self.broken = True
        return total

    def settle(self) -> None:
        """Make every fresh container tracked, in place (they stay equal)."""
        fresh, self.fresh = self.fresh, []
        memo: dict[int, Any] = {}
        for parent, key, obj in fresh:
            where = _locate(parent, key, obj)
            if where is None:
                continue
            try:
                tracked = _convert(obj, self, parent, memo)
            except Untrackable:
                self.broken = True
                continue
            if type(parent) is TrackedList:
                list.__setitem__(parent, where, tracked)
            else:
                dict.__setitem__(parent, where, tracked)

    def commit(self) -> tuple[int, int]:
        """The call succeeded: keep its mutations; the bytes they grew and shrank."""
        with self.lock:
            self.undo = None
            measured, self.fresh_bytes = self.fresh_bytes, None
            if measured is not None and measured[0] == len(self.fresh):
                grown = self.grown + measured[1]  # nothing was put in since ``pending``
            else:
                grown = self.grown + self.measure_fresh()
            shrunk = self.shrunk
            self.grown = self.shrunk = 0
            self.settle()
            return grown, shrunk

    def pending(self) -> tuple[int, int]:
        """What ``commit`` would return, without committing."""
        with self.lock:
            fresh = self.measure_fresh()
            self.fresh_bytes = (len(self.fresh), fresh)
            return self.grown + fresh, self.shrunk


def adopt(value: Any, journal: Journal, *, copy: bool = False) -> Any:
    """``value`` as tracked containers of ``journal`` (itself when it already is, unless
    ``copy``); raises ``Untrackable`` for anything but JSON lists, dicts and scalars
    (and tuples of those), a cycle, or containers of another journal are copied."""
    if not copy and is_tracked(value) and value._j is journal and not journal.broken:
        return value
    return _convert(value, journal, None, {}, copy)


def _convert(value: Any, j: Journal, up: Any, memo: dict[int, Any], copy: bool = False) -> Any:
    kind = type(value)
    if kind in _SCALARS:
        if kind is int and not -(1 << 63) <= value < 1 << 64:
            raise Untrackable
        return value
    if kind is tuple:
        check_tuple(value)  # kept as it is: nothing in it can change
        return value
    key = id(value)
    seen = memo.get(key)
    if seen is not None:
        if seen is _MANY:  # still being converted: a cycle
            raise Untrackable
        seen._up = _MANY
        return seen
    if not copy and is_tracked(value) and value._j is j and not j.broken:
        value._up = up if value._up is None else _MANY
        memo[key] = value
        return value
    if kind is list or kind is TrackedList:
        memo[key] = _MANY
        out: Any = TrackedList()
        out._j, out._up = j, up
        for item in value:  # the common case, a list of scalars (a chat's turn): no calls
            t = type(item)
            if t not in _SCALARS or (t is int and not -(1 << 63) <= item < 1 << 64):
                list.extend(out, [_convert(item, j, out, memo, copy) for item in value])
                break
        else:
            list.extend(out, value)
    elif kind is dict or kind is TrackedDict:
        memo[key] = _MANY
        out = TrackedDict()
        out._j, out._up = j, up
        for k, v in value.items():
            if type(k) not in _SCALARS:
                raise Untrackable
            dict.__setitem__(out, k, _convert(v, j, out, memo, copy))
    else:
        raise Untrackable
    memo[key] = out
    return out


def dissolve(value: Any) -> None:
    """Break the reference cycles of a tracked value that is no longer anyone's state
    (its session ended), so that reference counting frees it at once rather than the
    cyclic collector later: each nested container's parent pointer and the journal's
    records of recent mutations point back up the tree. The values stay as they are."""
    if not is_tracked(value):
        return
    journal = value._j
    with journal.lock:
        journal.events.clear()
        journal.fresh.clear()
        journal.undo = None
    stack = [value]
    while stack:
        container = stack.pop()
        container._up = None
        items = container.values() if type(container) is TrackedDict else container
        stack.extend(x for x in items if type(x) is TrackedList or type(x) is TrackedDict)


def detached(value: Any) -> Any:
    """A plain (untracked) deep copy of a tracked value."""
    kind = type(value)
    if kind is TrackedList or kind is list:
        return [detached(v) for v in value]
    if kind is TrackedDict or kind is dict:
        return {k: detached(v) for k, v in value.items()}
    return value
