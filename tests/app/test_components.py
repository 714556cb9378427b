"""Components: which values each public input accepts, and the chatbot output check."""

from __future__ import annotations

from typing import Any

import pytest

from tether.app.components import (
    COMPONENTS,
    PUBLIC_COMPONENTS,
    STATE,
    check_input,
    check_output,
)
from tether.errors import BadValue

ACCEPTED = [
    ("text", ""),
    ("text", "hello"),
    ("text", "ünïcødé ✓"),
    ("number", 0),
    ("number", 3),
    ("number", -7),
    ("number", 2**63),
    ("number", 0.5),
    ("number", -1e300),
    ("checkbox", True),
    ("checkbox", False),
    ("json", None),
    ("json", 1),
    ("json", "s"),
    ("json", True),
    ("json", [1, [2]]),
    ("json", {"a": {"b": None}}),
    ("chatbot", []),
    ("chatbot", [["hi", "hello"]]),
    ("chatbot", [["hi", None]]),
    ("chatbot", [[None, "welcome"]]),
    ("chatbot", [[None, None]]),
    ("chatbot", [["a", "b"], ["c", None], [None, "d"]]),
    ("chatbot", [("a", "b")]),
]

REFUSED = [
    ("text", 3),
    ("text", None),
    ("text", True),
    ("text", ["a"]),
    ("text", {"text": "a"}),
    ("number", True),
    ("number", False),
    ("number", "3"),
    ("number", "3.5"),
    ("number", None),
    ("number", [3]),
    ("number", {"n": 3}),
    ("number", float("nan")),
    ("number", float("inf")),
    ("number", float("-inf")),
    ("checkbox", 1),
    ("checkbox", 0),
    ("checkbox", "true"),
    ("checkbox", None),
    ("checkbox", []),
    ("chatbot", None),
    ("chatbot", "hi"),
    ("chatbot", {"user": "hi"}),
    ("chatbot", ("a", "b")),
    ("chatbot", ["ab"]),
    ("chatbot", [["only one"]]),
    ("chatbot", [["a", "b", "c"]]),
    ("chatbot", [[]]),
    ("chatbot", [["a", "b"], "cd"]),
    ("chatbot", [[1, "b"]]),
    ("chatbot", [["a", 2]]),
    ("chatbot", [["a", ["b"]]]),
    ("chatbot", [["a", True]]),
    ("chatbot", [{"user": "a", "bot": "b"}]),
]


@pytest.mark.parametrize(("component", "value"), ACCEPTED)
def test_check_input_accepts_a_fitting_value_and_returns_it_unchanged(
    component: str, value: Any
) -> None:
    assert check_input(component, value) is value


@pytest.mark.parametrize(("component", "value"), REFUSED)
def test_check_input_refuses_a_value_that_does_not_fit(component: str, value: Any) -> None:
    with pytest.raises(BadValue):
        check_input(component, value)


def test_bad_value_is_a_value_error() -> None:
    assert issubclass(BadValue, ValueError)


@pytest.mark.parametrize(
    ("component", "value", "said"),
    [
        ("text", 3, "got a number"),
        ("text", None, "got null"),
        ("number", True, "got a boolean"),
        ("number", "3", "got a string"),
        ("checkbox", [], "got an array"),
        ("chatbot", {}, "got an object"),
    ],
)
def test_refusal_message_says_what_kind_of_value_arrived(
    component: str, value: Any, said: str
) -> None:
    with pytest.raises(BadValue, match=said):
        check_input(component, value)


def test_chatbot_refusal_names_the_bad_entry() -> None:
    with pytest.raises(BadValue, match="entry 2"):
        check_input("chatbot", [["a", "b"], ["c", "d"], ["e"]])


def test_chatbot_refusal_of_a_non_string_part_names_the_entry() -> None:
    with pytest.raises(BadValue, match="entry 1 must hold strings or null"):
        check_input("chatbot", [["a", "b"], ["c", 4]])


def test_check_input_has_a_check_for_every_public_component() -> None:
    for component in PUBLIC_COMPONENTS:
        check_input(component, {"text": "", "number": 0, "checkbox": False}.get(component, []))


def test_state_is_a_component_but_not_a_public_one() -> None:
    assert STATE == "state"
    assert STATE in COMPONENTS
    assert STATE not in PUBLIC_COMPONENTS
    assert set(COMPONENTS) == {*PUBLIC_COMPONENTS, STATE}


@pytest.mark.parametrize("value", [[], [["a", "b"]], (("a", "b"),), ()])
def test_check_output_accepts_a_chatbot_list_or_tuple(value: Any) -> None:
    assert check_output("chatbot", value) is value


@pytest.mark.parametrize("value", ["hi", None, {"a": "b"}, 3, {("a", "b")}])
def test_check_output_refuses_a_chatbot_value_that_is_not_a_list(value: Any) -> None:
    with pytest.raises(BadValue, match="chatbot output must be a list"):
        check_output("chatbot", value)


@pytest.mark.parametrize(
    ("component", "value", "words"),
    [
        ("text", 3, "text output must be a string, got a number"),
        ("text", None, "text output must be a string, got null"),
        ("number", "3", "number output must be a number, got a string"),
        ("number", True, "number output must be a number, got a boolean"),
        ("number", float("nan"), "number output must be finite"),
        ("number", float("inf"), "number output must be finite"),
        ("checkbox", None, "checkbox output must be true or false, got null"),
        ("checkbox", 1, "checkbox output must be true or false, got a number"),
        ("chatbot", [["a", "b"], "c"], "entry 1 must be a \\[user, bot\\] pair"),
        ("chatbot", [["a", "b", "c"]], "entry 0 must be a \\[user, bot\\] pair"),
        ("chatbot", [["a", 3]], "entry 0 must hold strings or null, got a number"),
    ],
)
def test_check_output_refuses_what_its_component_does_not_hold(
    component: str, value: Any, words: str
) -> None:
    with pytest.raises(BadValue, match=words):
        check_output(component, value)


@pytest.mark.parametrize(
    ("component", "value"),
    [
        ("text", "hi"),
        ("number", 3),
        ("number", -0.5),
        ("number", 2**70),
        ("checkbox", False),
        ("json", {1, 2}),  # (json is checked when it is encoded: not JSON is fn_error then)
        ("chatbot", [["a", None], [None, "b"]]),
    ],
)
def test_check_output_passes_what_its_component_holds(component: str, value: Any) -> None:
    assert check_output(component, value) is value


def test_check_output_accepts_journaled_state() -> None:
    """A function may return its state, held as journaled list/dict subclasses."""
    from tether.app.journal import Journal, adopt

    history = adopt([["hi", "there"]], Journal(), copy=True)
    assert type(history) is not list
    assert check_output("chatbot", history) is history
    assert check_output("json", history) is history
