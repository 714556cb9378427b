"""copy_value (the snapshot copy behind rollback) and State slots."""

from __future__ import annotations

import enum
import math
from collections import Counter, OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest

from tether.app.state import MISSING, State, copy_value, state_size


@dataclass
class Cart:
    items: list[str] = field(default_factory=list)
    total: float = 0.0


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    LOW = 1


class Mode(enum.StrEnum):
    FAST = "fast"


def assert_same_structure(copy: Any, original: Any) -> None:
    """Equal, with exactly the same type at every node (not just the top)."""
    assert type(copy) is type(original), (copy, original)
    if isinstance(original, dict):
        assert list(copy) == list(original)
        for key in original:
            assert_same_structure(copy[key], original[key])
    elif isinstance(original, (list, tuple)):
        assert len(copy) == len(original)
        for a, b in zip(copy, original, strict=True):
            assert_same_structure(a, b)
    elif isinstance(original, float) and math.isnan(original):
        assert math.isnan(copy)
    else:
        assert copy == original


def assert_independent(copy: Any, original: Any) -> None:
    """No container of ``copy`` is a container of ``original``."""
    if isinstance(original, (list, dict, set)):
        assert copy is not original
    if isinstance(original, dict):
        for key in original:
            assert_independent(copy[key], original[key])
    elif isinstance(original, (list, tuple)):
        for a, b in zip(copy, original, strict=True):
            assert_independent(a, b)


# -- copy_value --------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [None, True, False, 0, -5, 2**80, 1.5, math.inf, "", "text", b"bytes"]
)
def test_copy_value_returns_an_immutable_scalar_as_is(value: Any) -> None:
    assert copy_value(value) is value


def test_copy_value_returns_a_nan_float_as_is() -> None:
    nan = float("nan")
    assert copy_value(nan) is nan


@pytest.mark.parametrize(
    "value",
    [
        [],
        {},
        [1, 2.5, "x", None, True],
        {"a": [1, {"b": [2, 3]}], "c": {}},
        [[["deep"]]],
        [{"role": "user", "content": "hi"}, {"role": "bot", "content": None}],
    ],
)
def test_copy_value_deep_copies_json_lists_and_dicts(value: Any) -> None:
    copied = copy_value(value)
    assert_same_structure(copied, value)
    assert_independent(copied, value)


def test_mutating_a_copied_list_does_not_touch_the_original() -> None:
    original = [["hi", "hello"], ["bye", None]]
    copied = copy_value(original)
    copied.append(["new", "pair"])
    copied[0][1] = "changed"
    assert original == [["hi", "hello"], ["bye", None]]


def test_mutating_a_copied_dict_does_not_touch_the_original() -> None:
    original = {"cart": {"items": ["apple"]}, "n": 1}
    copied = copy_value(original)
    copied["cart"]["items"].append("pear")
    copied["n"] = 2
    del copied["cart"]
    assert original == {"cart": {"items": ["apple"]}, "n": 1}


def test_copy_value_keeps_integers_and_floats_apart() -> None:
    copied = copy_value({"i": 1, "f": 1.0, "b": True, "l": [0, 0.0, False]})
    assert [type(v) for v in (copied["i"], copied["f"], copied["b"])] == [int, float, bool]
    assert [type(v) for v in copied["l"]] == [int, float, bool]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param((1, 2, 3), id="tuple"),
        pytest.param([(1, 2), (3, 4)], id="tuples-in-list"),
        pytest.param({"pair": (1, [2])}, id="tuple-in-dict"),
        pytest.param({1, 2, 3}, id="set"),
        pytest.param([{"a", "b"}], id="set-in-list"),
        pytest.param(frozenset({1, 2}), id="frozenset"),
        pytest.param(Cart(["apple"], 2.5), id="dataclass"),
        pytest.param([Cart(["apple"])], id="dataclass-in-list"),
        pytest.param({"cart": Cart()}, id="dataclass-in-dict"),
        pytest.param([float("nan")], id="nan-in-list"),
        pytest.param({"x": float("nan"), "y": 1.0}, id="nan-in-dict"),
        pytest.param([math.inf, -math.inf], id="infinities"),
        pytest.param({1: "one", 2: "two"}, id="int-keys"),
        pytest.param({"outer": {3: [1]}}, id="nested-int-keys"),
        pytest.param([2**70], id="int-beyond-64-bits"),
        pytest.param([b"raw"], id="bytes-in-list"),
        pytest.param(OrderedDict(a=1, b=2), id="ordered-dict"),
        pytest.param(defaultdict(list, a=[1]), id="defaultdict"),
        pytest.param([Colour.RED], id="enum-in-list"),
    ],
)
def test_copy_value_copies_values_that_are_not_plain_json_exactly(value: Any) -> None:
    copied = copy_value(value)
    assert_same_structure(copied, value)
    assert_independent(copied, value)


def test_copy_value_keeps_a_dataclass_a_dataclass_and_independent() -> None:
    original = Cart(["apple"], 1.0)
    copied = copy_value(original)
    assert type(copied) is Cart
    assert copied == original
    copied.items.append("pear")
    assert original.items == ["apple"]


def test_copy_value_of_a_set_is_an_independent_set() -> None:
    original = {1, 2}
    copied = copy_value(original)
    assert copied == original
    assert type(copied) is set
    copied.add(3)
    assert original == {1, 2}


def test_copy_value_of_a_list_of_tuples_keeps_the_tuples() -> None:
    copied = copy_value([(1, 2)])
    assert copied == [(1, 2)]
    assert type(copied[0]) is tuple


