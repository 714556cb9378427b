"""The store contract, run against the memory backend and a real redis-server.

Every test here runs twice (``[memory]`` and ``[redis]``, see ``open_backend``
in conftest.py), and the last ones compare the two backends directly: what a
function sees of the store does not depend on where the store lives.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import pytest

from tests.redis_server import RedisServer
from tests.store.helpers import OpenBackend, bounded
from tether.store import MemoryBackend, Store, StoreError
from tether.store.checks import INT64_MAX, INT64_MIN
from tether.store.redis_backend import RedisBackend

# -- values -------------------------------------------------------------------


async def test_get_of_a_missing_key_returns_the_default(store: Store) -> None:
    assert await store.get("nothing") is None
    assert await store.get("nothing", 42) == 42


@pytest.mark.parametrize(
    "value",
    [
        0,
        -7,
        2**63 - 1,
        1.5,
        -0.25,
        "text",
        "ünïcødé ✓",
        True,
        False,
        None,
        [1, [2, "x"]],
        {"a": {"b": [1.0]}},
    ],
    ids=repr,
)
async def test_a_set_value_reads_back_equal_with_the_same_types(store: Store, value: Any) -> None:
    await store.set("k", value)
    back = await store.get("k", "default")
    assert back == value
    assert type(back) is type(value)


async def test_a_stored_null_is_returned_rather_than_the_default(store: Store) -> None:
    await store.set("k", None)
    assert await store.get("k", "default") is None


async def test_a_value_read_back_is_the_callers_own_copy(store: Store) -> None:
    original = {"items": [1, 2]}
    await store.set("k", original)
    original["items"].append(3)
    first = await store.get("k")
    first["items"].append(99)
    assert await store.get("k") == {"items": [1, 2]}


async def test_a_tuple_is_stored_as_json_and_reads_back_as_a_list(store: Store) -> None:
    await store.set("k", (1, "a"))
    assert await store.get("k") == [1, "a"]


async def test_set_refuses_a_value_that_is_not_json(store: Store) -> None:
    with pytest.raises(StoreError, match="JSON"):
        await store.set("k", {1, 2})
    with pytest.raises(StoreError, match="JSON"):
        await store.set("k", object())
    assert await store.get("k") is None


async def test_set_replaces_the_previous_value(store: Store) -> None:
    await store.set("k", [1])
    await store.set("k", "now a string")
    assert await store.get("k") == "now a string"


async def test_delete_reports_whether_the_key_existed(store: Store) -> None:
    assert await store.delete("k") is False
    await store.set("k", 1)
    assert await store.delete("k") is True
    assert await store.get("k") is None
    assert await store.delete("k") is False


async def test_a_value_a_list_and_a_board_may_share_one_name_and_delete_removes_all(
    store: Store,
) -> None:
    await store.set("same", {"v": 1})
    await store.list_append("same", "item")
    await store.lb_add("same", "ann", 3)
    assert await store.get("same") == {"v": 1}
    assert await store.list_range("same") == ["item"]
    assert await store.lb_top("same", 5) == [("ann", 3.0)]
    assert await store.delete("same") is True
    assert await store.get("same") is None
    assert await store.list_range("same") == []
    assert await store.lb_top("same", 5) == []


async def test_delete_of_only_a_list_or_only_a_board_reports_it_existed(store: Store) -> None:
    await store.list_append("l", 1)
    await store.lb_add("b", "m", 1)
    assert await store.delete("l") is True
    assert await store.delete("b") is True


# -- incr ---------------------------------------------------------------------


async def test_incr_starts_from_zero_and_keeps_integers_integers(store: Store) -> None:
    assert await store.incr("n") == 1
    assert await store.incr("n", 41) == 42
    assert await store.incr("n", -50) == -8
    value = await store.get("n")
    assert value == -8 and type(value) is int


async def test_incr_with_a_float_makes_a_float_even_when_the_sum_is_whole(store: Store) -> None:
    result = await store.incr("f", 1.5)
    assert result == 1.5 and type(result) is float
    result = await store.incr("f", 1.5)
    assert result == 3.0 and type(result) is float
    back = await store.get("f")
    assert back == 3.0 and type(back) is float


async def test_incr_of_a_float_by_an_int_stays_a_float(store: Store) -> None:
    await store.set("f", 2.0)
    result = await store.incr("f", 1)
    assert result == 3.0 and type(result) is float


async def test_incr_of_an_int_by_a_float_becomes_a_float(store: Store) -> None:
    await store.set("n", 2)
    result = await store.incr("n", 0.5)
    assert result == 2.5 and type(result) is float


async def test_incr_adds_floats_with_double_precision_like_python(store: Store) -> None:
    await store.set("f", 0.1)
    assert await store.incr("f", 0.2) == 0.1 + 0.2
    await store.set("g", 1.0)
    assert await store.incr("g", 1e-20) == 1.0 + 1e-20
    await store.set("h", 1e300)
    assert await store.incr("h", 1e300) == 2e300
    assert await store.get("h") == 2e300


async def test_incr_keeps_large_integers_exact_beyond_float_precision(store: Store) -> None:
    big = 2**53 + 1
    await store.set("n", big)
    assert await store.incr("n", 2**60) == big + 2**60
    assert await store.get("n") == big + 2**60
    assert await store.incr("m", INT64_MAX) == INT64_MAX


async def test_incr_refuses_to_leave_the_64_bit_integer_range(store: Store) -> None:
    await store.set("n", INT64_MAX)
    with pytest.raises(StoreError, match="out of range"):
        await store.incr("n")
    assert await store.get("n") == INT64_MAX
    await store.set("m", INT64_MIN)
    with pytest.raises(StoreError, match="out of range"):
        await store.incr("m", -1)
    assert await store.incr("m", 1) == INT64_MIN + 1


async def test_incr_refuses_to_make_an_infinite_float(store: Store) -> None:
    await store.set("f", 1.7e308)
    with pytest.raises(StoreError, match="out of range"):
        await store.incr("f", 1.7e308)
    assert await store.get("f") == 1.7e308
    with pytest.raises(StoreError, match="out of range"):
        await store.incr("g", math.inf)


@pytest.mark.parametrize("value", ["12", [1], {"n": 1}, True, None], ids=repr)
async def test_incr_of_a_value_that_is_not_a_number_is_a_store_error(
    store: Store, value: Any
) -> None:
    await store.set("k", value)
    with pytest.raises(StoreError, match=r"incr: the value at 'k' is not a number"):
        await store.incr("k")
    with pytest.raises(StoreError, match=r"incr: the value at 'k' is not a number"):
        await store.incr("k", 0.5)
    assert await store.get("k") == value


@pytest.mark.parametrize("by", ["1", True, None, [1]], ids=repr)
async def test_incr_by_something_that_is_not_a_number_is_a_store_error(
    store: Store, by: Any
) -> None:
    with pytest.raises(StoreError, match="'by' must be an int or a float"):
        await store.incr("k", by)
    assert await store.get("k") is None


async def test_concurrent_incr_from_several_clients_is_exact(open_backend: OpenBackend) -> None:
    clients = [Store(open_backend()) for _ in range(3)]

    async def bump(store: Store) -> None:
        for _ in range(40):
            await store.incr("hits")
            await store.incr("total", 0.5)

    await bounded(asyncio.gather(*(bump(s) for s in clients for _ in range(10))))
    assert await clients[0].get("hits") == 3 * 10 * 40
    assert await clients[0].get("total") == 3 * 10 * 40 * 0.5


# -- update -------------------------------------------------------------------


async def test_update_stores_and_returns_fn_of_the_current_value(store: Store) -> None:
    assert await store.update("n", lambda v: v + 1, default=10) == 11
    assert await store.update("n", lambda v: v * 2) == 22
    assert await store.get("n") == 22


async def test_update_of_a_missing_key_passes_none_without_a_default(store: Store) -> None:
    seen: list[Any] = []

    def fn(value: Any) -> str:
        seen.append(value)
        return "set"

    assert await store.update("k", fn) == "set"
    assert seen == [None]


async def test_update_gives_fn_a_copy_it_may_mutate(store: Store) -> None:
    await store.set("cart", {"items": ["a"]})

    def add(cart: dict[str, list[str]]) -> dict[str, list[str]]:
        cart["items"].append("b")
        return cart

    assert await store.update("cart", add) == {"items": ["a", "b"]}
    assert await store.get("cart") == {"items": ["a", "b"]}


async def test_an_exception_in_fn_propagates_and_leaves_the_value_unchanged(store: Store) -> None:
    await store.set("k", 1)

    def boom(value: Any) -> Any:
        raise ValueError("no thanks")

    with pytest.raises(ValueError, match="no thanks"):
        await store.update("k", boom)
    assert await store.get("k") == 1
    assert await store.update("k", lambda v: v + 1) == 2


async def test_update_refuses_a_result_that_is_not_json(store: Store) -> None:
    await store.set("k", 1)
    with pytest.raises(StoreError, match="JSON"):
        await store.update("k", lambda v: {v})
    assert await store.get("k") == 1


async def test_concurrent_updates_from_several_clients_lose_nothing(
    open_backend: OpenBackend,
) -> None:
    clients = [Store(open_backend()) for _ in range(3)]

    def record(tag: str) -> Callable[[Any], Any]:
        def fn(value: dict[str, Any]) -> dict[str, Any]:
            value["count"] += 1
            value["tags"].append(tag)
            return value

        return fn

    async def writer(store: Store, name: str) -> None:
        for i in range(6):
            await store.update("doc", record(f"{name}-{i}"), default={"count": 0, "tags": []})

    writers = [writer(s, f"c{c}w{w}") for c, s in enumerate(clients) for w in range(12)]
    await bounded(asyncio.gather(*writers))
    doc = await clients[0].get("doc")
    assert doc["count"] == 3 * 12 * 6
    expected = {f"c{c}w{w}-{i}" for c in range(3) for w in range(12) for i in range(6)}
    assert sorted(doc["tags"]) == sorted(expected)


# -- lists --------------------------------------------------------------------


async def test_list_append_returns_the_new_length_and_keeps_order(store: Store) -> None:
    assert await store.list_append("log", "a") == 1
    assert await store.list_append("log", {"b": 2}) == 2
    assert await store.list_append("log", [3]) == 3
    assert await store.list_range("log") == ["a", {"b": 2}, [3]]


async def test_list_range_of_a_missing_list_is_empty(store: Store) -> None:
    assert await store.list_range("none") == []
    assert await store.list_range("none", 2, 5) == []


async def test_list_append_with_maxlen_keeps_only_the_newest_items(store: Store) -> None:
    for i in range(10):
        length = await store.list_append("recent", i, maxlen=3)
        assert length == min(i + 1, 3)
    assert await store.list_range("recent") == [7, 8, 9]


async def test_a_smaller_maxlen_trims_a_longer_list_at_once(store: Store) -> None:
    for i in range(6):
        await store.list_append("l", i)
    assert await store.list_append("l", 6, maxlen=2) == 2
    assert await store.list_range("l") == [5, 6]


@pytest.mark.parametrize(
    ("start", "stop", "expected"),
    [
        (0, -1, "abcde"),
        (1, 2, "bc"),
        (0, 0, "a"),
        (-1, -1, "e"),
        (-2, -1, "de"),
        (-100, 100, "abcde"),
        (2, -3, "c"),
        (3, 1, ""),
        (5, 10, ""),
        (-10, -6, ""),
        (-10, -5, "a"),
        (0, -7, ""),
        (-7, -6, ""),
        (4, 100, "e"),
    ],
)
async def test_list_range_follows_redis_lrange_inclusive_and_negative_indices(
    store: Store, start: int, stop: int, expected: str
) -> None:
    for letter in "abcde":
        await store.list_append("l", letter)
    assert "".join(await store.list_range("l", start, stop)) == expected


@pytest.mark.parametrize("maxlen", [0, -1, True, 1.5, "3"], ids=repr)
async def test_list_append_refuses_a_maxlen_below_one_or_not_an_int(
    store: Store, maxlen: Any
) -> None:
    with pytest.raises(StoreError, match="maxlen must be an int >= 1"):
        await store.list_append("l", "x", maxlen=maxlen)
    assert await store.list_range("l") == []


async def test_list_range_refuses_indices_that_are_not_ints(store: Store) -> None:
    with pytest.raises(StoreError, match="must be ints"):
        await store.list_range("l", 0, 1.5)  # type: ignore[arg-type]


async def test_list_append_refuses_a_value_that_is_not_json(store: Store) -> None:
    with pytest.raises(StoreError, match="JSON"):
        await store.list_append("l", {1})
    assert await store.list_range("l") == []


async def test_concurrent_appends_from_several_clients_keep_every_item(
    open_backend: OpenBackend,
) -> None:
    clients = [Store(open_backend()) for _ in range(3)]

    async def append(store: Store, name: str) -> None:
        for i in range(20):
            await store.list_append("chat", f"{name}-{i}", maxlen=10_000)

    await bounded(
        asyncio.gather(*(append(s, f"{c}{w}") for c, s in enumerate(clients) for w in range(5)))
    )
    items = await clients[0].list_range("chat")
    assert len(items) == 3 * 5 * 20
    for c in range(3):
        for w in range(5):
            mine = [item for item in items if item.startswith(f"{c}{w}-")]
            assert mine == [f"{c}{w}-{i}" for i in range(20)]


# -- leaderboards -------------------------------------------------------------


async def test_lb_top_lists_the_best_first_with_float_scores(store: Store) -> None:
    await store.lb_add("b", "ann", 10)
    await store.lb_add("b", "bob", 30)
    await store.lb_add("b", "cid", 20.5)
    top = await store.lb_top("b", 2)
    assert top == [("bob", 30.0), ("cid", 20.5)]
    assert all(type(member) is str and type(score) is float for member, score in top)
    assert await store.lb_top("b", 10) == [("bob", 30.0), ("cid", 20.5), ("ann", 10.0)]


async def test_lb_top_of_zero_or_of_a_missing_board_is_empty(store: Store) -> None:
    await store.lb_add("b", "ann", 1)
    assert await store.lb_top("b", 0) == []
    assert await store.lb_top("none", 3) == []


async def test_lb_add_replaces_a_members_score(store: Store) -> None:
    await store.lb_add("b", "ann", 10)
    await store.lb_add("b", "ann", 5)
    assert await store.lb_score("b", "ann") == 5.0
    assert await store.lb_top("b", 5) == [("ann", 5.0)]


async def test_equal_scores_rank_the_greater_member_first_as_redis_zrevrange_does(
    store: Store,
) -> None:
    for member in ["bea", "al", "cy", "Zed", "éva"]:
        await store.lb_add("b", member, 7)
    await store.lb_add("b", "top", 8)
    expected = ["top", "éva", "cy", "bea", "al", "Zed"]
    assert [m for m, _ in await store.lb_top("b", 10)] == expected
    for rank, member in enumerate(expected):
        assert await store.lb_rank("b", member) == rank


async def test_lb_add_with_keep_drops_the_worst_members(store: Store) -> None:
    for i, member in enumerate(["a", "b", "c", "d", "e"]):
        await store.lb_add("b", member, i, keep=3)
    assert await store.lb_top("b", 10) == [("e", 4.0), ("d", 3.0), ("c", 2.0)]
    await store.lb_add("b", "low", -1, keep=3)
    assert await store.lb_score("b", "low") is None
    assert await store.lb_top("b", 10) == [("e", 4.0), ("d", 3.0), ("c", 2.0)]


async def test_keep_breaks_a_tie_at_the_cutoff_by_dropping_the_smaller_member(
    store: Store,
) -> None:
    await store.lb_add("b", "best", 9)
    await store.lb_add("b", "mid", 5)
    await store.lb_add("b", "also", 5, keep=2)
    assert await store.lb_top("b", 10) == [("best", 9.0), ("mid", 5.0)]


async def test_keep_larger_than_the_board_removes_nothing(store: Store) -> None:
    await store.lb_add("b", "a", 1)
    await store.lb_add("b", "b", 2, keep=10)
    assert await store.lb_top("b", 10) == [("b", 2.0), ("a", 1.0)]


async def test_lb_incr_starts_from_zero_and_returns_the_new_score(store: Store) -> None:
    score = await store.lb_incr("b", "ann")
    assert score == 1.0 and type(score) is float
    assert await store.lb_incr("b", "ann", 2.5) == 3.5
    assert await store.lb_incr("b", "ann", -10) == -6.5
    assert await store.lb_score("b", "ann") == -6.5


async def test_lb_rank_and_lb_score_of_a_missing_member_are_none(store: Store) -> None:
    assert await store.lb_rank("b", "ghost") is None
    assert await store.lb_score("b", "ghost") is None
    await store.lb_add("b", "ann", 1)
    assert await store.lb_rank("b", "ghost") is None
    assert await store.lb_rank("b", "ann") == 0


async def test_leaderboard_scores_are_finite(store: Store) -> None:
    # No JSON encoder takes an infinite score back (see tests/store/test_poison.py).
    for score in (math.inf, -math.inf):
        with pytest.raises(StoreError, match="must be finite"):
            await store.lb_add("b", "up", score)
    assert await store.lb_top("b", 3) == []


async def test_lb_incr_that_would_overflow_is_a_store_error(store: Store) -> None:
    await store.lb_add("b", "x", 1.5e308)
    with pytest.raises(StoreError, match="would not be a number"):
        await store.lb_incr("b", "x", 1.5e308)
    assert await store.lb_score("b", "x") == 1.5e308


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.lb_add("b", 5, 1), "members must be str"),
        (lambda s: s.lb_add("b", "m", "1"), "score must be an int or float"),
        (lambda s: s.lb_add("b", "m", math.nan), "not NaN"),
        (lambda s: s.lb_add("b", "m", True), "score must be an int or float"),
        (lambda s: s.lb_add("b", "m", 1, keep=0), "keep must be an int >= 1"),
        (lambda s: s.lb_incr("b", "m", "2"), "by must be an int or float"),
        (lambda s: s.lb_incr("b", "m", math.nan), "not NaN"),
        (lambda s: s.lb_top("b", -1), "n must be an int >= 0"),
        (lambda s: s.lb_rank("b", None), "members must be str"),
        (lambda s: s.lb_score("b", b"m"), "members must be str"),
    ],
    ids=[
        "member-int",
        "score-str",
        "score-nan",
        "score-bool",
        "keep-0",
        "incr-by-str",
        "incr-by-nan",
        "top-negative",
        "rank-none",
        "score-bytes",
    ],
)
async def test_leaderboard_misuse_is_a_store_error_that_changes_nothing(
    store: Store, call: Callable[[Store], Any], message: str
) -> None:
    await store.lb_add("b", "m", 3)
    with pytest.raises(StoreError, match=message):
        await call(store)
    assert await store.lb_top("b", 10) == [("m", 3.0)]


async def test_concurrent_lb_incr_from_several_clients_is_exact(
    open_backend: OpenBackend,
) -> None:
    clients = [Store(open_backend()) for _ in range(3)]

    async def vote(store: Store, member: str) -> None:
        for _ in range(30):
            await store.lb_incr("votes", member)

    await bounded(asyncio.gather(*(vote(s, m) for s in clients for m in ("x", "y", "x"))))
    assert await clients[1].lb_top("votes", 2) == [("x", 180.0), ("y", 90.0)]


# -- both backends side by side ---------------------------------------------


async def test_memory_and_redis_agree_on_every_list_range_window(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    memory = MemoryBackend()
    backend = RedisBackend(redis_server.url, redis_namespace)
    try:
        for item in range(4):
            await memory.list_append("l", item)
            await backend.list_append("l", item)
        for start in range(-6, 7):
            for stop in range(-6, 7):
                mine = await memory.list_range("l", start, stop)
                assert mine == await backend.list_range("l", start, stop), (start, stop)
    finally:
        await backend.close()


async def test_memory_and_redis_agree_on_order_rank_and_keep_with_many_ties(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    memory = MemoryBackend()
    backend = RedisBackend(redis_server.url, redis_namespace)
    members = ["b", "a", "B", "ab", "aa", "z", "é", "ä", "日本", "", "a b"]
    try:
        for i, member in enumerate(members):
            for b in (memory, backend):
                await b.lb_add("board", member, i % 3)
                await b.lb_add("kept", member, i % 4, keep=5)
        for name in ("board", "kept"):
            top = await memory.lb_top(name, 20)
            assert top == await backend.lb_top(name, 20)
            for member in members:
                assert await memory.lb_rank(name, member) == await backend.lb_rank(name, member)
    finally:
        await backend.close()
