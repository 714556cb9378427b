"""Argument checks and error messages both backends share, so misuse reads the same.

Each ``check_*`` raises ``StoreError`` for an argument no backend accepts; the
``*_message`` helpers word the errors a backend finds while applying an operation.

What enters the store is checked where it enters, so that nothing stored can
make an encoding fail later (a poisoned value would break every reader):

- values (``dumps_value``) are JSON that orjson re-encodes inside any protocol
  frame: integers signed 64-bit, floats finite (orjson would silently write
  NaN and infinity as ``null``), nesting at most ``MAX_VALUE_DEPTH`` levels
  (orjson's own limit is 254, and a frame wraps a value in a few more);
- scores (``check_score``) are finite and fit a double; ``plain_number`` shows
  a whole score as an int only where that int is exact (|score| <= 2**53), so
  ``1e20`` stays the float ``1e+20`` instead of an int no encoder takes.
"""

from __future__ import annotations

import math
from typing import Any, Final

import orjson

from ..errors import StoreError

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_EXACT_INT",
    "MAX_VALUE_DEPTH",
    "check_count",
    "check_increment",
    "check_index",
    "check_lb_add",
    "check_member",
    "check_score",
    "checked_score",
    "checked_sum",
    "dumps_value",
    "nan_score_message",
    "not_a_number_message",
    "number_at",
    "out_of_range_message",
    "plain_number",
]

INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1
MAX_EXACT_INT: Final = 1 << 53
"""The largest whole number every double (and JavaScript's Number) holds exactly."""

MAX_VALUE_DEPTH: Final = 128
"""How deeply a store value may nest arrays and objects (a store constant, not a
server setting: it keeps every stored value encodable inside a protocol frame)."""

_ORJSON_DEPTH: Final = 254  # orjson.dumps refuses a 255th level of nesting
_PAD: Final = _ORJSON_DEPTH - MAX_VALUE_DEPTH


def dumps_value(value: Any) -> bytes:
    """``value`` as stored: its JSON text, refused (``StoreError``) unless every
    encoder can take it back (see the module doc).

    It costs one ``orjson.dumps`` and a scan of its text for ``null`` (which is
    also what orjson writes for NaN and infinity), all in C, and for a text
    longer than ``2 * MAX_VALUE_DEPTH`` bytes one more encoding (the depth
    check). The value is walked in Python only when its text shows a ``null``
    or orjson reports an integer beyond 2**53.
    """
    walk = False
    try:
        raw = orjson.dumps(value, option=orjson.OPT_STRICT_INTEGER)
    except orjson.JSONEncodeError as exc:
        if "53-bit" not in str(exc):
            raise _unencodable(exc) from None
        walk = True  # a big integer: allowed up to signed 64 bits, checked below
        try:
            raw = orjson.dumps(value)
        except orjson.JSONEncodeError as again:
            raise _unencodable(again) from None
    if walk or b"null" in raw:
        _check_numbers(value)
    # Nesting d levels takes 2d bytes: a shorter text cannot nest too deeply. (Counting
    # its brackets would cost more than the one more encoding _check_depth makes.)
    if len(raw) > 2 * MAX_VALUE_DEPTH:
        _check_depth(value)
    return raw


def _unencodable(exc: Exception) -> StoreError:
    if "Recursion limit" in str(exc):
        return StoreError(f"store values may nest at most {MAX_VALUE_DEPTH} arrays or objects deep")
    return StoreError(f"store values must be JSON-serialisable: {exc}")


def _check_depth(value: Any) -> None:
    """Refuse ``value`` if it nests deeper than ``MAX_VALUE_DEPTH``, with no walk: wrapped
    in ``_PAD`` lists, such a value passes orjson's own limit."""
    wrapped = value
    for _ in range(_PAD):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError as exc:
        raise _unencodable(exc) from None


def _check_numbers(value: Any) -> None:
    """Refuse a NaN, an infinity or an integer beyond signed 64-bit anywhere in ``value``."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        # isinstance: a session's journaled state (list and dict subclasses) may be stored.
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise StoreError(f"store values must be finite numbers, not {item!r}")
        elif isinstance(item, int) and kind is not bool and not INT64_MIN <= item <= INT64_MAX:
            raise StoreError(
                f"store integers must fit in signed 64 bits, not {item!r} "
                "(store it as a string or a float)"
            )


def plain_number(score: float) -> int | float:
    """A score as JSON shows it: 42, not 42.0; a whole score beyond 2**53 stays a float
    (as an int it would claim digits the double does not have, and could be out of
    any encoder's range)."""
    if float(score).is_integer() and -MAX_EXACT_INT <= score <= MAX_EXACT_INT:
        return int(score)
    return score


def not_a_number_message(key: str) -> str:
    return f"incr: the value at {key!r} is not a number"


def out_of_range_message(key: str) -> str:
    return f"incr: the result at {key!r} is out of range (64-bit integer or finite float)"


def nan_score_message(board: str, member: str) -> str:
    return f"lb_incr: the score of {member!r} on {board!r} would not be a number (NaN or infinite)"


def number_at(key: str, value: Any) -> int | float:
    """``value`` (read from ``key``), if ``incr`` can add to it."""
    if type(value) not in (int, float):
        raise StoreError(not_a_number_message(key))
    return value  # type: ignore[no-any-return]


def checked_sum(key: str, value: int | float) -> int | float:
    """``value``, if it is a signed 64-bit int or a finite float (as Redis requires)."""
    if type(value) is int:
        if not INT64_MIN <= value <= INT64_MAX:
            raise StoreError(out_of_range_message(key))
    elif not math.isfinite(value):
        raise StoreError(out_of_range_message(key))
    return value


def check_increment(by: Any) -> None:
    if type(by) not in (int, float):
        raise StoreError(f"incr: 'by' must be an int or a float, not {type(by).__name__}")


def check_score(what: str, score: Any) -> float:
    """``score`` as the double a leaderboard keeps, if it is a finite number that fits one."""
    if type(score) not in (int, float):
        raise StoreError(f"{what} must be an int or float and not NaN, not {score!r}")
    try:
        value = float(score)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise StoreError(
            f"{what} must be finite (not NaN, not infinite, within a double's range), not {score!r}"
        )
    return value


def checked_score(board: str, member: str, value: float) -> float:
    """``value``, the score ``lb_incr`` arrived at, if it is finite."""
    if not math.isfinite(value):
        raise StoreError(nan_score_message(board, member))
    return value


def check_member(member: Any) -> None:
    if type(member) is not str:
        raise StoreError(f"leaderboard members must be str, not {type(member).__name__}")


def check_count(what: str, value: Any, minimum: int, optional: bool = False) -> None:
    if optional and value is None:
        return
    if type(value) is not int or value < minimum:
        raise StoreError(f"{what} must be an int >= {minimum}, not {value!r}")


def check_index(value: Any) -> None:
    if type(value) is not int:
        raise StoreError(f"list_range: start and stop must be ints, not {value!r}")


def check_lb_add(member: Any, score: Any, keep: Any, top: Any, topic: str | None) -> float:
    """The arguments of ``lb_add``, as every backend checks them; returns the score as kept."""
    check_member(member)
    value = check_score("lb_add: score", score)
    check_count("lb_add: keep", keep, 1, optional=True)
    check_count("lb_add: top", top, 1 if topic is not None else 0)
    return value
