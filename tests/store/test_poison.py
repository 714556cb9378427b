"""Nothing that enters the store can make an encoding fail later (issue 12, item 1).

A score or a value that no encoder takes back would break every reader of its
key, on Redis for good. So what enters is checked where it enters
(``StoreError``, nothing changed), and what is stored always reads back as
something ``orjson`` encodes inside any protocol frame. Every test runs on the
memory backend and on a real redis-server (``open_backend``).
"""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest

from tether.app.journal import Journal, adopt
from tether.protocol import encode_event, encode_result
from tether.store import Store, StoreError, plain_number
from tether.store.checks import INT64_MAX, INT64_MIN, MAX_EXACT_INT, MAX_VALUE_DEPTH

# -- scores --------------------------------------------------------------------

# Whole numbers at and beyond 2**64 (and their negatives): on the old code each was
# stored and then made the board's top scores unencodable for everyone.
HUGE_SCORES = [1e20, 2**64 - 1, 2**64, 2**63, -1e20, -(2**64), 1e300, -1.7e308]


def _frames(scores: list[float]) -> None:
    shown = [plain_number(s) for s in scores]
    encode_result(1, [shown])
    encode_event("scores", shown)
    assert orjson.loads(orjson.dumps(shown)) == shown


@pytest.mark.parametrize("score", HUGE_SCORES, ids=repr)
async def test_a_huge_whole_score_reads_back_as_something_every_encoder_takes(
    store: Store, score: float
) -> None:
    await store.lb_add("b", "small", 5)
    top = await store.lb_add("b", "huge", score, keep=10, top=3)
    _frames([s for _, s in top])
    _frames([s for _, s in await store.lb_top("b", 3)])
    assert await store.lb_score("b", "huge") == float(score)
    assert plain_number(float(score)) == float(score)
    # Other members' scores keep showing as ints.
    assert plain_number((await store.lb_score("b", "small")) or 0) == 5
    assert type(plain_number(5.0)) is int


def test_plain_number_shows_ints_only_where_they_are_exact() -> None:
    assert plain_number(float(MAX_EXACT_INT)) == MAX_EXACT_INT
    assert type(plain_number(float(MAX_EXACT_INT))) is int
    assert type(plain_number(-float(MAX_EXACT_INT))) is int
    assert type(plain_number(float(MAX_EXACT_INT) * 2)) is float
    assert type(plain_number(1e20)) is float
    assert plain_number(2.5) == 2.5


UNFIT_SCORES = [math.inf, -math.inf, math.nan, 10**400, -(10**400)]


@pytest.mark.parametrize("score", UNFIT_SCORES, ids=lambda v: repr(v)[:12])
async def test_a_score_no_double_holds_is_refused_and_changes_nothing(
    store: Store, score: Any
) -> None:
    await store.lb_add("b", "m", 1)
    with pytest.raises(StoreError, match="lb_add: score"):
        await store.lb_add("b", "m", score, keep=10, top=3)
    with pytest.raises(StoreError, match="lb_add: score"):
        await store.lb_add("b", "other", score)
    with pytest.raises(StoreError, match="lb_incr: by"):
        await store.lb_incr("b", "m", score)
    assert await store.lb_top("b", 5) == [("m", 1.0)]


async def test_lb_incr_refuses_a_sum_that_overflows_to_infinity(store: Store) -> None:
    await store.lb_add("b", "m", -1.5e308)
    with pytest.raises(StoreError, match="would not be a number"):
        await store.lb_incr("b", "m", -1.5e308)
    assert await store.lb_score("b", "m") == -1.5e308
    # A finite sum still works, and is the same double on both backends.
    assert await store.lb_incr("b", "m", 0.1) == -1.5e308 + 0.1
    assert await store.lb_incr("b", "new", 2**60) == float(2**60)


# -- values --------------------------------------------------------------------


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


BAD_VALUES = [
    math.nan,
    math.inf,
    -math.inf,
    [1, {"a": math.nan}],
    {"deep": [[-math.inf]]},
    (1, math.inf),
    INT64_MAX + 1,
    INT64_MIN - 1,
    2**64 - 1,
    {"big": [2**64 - 1]},
    2**64,
    _nested(MAX_VALUE_DEPTH + 1),
    _nested(300),
]


BAD = r"store values|store integers"


@pytest.mark.parametrize("value", BAD_VALUES, ids=lambda v: repr(v)[:40])
async def test_a_value_no_encoder_takes_back_is_refused_and_changes_nothing(
    store: Store, value: Any
) -> None:
    await store.set("k", "before")
    await store.list_append("l", "before")
    with pytest.raises(StoreError, match=BAD):
        await store.set("k", value)
    with pytest.raises(StoreError, match=BAD):
        await store.update("k", lambda _: value)
    with pytest.raises(StoreError, match=BAD):
        await store.update("k", lambda _: value, topic="t")
    with pytest.raises(StoreError, match=BAD):
        await store.list_append("l", value, 10, topic="t")
    assert await store.get("k") == "before"
    assert await store.list_range("l") == ["before"]


GOOD_VALUES = [
    None,
    [None, "null", "nullnull"],
    "12345678901234567890123456789",
    {"12345678901234567890": "x"},
    INT64_MAX,
    INT64_MIN,
    [INT64_MAX, None, 1e300, -0.0],
    1.7976931348623157e308,
    _nested(MAX_VALUE_DEPTH),
]


@pytest.mark.parametrize("value", GOOD_VALUES, ids=lambda v: repr(v)[:40])
async def test_a_value_that_encodes_is_kept_and_reads_back_into_any_frame(
    store: Store, value: Any
) -> None:
    await store.set("k", value)
    back = await store.get("k")
    assert back == value
    await store.list_append("l", value)
    assert await store.list_range("l") == [back]
    # Read back, the value still fits inside the protocol's frames, and more.
    encode_result(1, [[back]])
    encode_event("topic", {"data": [back]})


@pytest.mark.parametrize("value", [[1, {"a": math.nan}], {"deep": [[-math.inf]]}], ids=repr)
async def test_a_sessions_journaled_state_is_checked_like_any_value(
    store: Store, value: Any
) -> None:
    # A function may store (part of) its session state, which is held as journaled
    # list and dict subclasses: their contents are checked all the same.
    journaled = adopt(value, Journal())
    assert type(journaled) is not type(value)
    with pytest.raises(StoreError, match=BAD):
        await store.set("k", journaled)
