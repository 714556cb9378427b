"""Argument checks and error messages both backends share, so misuse reads the same.

Each ``check_*`` raises ``StoreError`` for an argument no backend accepts; the
``*_message`` helpers word the errors a backend finds while applying an operation.
"""

from __future__ import annotations

import math
from typing import Any, Final

import orjson

from ..errors import StoreError

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "check_count",
    "check_increment",
    "check_index",
    "check_lb_add",
    "check_member",
    "check_score",
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


def dumps_value(value: Any) -> bytes:
    """``value`` as stored: its JSON text."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise StoreError(f"store values must be JSON-serialisable: {exc}") from None


def plain_number(score: float) -> int | float:
    """A score as JSON shows it: 42, not 42.0."""
    return int(score) if float(score).is_integer() else score


def not_a_number_message(key: str) -> str:
    return f"incr: the value at {key!r} is not a number"


def out_of_range_message(key: str) -> str:
    return f"incr: the result at {key!r} is out of range (64-bit integer or finite float)"


def nan_score_message(board: str, member: str) -> str:
    return f"lb_incr: the score of {member!r} on {board!r} would not be a number"


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


def check_score(what: str, score: Any) -> None:
    if type(score) not in (int, float) or score != score:
        raise StoreError(f"{what} must be an int or float and not NaN, not {score!r}")


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


def check_lb_add(member: Any, score: Any, keep: Any, top: Any, topic: str | None) -> None:
    """The arguments of ``lb_add``, as every backend checks them."""
    check_member(member)
    check_score("lb_add: score", score)
    check_count("lb_add: keep", keep, 1, optional=True)
    check_count("lb_add: top", top, 1 if topic is not None else 0)
