"""Session-state slots and the cheap copies that make rollback possible.

A ``State`` is a named slot of per-session memory. Each session gets its own
copy of the slot's default (or a fresh value from its factory). A function that
raises after mutating a slot's value in place leaves the session's state as it
was: a value of JSON lists, dicts and scalars is journaled (app/journal.py: its
containers log how to undo each mutation, so nothing is copied before a call);
any other value (or a slot declared ``snapshot="copy"``) is snapshot before
the call with ``copy_value``.

Snapshots go through orjson when the value is plain JSON (a C-speed deep
copy; a quick walk checks every node's exact type first), and fall back to
``copy.deepcopy`` for anything else (tuples, sets, enums, dataclasses, ...).
Immutable scalars are not copied at all.

``state_size`` measures a value for the per-session state budget: the length
of its orjson encoding, at C speed, with what JSON cannot hold measured as
well (sets and tuples as arrays, objects by their attributes, buffers by
their bytes).
"""

from __future__ import annotations

import copy
import itertools
import math
import sys
from collections.abc import Callable
from typing import Any, Final, Literal

import orjson

from .journal import TrackedDict, TrackedList

__all__ = ["MISSING", "State", "copy_value", "state_size"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final[Any] = _Missing()

_IMMUTABLE: Final = frozenset({type(None), bool, int, float, str, bytes})
_counter = itertools.count()


def copy_value(value: Any) -> Any:
    """An independent deep copy of ``value``, as cheaply as possible."""
    if type(value) in _IMMUTABLE:
        return value
    try:
        # dumps first: it refuses cycles (depth limit), which keeps the walk finite.
        encoded = orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        return copy.deepcopy(value)
    if _is_plain_json(value):
        return orjson.loads(encoded)
    return copy.deepcopy(value)


_PLAIN_LEAVES: Final = frozenset({str, int, bool, type(None)})
_SIZE_OPTIONS: Final = orjson.OPT_NON_STR_KEYS


def state_size(value: Any) -> int | None:
    """About how many bytes ``value`` holds: its JSON encoding's length, or None
    when it cannot be measured (a cycle, nesting deeper than orjson's 254 levels,
    an integer beyond 64 bits).

    What JSON cannot hold is measured too: sets and frozensets as arrays, other
    objects by their ``__dict__`` or ``__slots__``, bytes-like values and arrays
    (``nbytes``) by their size, anything else by ``sys.getsizeof``.
    """
    kind = type(value)
    if kind is str or kind is bytes:
        return len(value)
    if kind in _IMMUTABLE:
        return 8
    try:  # plain JSON, the common case: no hook needed
        return len(orjson.dumps(value, option=_SIZE_OPTIONS))
    except (orjson.JSONEncodeError, TypeError):
        pass
    extra = 0

    def measure(obj: Any) -> Any:
        nonlocal extra
        if isinstance(obj, (set, frozenset)):
            return list(obj)
        if isinstance(obj, (bytes, bytearray, memoryview)):
            extra += len(obj)
            return None
        nbytes = getattr(obj, "nbytes", None)
        if type(nbytes) is int:
            extra += nbytes
            return None
        attributes = getattr(obj, "__dict__", None)
        if type(attributes) is dict and attributes:
            return attributes
        names: list[str] = []
        for cls in type(obj).__mro__:
            declared = getattr(cls, "__slots__", ())
            names.extend((declared,) if isinstance(declared, str) else declared)
        if names:
            return {n: getattr(obj, n, None) for n in names if n != "__weakref__"}
        extra += sys.getsizeof(obj)
        return None

    try:
        return len(orjson.dumps(value, default=measure, option=_SIZE_OPTIONS)) + extra
    except (orjson.JSONEncodeError, TypeError):
        return None


def _is_plain_json(value: Any) -> bool:
    """True when every node is exactly a dict (str keys), list, str, int, bool,
    None or finite float: then an orjson round trip is an exact deep copy.

    Exact type checks, because orjson would quietly turn a tuple, an
    OrderedDict, a StrEnum member or a dataclass into a plain JSON value.
    """
    stack = [value]
    pop = stack.pop
    push = stack.extend
    while stack:
        node = pop()
        kind = type(node)
        if kind is list or kind is TrackedList:
            push(node)
        elif kind is dict or kind is TrackedDict:
            for key in node:
                if type(key) is not str:
                    return False
            push(node.values())
        elif kind is float:
            if not math.isfinite(node):  # orjson writes nan/inf as null
                return False
        elif kind not in _PLAIN_LEAVES:
            return False
    return True


class State:
    """A named session-state slot.

    ``State(default=[])``: every session starts with its own copy of ``[]``.
    ``State(factory=make_cart)``: every session starts with ``make_cart()``.
    ``snapshot=True`` (the default) journals a JSON value's mutations to undo them
    if the function fails (the function gets the value as tracked lists and
    dicts: ``isinstance(v, list)`` holds, ``type(v) is list`` does not);
    ``snapshot="copy"`` copies the value before each call instead (O(size) per
    call, for code that mutates it behind the list and dict methods' backs, e.g.
    ``heapq``); ``snapshot=False`` does neither: cheaper for huge values, but a
    function that mutates the value in place and then raises leaves the
    mutation behind.

    Pass the same ``State`` object to several functions of an app and they
    share that slot within a session (as Gradio Blocks does).
    """

    __slots__ = ("default", "factory", "key", "name", "snapshot")

    def __init__(
        self,
        default: Any = None,
        *,
        factory: Callable[[], Any] | None = None,
        snapshot: bool | Literal["copy"] = True,
        name: str | None = None,
    ) -> None:
        if factory is not None and default is not None:
            raise TypeError("State takes a default or a factory, not both")
        self.default = default
        self.factory = factory
        self.snapshot = snapshot
        self.name = name
        self.key = f"state#{next(_counter)}"

    @property
    def stable_key(self) -> str:
        """The slot's name across processes (for sessions resumed on another node)."""
        return self.name or self.key

    def initial(self) -> Any:
        """The value a new session starts with (never shared with another session)."""
        if self.factory is not None:
            return self.factory()
        return copy_value(self.default)

    def __repr__(self) -> str:
        label = self.name or self.key
        return f"State({label}, default={self.default!r})"
