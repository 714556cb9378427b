"""The journal behind rollback (app/journal.py, app/tracked.py): every mutation of a
tracked list or dict is undone exactly, nested ones too, at the cost of the change."""

from __future__ import annotations

import contextlib
import copy
import gc
import pickle
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tether.app.journal import (
    Journal,
    TrackedDict,
    TrackedList,
    Untrackable,
    adopt,
    detached,
    dissolve,
)


def tracked(value: Any) -> tuple[Any, Journal]:
    journal = Journal()
    return adopt(copy.deepcopy(value), journal), journal


BASE: dict[str, Any] = {
    "h": [[f"user {i}", f"bot {i}"] for i in range(6)],
    "d": {"a": 1, "b": [1, 2, {"x": [3, 4]}], "c": None},
    "n": 3,
}

MUTATIONS: dict[str, Callable[[Any], Any]] = {
    "append": lambda s: s["h"].append(["new", "pair"]),
    "extend": lambda s: s["h"].extend([["a", "b"], ["c", "d"]]),
    "insert": lambda s: s["h"].insert(2, ["in", "serted"]),
    "insert past the end": lambda s: s["h"].insert(99, ["x", "y"]),
    "insert negative": lambda s: s["h"].insert(-2, ["x", "y"]),
    "pop": lambda s: s["h"].pop(),
    "pop at": lambda s: s["h"].pop(1),
    "remove": lambda s: s["h"].remove(["user 3", "bot 3"]),
    "del item": lambda s: s["h"].__delitem__(-1),
    "del slice": lambda s: s["h"].__delitem__(slice(1, 4)),
    "slice assignment": lambda s: s["h"].__setitem__(slice(0, 2), [["z", "z"]] * 3),
    "item assignment": lambda s: s["h"].__setitem__(0, ["re", "placed"]),
    "sort": lambda s: s["h"].sort(key=lambda p: p[1], reverse=True),
    "reverse": lambda s: s["h"].reverse(),
    "clear list": lambda s: s["h"].clear(),
    "+=": lambda s: s["h"].__iadd__([["plus", "equal"]]),
    "*=": lambda s: s["h"].__imul__(2),
    "setdefault": lambda s: s.setdefault("new", []).append(1),
    "update": lambda s: s.update({"n": 4}, m=5),
    "|=": lambda s: s["d"].__ior__({"a": 2, "z": 0}),
    "popitem": lambda s: s.popitem(),
    "dict pop": lambda s: s.pop("h"),
    "dict del first": lambda s: s.__delitem__("h"),
    "dict set": lambda s: s.__setitem__("n", [1, 2]),
    "clear dict": lambda s: s.clear(),
    "nested at depth": lambda s: s["d"]["b"][2]["x"].append(5),
    "nested pair edit": lambda s: s["h"][0].__setitem__(1, "edited"),
    "nested dict": lambda s: s["d"].__setitem__("c", {"deep": [1]}),
    "alias inside": lambda s: s["h"].append(s["h"][0]),
    "move": lambda s: s["h"].insert(0, s["h"].pop()),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_a_rollback_undoes_every_kind_of_mutation_exactly(name: str) -> None:
    state, journal = tracked(BASE)
    before = orjson.dumps(state)
    journal.begin()
    MUTATIONS[name](state)
    assert state != BASE  # it did change
    journal.rollback()
    assert state == BASE
    assert orjson.dumps(state) == before  # dict order too


def test_a_rollback_undoes_a_sequence_of_mutations_newest_first() -> None:
    state, journal = tracked(BASE)
    journal.begin()
    for name in sorted(MUTATIONS):
        with contextlib.suppress(KeyError, IndexError, ValueError):
            MUTATIONS[name](state)  # (an earlier one may have removed what it needs)
    journal.rollback()
    assert orjson.dumps(state) == orjson.dumps(BASE)


def test_every_container_is_tracked_and_copies_of_it_are_plain() -> None:
    state, _ = tracked(BASE)
    assert type(state) is TrackedDict and type(state["h"]) is TrackedList
    assert type(state["h"][0]) is TrackedList and type(state["d"]["b"][2]) is TrackedDict
    for plain in (copy.deepcopy(state), pickle.loads(pickle.dumps(state)), detached(state)):
        assert plain == BASE and type(plain) is dict and type(plain["h"][0]) is list
    assert type(copy.copy(state["h"])) is list and type(state["h"].copy()) is list
    assert orjson.dumps(state) == orjson.dumps(BASE)
    assert isinstance(state["h"], list) and isinstance(state, dict)


def test_what_a_call_put_in_is_tracked_once_it_commits_even_if_changed_after() -> None:
    state, journal = tracked({"h": []})
    journal.begin()
    pair = ["hello"]
    state["h"].append(pair)
    pair.append("hi")  # a plain list, changed after it went in: kept as it is at commit
    grown, shrunk = journal.commit()
    assert state == {"h": [["hello", "hi"]]} and type(state["h"][0]) is TrackedList
    assert grown >= len(orjson.dumps(["hello", "hi"])) and shrunk == 0
    journal.begin()
    state["h"][0][1] = "changed"  # now journaled
    journal.rollback()
    assert state == {"h": [["hello", "hi"]]}


def test_the_sizes_a_call_reports_follow_the_json_size() -> None:
    state, journal = tracked(BASE)
    start = len(orjson.dumps(state))
    journal.begin()
    state["h"].append(["a" * 100, "b" * 100])
    state["d"].pop("b")
    grown, shrunk = journal.commit()
    assert abs(start + grown - shrunk - len(orjson.dumps(state))) <= 8


def test_a_commit_keeps_the_changes_and_a_later_rollback_only_undoes_its_own() -> None:
    state, journal = tracked({"h": [1]})
    journal.begin()
    state["h"].append(2)
    journal.commit()
    journal.begin()
    state["h"].append(3)
    journal.rollback()
    assert state == {"h": [1, 2]}


def test_mutations_between_calls_are_not_logged_but_are_kept() -> None:
    state, journal = tracked({"h": []})
    state["h"].append([1])  # (a hook, say: no call in progress)
    journal.begin()
    journal.rollback()
    assert state == {"h": [[1]]} and type(state["h"][0]) is TrackedList


def test_abandon_rolls_back_into_an_independent_copy() -> None:
    state, journal = tracked({"h": [[1]]})
    journal.begin()
    state["h"][0].append(2)
    copied = journal.abandon(state)
    assert copied == {"h": [[1]]} and copied is not state and copied["h"][0] is not state["h"][0]
    state["h"].append("the orphaned call goes on")  # no effect on the copy, not logged
    assert copied == {"h": [[1]]} and journal.undo is None


@pytest.mark.parametrize(
    "value", [{1, 2}, [b"bytes"], [object()], {"t": ([1],)}, [2**70], {(1, 2): 3}]
)
def test_values_that_are_not_json_cannot_be_journaled(value: Any) -> None:
    with pytest.raises(Untrackable):
        adopt(value, Journal())


def test_a_cycle_cannot_be_journaled() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(Untrackable):
        adopt(cycle, Journal())


def test_tuples_of_scalars_and_shared_parts_are_kept() -> None:
    shared = [1]
    state = adopt({"t": (1, ("a", None)), "a": shared, "b": shared}, Journal())
    assert state["t"] == (1, ("a", None)) and state["a"] is state["b"]


def test_putting_in_something_untrackable_breaks_the_journal_for_the_next_call() -> None:
    state, journal = tracked({"h": []})
    journal.begin()
    state["h"].append({1, 2})
    journal.commit()
    assert not journal.begin()


# -- what output deltas ask --------------------------------------------------------


def test_delta_since_is_the_lowest_index_changed() -> None:
    history, _ = tracked([["a", "b"], ["c", "d"], ["e", "f"]])
    clock = history.delta_clock()
    assert history.delta_since(clock) == 3  # nothing changed
    history.append(["g", "h"])
    assert history.delta_since(clock) == 3
    history[1][1] = "changed"  # a nested change places itself at its item
    assert history.delta_since(clock) == 1
    clock = history.delta_clock()
    history.sort()
    assert history.delta_since(clock) == 0


def test_delta_since_sees_a_fresh_pair_changing_while_a_reply_streams() -> None:
    history, journal = tracked([["a", "b"]])
    journal.begin()
    pair = ["hi", ""]
    history.append(pair)
    clock = history.delta_clock()
    pair[1] = "Hel"  # plain: unseen, so the encoder must resend it
    assert history.delta_since(clock) == 1


def test_delta_since_gives_up_when_it_cannot_know() -> None:
    history, _ = tracked([["a", "b"], ["c", "d"]])
    clock = history.delta_clock()
    history.append(history[0])  # the same pair twice: a change to it is in two places
    history[0][0] = "x"
    assert history.delta_since(clock) is None
    fresh, _ = tracked([[1]])
    old = fresh.delta_clock()
    for i in range(100):  # more mutations than the journal keeps
        fresh.append(i)
    assert fresh.delta_since(old) is None


def _cyclic_garbage_of(make: Callable[[], None]) -> list[Any]:
    """The tracked containers and journals that only the cyclic collector would free
    after ``make()`` built and dropped a value."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        make()
        gc.collect()
        return [o for o in gc.garbage if type(o) in (TrackedList, TrackedDict, Journal)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def _a_used_history(end: Callable[[Any], None]) -> Callable[[], None]:
    def make() -> None:
        history = adopt([], Journal())
        for turn in range(5):
            history._j.begin()
            history.append([f"hi {turn}", "hello"])
            history.append({"note": [turn]})
            history._j.commit()
        end(history)

    return make


def test_a_used_history_is_cyclic_garbage_until_dissolved():
    assert _cyclic_garbage_of(_a_used_history(lambda history: None))  # parents, journal


def test_a_dissolved_history_is_freed_by_reference_counting_alone():
    assert _cyclic_garbage_of(_a_used_history(dissolve)) == []


def test_dissolving_leaves_the_values_as_they_were():
    history = adopt([["a", "b"], {"k": [1, 2]}], Journal())
    dissolve(history)
    assert history == [["a", "b"], {"k": [1, 2]}]
    assert history[1]["k"]._up is None and history[0]._up is None
    dissolve([1, 2])  # not tracked: nothing to do
