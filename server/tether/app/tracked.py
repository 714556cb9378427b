"""The tracked list and dict of a journaled state slot (app/journal.py explains).

Each mutation method, under its journal's lock, logs the step that undoes it
(while a call is in progress), counts the JSON bytes it put in and took out,
records plain containers put in (``fresh``: made tracked at commit), keeps each
nested container's parent (``_up``; ``_MANY`` once it is in two places) and
notes the mutation for output deltas (``TrackedList.delta_since``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, SupportsIndex

import orjson

if TYPE_CHECKING:
    from .journal import Journal

__all__ = ["TrackedDict", "TrackedList", "Untrackable", "delta_clock", "is_tracked"]

_tick: Final = itertools.count(1).__next__
_dumps: Final = orjson.dumps
_OPTIONS: Final = orjson.OPT_NON_STR_KEYS
_SCALARS: Final = frozenset({type(None), bool, int, float, str})
_MANY: Final[Any] = object()  # the ``_up`` of a container that is in two places


class Untrackable(Exception):
    """A value that cannot be journaled (the slot falls back to a full copy)."""


def _locate(parent: Any, key: Any, obj: Any) -> Any:
    """Where ``obj`` is in ``parent`` (an index or a key), ``key`` first; None if gone."""
    if type(parent) is TrackedList:
        if 0 <= key < len(parent) and parent[key] is obj:
            return key
        for i in range(len(parent) - 1, -1, -1):
            if parent[i] is obj:
                return i
        return None
    if parent.get(key, None) is obj:
        return key
    for k, v in parent.items():
        if v is obj:
            return k
    return None


def _size(value: Any) -> int:
    try:
        return len(_dumps(value, option=_OPTIONS))
    except (orjson.JSONEncodeError, TypeError):
        raise Untrackable from None


def is_tracked(value: Any) -> bool:
    return type(value) is TrackedList or type(value) is TrackedDict


def check_tuple(value: tuple[Any, ...]) -> None:
    """Raise ``Untrackable`` unless nothing in ``value`` can change (scalars, tuples)."""
    for item in value:
        kind = type(item)
        if kind is tuple:
            check_tuple(item)
        elif kind not in _SCALARS or (kind is int and not -(1 << 63) <= item < 1 << 64):
            raise Untrackable


# -- what a mutation records ---------------------------------------------------------


def _placed(j: Journal, parent: Any, key: Any, value: Any) -> int:
    """``value`` was put into ``parent`` at ``key``: its JSON bytes (0 while fresh)."""
    kind = type(value)
    if kind in _SCALARS or kind is tuple:
        try:
            if kind is tuple:
                check_tuple(value)
            return len(_dumps(value, option=_OPTIONS))
        except (Untrackable, orjson.JSONEncodeError, TypeError):
            j.broken = True
            return 0
    if kind is list or kind is dict:
        j.fresh.append((parent, key, value))
        return 0
    if kind is TrackedList or kind is TrackedDict:
        value._up = parent if value._up is None else _MANY
        if value._j is not j:
            j.broken = True  # another slot's (or session's) container: copy next time
        try:
            return _size(value)
        except Untrackable:
            j.broken = True
            return 0
    j.broken = True
    return 0


def _dropped(parent: Any, value: Any) -> int:
    """``value`` was taken out of ``parent``: its JSON bytes (0 if it was fresh)."""
    kind = type(value)
    if kind is TrackedList or kind is TrackedDict:
        if value._up is parent:
            value._up = None
    elif kind is list or kind is dict:
        return 0  # fresh, not counted yet
    try:
        return len(_dumps(value, option=_OPTIONS))
    except (orjson.JSONEncodeError, TypeError):
        return 0


def _undo_truncate(lst: list[Any], n: int) -> None:
    list.__delitem__(lst, slice(n, None))


def _undo_insert(lst: list[Any], i: int, item: Any) -> None:
    list.insert(lst, i, item)


def _undo_delete(lst: list[Any], i: int) -> None:
    list.__delitem__(lst, i)


def _undo_set(lst: list[Any], i: int, item: Any) -> None:
    list.__setitem__(lst, i, item)


def _undo_restore(lst: list[Any], saved: list[Any]) -> None:
    list.__setitem__(lst, slice(None), saved)


def _undo_dict_set(d: dict[Any, Any], key: Any, value: Any) -> None:
    dict.__setitem__(d, key, value)


def _undo_dict_delete(d: dict[Any, Any], key: Any) -> None:
    dict.__delitem__(d, key)


def _undo_dict_restore(d: dict[Any, Any], saved: dict[Any, Any]) -> None:
    dict.clear(d)
    dict.update(d, saved)


def _index(lst: list[Any], i: SupportsIndex) -> int:
    """``i`` as a position in ``lst`` (IndexError as list would raise)."""
    n = len(lst)
    p = i.__index__()
    if p < 0:
        p += n
    if not 0 <= p < n:
        raise IndexError("list index out of range")
    return p


class TrackedList(list):  # type: ignore[type-arg]
    """A list of a journaled slot (see the module's docstring)."""

    __slots__ = ("_j", "_up")
    _j: Journal
    _up: Any

    # -- growing at the end: undone by truncating ---------------------------------

    def append(self, item: Any) -> None:
        j = self._j
        with j.lock:
            n = len(self)
            if j.undo is not None:
                j.undo.append((_undo_truncate, self, n))
            list.append(self, item)
            j.grown += _placed(j, self, n, item) + 1
            j.note(self, n)

    def extend(self, items: Iterable[Any]) -> None:
        items = list(items)  # (an iterator over self, or user code: before the lock)
        j = self._j
        with j.lock:
            n = len(self)
            if j.undo is not None:
                j.undo.append((_undo_truncate, self, n))
            list.extend(self, items)
            j.grown += sum(_placed(j, self, n + i, x) + 1 for i, x in enumerate(items))
            j.note(self, n)

    def __iadd__(self, items: Iterable[Any]) -> TrackedList:  # type: ignore[misc]
        self.extend(items)
        return self

    def insert(self, i: SupportsIndex, item: Any) -> None:
        j = self._j
        with j.lock:
            n = len(self)
            p = i.__index__()
            p = max(0, p + n) if p < 0 else min(p, n)
            if j.undo is not None:
                j.undo.append((_undo_delete, self, p))
            list.insert(self, p, item)
            j.grown += _placed(j, self, p, item) + 1
            j.note(self, p)

    # -- taking one out: undone by putting it back ---------------------------------

    def pop(self, i: SupportsIndex = -1) -> Any:
        j = self._j
        with j.lock:
            if not self:
                raise IndexError("pop from empty list")
            p = _index(self, i)
            item = list.pop(self, p)
            if j.undo is not None:
                j.undo.append((_undo_insert, self, p, item))
            j.shrunk += _dropped(self, item) + 1
            j.note(self, p)
            return item

    def remove(self, item: Any) -> None:
        j = self._j
        with j.lock:
            p = self.index(item)
            self.pop(p)

    def __delitem__(self, i: SupportsIndex | slice) -> None:
        if not isinstance(i, slice):
            self.pop(_index(self, i))
            return
        self._replace(lambda: list.__delitem__(self, i))

    def __setitem__(self, i: Any, value: Any) -> None:
        if isinstance(i, slice):
            value = list(value)
            self._replace(lambda: list.__setitem__(self, i, value))
            return
        j = self._j
        with j.lock:
            p = _index(self, i)
            old = self[p]
            if j.undo is not None:
                j.undo.append((_undo_set, self, p, old))
            list.__setitem__(self, p, value)
            j.shrunk += _dropped(self, old)
            j.grown += _placed(j, self, p, value)
            j.note(self, p)

    # -- the rest: undone by restoring a shallow copy (they are O(n) themselves) ---

    def _replace(self, change: Callable[[], Any]) -> Any:
        j = self._j
        with j.lock:
            saved = list(self)
            if j.undo is not None:
                j.undo.append((_undo_restore, self, saved))
            try:
                return change()
            finally:
                self._recount(j, saved)

    def _recount(self, j: Journal, saved: list[Any]) -> None:
        before: dict[int, int] = {}
        for x in saved:
            before[id(x)] = before.get(id(x), 0) + 1
        after: dict[int, int] = {}
        for x in self:
            after[id(x)] = after.get(id(x), 0) + 1
        objects = {id(x): x for x in saved}
        objects.update((id(x), x) for x in self)
        for key, x in objects.items():
            change = after.get(key, 0) - before.get(key, 0)
            for _ in range(change):
                j.grown += _placed(j, self, len(self) - 1, x) + 1
            for _ in range(-change):
                j.shrunk += _dropped(self, x) + 1
            if after.get(key, 0) > 1 and is_tracked(x):
                x._up = _MANY  # in two places now
        j.note(self, 0)

    def sort(self, *, key: Any = None, reverse: bool = False) -> None:
        self._replace(lambda: list.sort(self, key=key, reverse=reverse))

    def reverse(self) -> None:
        self._replace(lambda: list.reverse(self))

    def clear(self) -> None:
        self._replace(lambda: list.clear(self))

    def __imul__(self, n: SupportsIndex) -> TrackedList:
        self._replace(lambda: list.__imul__(self, n))
        for x in self:
            if is_tracked(x):
                x._up = _MANY
        return self

    # -- copies are plain ----------------------------------------------------------

    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        import copy

        return [copy.deepcopy(x, memo) for x in self]

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        return (list, (list(self),))

    # -- what output deltas ask ----------------------------------------------------

    def delta_since(self, clock: int) -> int | None:
        """The lowest index whose item may differ from what it was at ``clock`` (the
        length if none does), or None when that is not known any more."""
        j = self._j
        with j.lock:
            if clock < j.horizon or j.broken:
                return None
            low = len(self)
            for stamp, container, index in reversed(j.events):
                if stamp <= clock:
                    break
                if container is self:
                    low = min(low, index)
                    continue
                where = self._child_holding(container)
                if where is None:
                    return None
                low = min(low, where)
            for parent, key, obj in j.fresh:  # plain containers: mutable unseen
                if parent is self:
                    where = _locate(self, key, obj)
                    if where is None:
                        continue
                else:
                    where = self._child_holding(parent)
                    if where is None:
                        return None
                low = min(low, where)
            return low

    def _child_holding(self, container: Any) -> int | None:
        """The index of the item of ``self`` that is or holds ``container``; len(self)
        when it is not in ``self`` at all; None when that is not known."""
        child, up = container, container._up
        while up is not self:
            if up is None:
                return len(self)
            if up is _MANY:
                return None
            child, up = up, up._up
        if child._up is _MANY:
            return None
        for i in range(len(self) - 1, -1, -1):
            if self[i] is child:
                return i
        return len(self)  # (its parent pointer is stale: it was taken out)


def delta_clock() -> int:
    """A point in the mutations' order (``TrackedList.delta_since`` takes it)."""
    return _tick()


TrackedList.delta_clock = staticmethod(delta_clock)  # type: ignore[attr-defined]


class TrackedDict(dict):  # type: ignore[type-arg]
    """A dict of a journaled slot (see the module's docstring)."""

    __slots__ = ("_j", "_up")
    _j: Journal
    _up: Any

    def __setitem__(self, key: Any, value: Any) -> None:
        j = self._j
        with j.lock:
            old = self.get(key, _ABSENT)
            if j.undo is not None:
                if old is _ABSENT:
                    j.undo.append((_undo_dict_delete, self, key))
                else:
                    j.undo.append((_undo_dict_set, self, key, old))
            dict.__setitem__(self, key, value)
            if old is _ABSENT:
                if type(key) not in _SCALARS:
                    j.broken = True
                j.grown += _key_size(key) + 1
            else:
                j.shrunk += _dropped(self, old)
            j.grown += _placed(j, self, key, value)
            j.note(self, 0)

    def __delitem__(self, key: Any) -> None:
        j = self._j
        with j.lock:
            old = self[key]
            last = next(reversed(self.keys())) == key
            if j.undo is not None:
                if last:  # put back at the end: the same order
                    j.undo.append((_undo_dict_set, self, key, old))
                else:
                    j.undo.append((_undo_dict_restore, self, dict(self)))
            dict.__delitem__(self, key)
            j.shrunk += _key_size(key) + 1 + _dropped(self, old)
            j.note(self, 0)

    def pop(self, key: Any, *default: Any) -> Any:
        if key in self:
            value = self[key]
            del self[key]
            return value
        if default:
            return default[0]
        raise KeyError(key)

    def popitem(self) -> tuple[Any, Any]:
        if not self:
            raise KeyError("popitem(): dictionary is empty")
        key = next(reversed(self.keys()))
        value = self[key]
        del self[key]
        return key, value

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key in self:
            return self[key]
        self[key] = default
        return default

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __ior__(self, other: Any) -> TrackedDict:  # type: ignore[misc]
        self.update(other)
        return self

    def clear(self) -> None:
        j = self._j
        with j.lock:
            if j.undo is not None:
                j.undo.append((_undo_dict_restore, self, dict(self)))
            for key, value in self.items():
                j.shrunk += _key_size(key) + 1 + _dropped(self, value)
            dict.clear(self)
            j.note(self, 0)

    def __copy__(self) -> dict[Any, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[Any, Any]:
        import copy

        return {k: copy.deepcopy(v, memo) for k, v in self.items()}

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        return (dict, (dict(self),))


_ABSENT: Final[Any] = object()


def _key_size(key: Any) -> int:
    try:
        encoded = len(_dumps(key))
    except (orjson.JSONEncodeError, TypeError):
        return 8
    return encoded if type(key) is str else encoded + 2