def test_copy_value_of_a_dataclass_inside_a_list_keeps_the_dataclass() -> None:
    original = [Cart(["apple"])]
    copied = copy_value(original)
    assert type(copied[0]) is Cart
    copied[0].items.append("pear")
    assert original[0].items == ["apple"]


def test_copy_value_keeps_int_keys_as_ints() -> None:
    copied = copy_value({1: "one"})
    assert copied == {1: "one"}
    assert list(copied) == [1]


def test_copy_value_copies_a_self_referencing_list() -> None:
    original: list[Any] = [1]
    original.append(original)
    copied = copy_value(original)
    assert copied is not original
    assert copied[1] is copied


@pytest.mark.parametrize(
    "value",
    [
        pytest.param([OrderedDict(a=1)], id="ordered-dict-in-list"),
        pytest.param({"by_user": defaultdict(list)}, id="defaultdict-in-dict"),
        pytest.param([Counter(a=2)], id="counter-in-list"),
        pytest.param([Mode.FAST], id="str-enum-in-list"),
        pytest.param({"level": Level.LOW}, id="int-enum-in-dict"),
    ],
)
def test_copy_value_keeps_nested_subclasses_of_json_types(value: Any) -> None:
    assert_same_structure(copy_value(value), value)


# -- State -------------------------------------------------------------------


def test_state_without_arguments_starts_sessions_at_none() -> None:
    assert State().initial() is None


def test_state_initial_gives_an_equal_fresh_copy_of_the_default_per_call() -> None:
    default = {"items": [], "n": 0}
    slot = State(default)
    first, second = slot.initial(), slot.initial()
    assert first == second == default
    assert first is not default
    assert second is not first
    first["items"].append("x")
    assert default == {"items": [], "n": 0}
    assert second == {"items": [], "n": 0}
    assert slot.initial() == {"items": [], "n": 0}


def test_state_initial_copies_a_non_json_default_exactly() -> None:
    slot = State(default=Cart())
    value = slot.initial()
    assert type(value) is Cart
    assert value is not slot.default
    value.items.append("x")
    assert slot.initial().items == []


def test_state_factory_is_called_for_every_initial_value() -> None:
    calls = []

    def make_cart() -> Cart:
        calls.append(1)
        return Cart()

    slot = State(factory=make_cart)
    assert calls == []
    first, second = slot.initial(), slot.initial()
    assert len(calls) == 2
    assert first is not second
    assert type(first) is Cart


def test_state_factory_value_is_returned_as_produced() -> None:
    produced = ["made"]
    assert State(factory=lambda: produced).initial() is produced


@pytest.mark.parametrize("default", [0, "", [], {}, False])
def test_state_refuses_a_default_and_a_factory_together(default: Any) -> None:
    with pytest.raises(TypeError, match="not both"):
        State(default, factory=list)


def test_state_keys_are_unique_per_slot() -> None:
    slots = [State() for _ in range(5)]
    assert len({slot.key for slot in slots}) == 5


def test_state_keeps_its_options() -> None:
    slot = State([1], snapshot=False, name="cart")
    assert slot.default == [1]
    assert slot.factory is None
    assert slot.snapshot is False
    assert slot.name == "cart"


def test_state_snapshots_by_default() -> None:
    assert State().snapshot is True


def test_state_repr_uses_the_name_or_the_key() -> None:
    assert repr(State(3, name="counter")) == "State(counter, default=3)"
    unnamed = State()
    assert repr(unnamed) == f"State({unnamed.key}, default=None)"


def test_missing_sentinel_reads_as_missing() -> None:
    assert repr(MISSING) == "MISSING"


# -- state_size (the per-session state budget) ---------------------------------


class _Slotted:
    __slots__ = ("items",)

    def __init__(self, items: list[str]) -> None:
        self.items = items


class _Plain:
    def __init__(self, items: list[str]) -> None:
        self.items = items


def test_state_size_is_the_json_length_of_plain_values() -> None:
    value = {"history": [["hi", "hello"]], "n": 3}
    assert state_size(value) == len(b'{"history":[["hi","hello"]],"n":3}')
    assert state_size("x" * 1000) == 1000


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"x" * 1000}, id="set"),
        pytest.param(("x" * 1000,), id="tuple"),
        pytest.param([b"x" * 1000], id="bytes"),
        pytest.param(_Slotted(["x" * 1000]), id="slots"),
        pytest.param(_Plain(["x" * 1000]), id="object"),
        pytest.param({1: "x" * 1000}, id="int-keys"),
    ],
)
def test_state_size_measures_what_json_cannot_hold_by_what_it_holds(value: Any) -> None:
    size = state_size(value)
    assert size is not None and 1000 <= size < 1100


def test_state_size_of_a_cycle_is_unknown() -> None:
    loop: list[Any] = []
    loop.append(loop)
    assert state_size(loop) is None


def test_copy_value_of_a_journaled_value_is_a_plain_independent_copy() -> None:
    from tether.app.journal import Journal, adopt

    tracked = adopt({"h": [["a", "b"]], "n": 1.5}, Journal())
    copied = copy_value(tracked)
    assert copied == tracked and type(copied) is dict and type(copied["h"][0]) is list
    tracked["h"][0].append("c")
    assert copied == {"h": [["a", "b"]], "n": 1.5}
    assert state_size(tracked) == len(b'{"h":[["a","b","c"]],"n":1.5}')


def test_a_state_can_be_declared_copied_instead_of_journaled() -> None:
    assert State(default=[], snapshot="copy").snapshot == "copy"
