"""Components: what an input or output is, and how a value is checked.

Inputs are validated (and lightly coerced) before user code runs, so that a
function declared with a ``"number"`` input never sees a string. A failed
check raises ``BadValue``; the session answers the submit with ``bad_arguments``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

from ..errors import BadValue
from ..protocol.server import json_kind

__all__ = [
    "COMPONENTS",
    "PUBLIC_COMPONENTS",
    "STATE",
    "BadValue",
    "check_input",
    "check_output",
    "input_check",
]

STATE: Final = "state"
PUBLIC_COMPONENTS: Final = ("text", "number", "checkbox", "json", "chatbot")
COMPONENTS: Final = (*PUBLIC_COMPONENTS, STATE)


def _text(value: Any) -> Any:
    if type(value) is not str:
        raise BadValue(f"expected text (a string), got {json_kind(value)}")
    return value


def _number(value: Any) -> Any:
    kind = type(value)
    if kind is int:
        return value
    if kind is float:
        # JSON has no NaN or infinity (the wire's decoder refuses 1e400), but a value
        # from anywhere else must not reach a function that trusts its number either.
        if math.isfinite(value):
            return value
        raise BadValue(f"expected a finite number, got {value!r}")
    raise BadValue(f"expected a number, got {json_kind(value)}")


def _checkbox(value: Any) -> Any:
    if type(value) is not bool:
        raise BadValue(f"expected true or false, got {json_kind(value)}")
    return value


def _json(value: Any) -> Any:
    return value


def _chatbot(value: Any) -> Any:
    """A chat history: a list of ``[user_message, bot_reply]`` pairs (either may be null)."""
    if type(value) is not list:
        raise BadValue(f"expected a chat history (an array of pairs), got {json_kind(value)}")
    for i, pair in enumerate(value):
        if type(pair) not in (list, tuple) or len(pair) != 2:
            raise BadValue(f"chat history entry {i} must be a [user, bot] pair")
        for part in pair:
            if part is not None and type(part) is not str:
                raise BadValue(f"chat history entry {i} must hold strings or null")
    return value


_CHECKS: Final[dict[str, Callable[[Any], Any]]] = {
    "text": _text,
    "number": _number,
    "checkbox": _checkbox,
    "json": _json,
    "chatbot": _chatbot,
}


def check_input(component: str, value: Any) -> Any:
    """Validate one public input; return the value the function receives."""
    return _CHECKS[component](value)


def input_check(component: str) -> Callable[[Any], Any]:
    """The check of ``component``'s inputs (what ``check_input`` calls)."""
    return _CHECKS[component]


def check_output(component: str, value: Any) -> Any:
    """Check one public output against its component, as inputs are checked; raise
    ``BadValue`` saying what is wrong (the submit then gets ``fn_error``).

    With ``isinstance``, not ``type() is``: a function may return its journaled state
    (list and dict subclasses, app/tracked.py). A chat history's type and its newest
    entry are checked, not every entry: the rest were checked when they were new, and a
    history of thousands of turns is not walked on every submit.
    """
    if component == "text":
        if not isinstance(value, str):
            raise BadValue(f"a text output must be a string, got {json_kind(value)}")
    elif component == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadValue(f"a number output must be a number, got {json_kind(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise BadValue(f"a number output must be finite, got {value!r}")
    elif component == "checkbox":
        if not isinstance(value, bool):
            raise BadValue(f"a checkbox output must be true or false, got {json_kind(value)}")
    elif component == "chatbot":
        if not isinstance(value, (list, tuple)):
            raise BadValue(
                f"a chatbot output must be a list of [user, bot] pairs, got {json_kind(value)}"
            )
        if value:
            _chat_entry(len(value) - 1, value[-1])
    return value


def _chat_entry(i: int, pair: Any) -> None:
    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
        raise BadValue(
            f"chatbot output entry {i} must be a [user, bot] pair, got {json_kind(pair)}"
        )
    for part in pair:
        if part is not None and not isinstance(part, str):
            raise BadValue(
                f"chatbot output entry {i} must hold strings or null, got {json_kind(part)}"
            )
