"""The store contract, run against the memory backend and a real redis-server.

Every test taking ``store`` or ``open_backend`` runs twice (``[memory]`` and
``[redis]``); the Redis-only tests at the end cover namespaces, key layout,
optimistic-update retries and what happens when redis-server dies.
"""

from __future__ import annotations

import asyncio
import math
import socket
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from tests.redis_server import RedisServer
from tether.redis_store import RedisBackend
from tether.store import (
    INT64_MAX,
    INT64_MIN,
    MemoryBackend,
    Store,
    StoreBackend,
    StoreError,
    StoreUnavailable,
    backend_from_url,
)

# A hang guard, never a performance threshold: every await below is bounded.
BOUND = 30.0

OpenBackend = Callable[..., StoreBackend]


@pytest.fixture(params=["memory", "redis"])
async def open_backend(request: pytest.FixtureRequest) -> AsyncIterator[OpenBackend]:
    """``open_backend()`` gives one more client of the same store.

    For memory that is the one backend (a process has one store); for Redis
    it is a new ``RedisBackend`` (its own connection pool) on the test's
    namespace, like another tether process would have.
    """
    if request.param == "memory":
        shared = MemoryBackend()
        yield lambda **_: shared
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    namespace: str = request.getfixturevalue("redis_namespace")
    opened: list[RedisBackend] = []

    def open_redis(**options: Any) -> StoreBackend:
        backend = RedisBackend(server.url, namespace, **options)
        opened.append(backend)
        return backend

    yield open_redis
    for backend in opened:
        await backend.close()


@pytest.fixture
def store(open_backend: OpenBackend) -> Store:
    return Store(open_backend())


def bounded(coro: Any) -> Any:
    return asyncio.wait_for(coro, BOUND)


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


async def test_leaderboard_scores_may_be_infinite(store: Store) -> None:
    await store.lb_add("b", "up", math.inf)
    await store.lb_add("b", "down", -math.inf)
    await store.lb_add("b", "mid", 0)
    assert await store.lb_top("b", 3) == [("up", math.inf), ("mid", 0.0), ("down", -math.inf)]


async def test_lb_incr_that_would_make_nan_is_a_store_error(store: Store) -> None:
    await store.lb_add("b", "x", math.inf)
    with pytest.raises(StoreError, match="would not be a number"):
        await store.lb_incr("b", "x", -math.inf)
    assert await store.lb_score("b", "x") == math.inf


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


# -- store.sync ---------------------------------------------------------------


async def test_store_sync_from_a_thread_pool_is_exact(store: Store) -> None:
    loop = asyncio.get_running_loop()
    store.bind(loop)

    def work(worker: int) -> int:
        for i in range(20):
            store.sync.incr("n")
            store.sync.update("seen", lambda v, w=worker, i=i: [*v, f"{w}-{i}"], [])
            store.sync.lb_incr("b", f"w{worker}")
        result: int = store.sync.get("n")
        return result

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = await bounded(
            asyncio.gather(*(loop.run_in_executor(pool, work, w) for w in range(6)))
        )
    assert max(results) == 6 * 20
    assert await store.get("n") == 6 * 20
    assert len(await store.get("seen")) == 6 * 20
    assert len(set(await store.get("seen"))) == 6 * 20
    assert await store.lb_top("b", 1) in ([(f"w{w}", 20.0)] for w in range(6))
    store.bind(None)


async def test_store_sync_raises_store_errors_in_the_calling_thread(store: Store) -> None:
    loop = asyncio.get_running_loop()
    store.bind(loop)
    await store.set("k", "text")

    def misuse() -> None:
        store.sync.incr("k")

    with pytest.raises(StoreError, match="not a number"):
        await bounded(loop.run_in_executor(None, misuse))
    store.bind(None)


async def test_store_sync_on_the_event_loop_is_refused_with_a_hint(store: Store) -> None:
    store.bind(asyncio.get_running_loop())
    with pytest.raises(StoreError, match="await store"):
        store.sync.get("k")
    store.bind(None)


def test_store_sync_without_a_running_server_is_refused() -> None:
    store = Store()
    with pytest.raises(StoreError, match="no server is running"):
        store.sync.get("k")


def test_store_sync_has_no_close_and_no_unknown_operations() -> None:
    store = Store()
    with pytest.raises(AttributeError):
        store.sync.close  # noqa: B018
    with pytest.raises(AttributeError):
        store.sync.nonsense  # noqa: B018


def test_store_sync_from_a_plain_thread_reaches_the_bound_loop() -> None:
    store = Store()
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    try:
        store.bind(loop)
        assert store.sync.incr("n", 5) == 5
        assert store.sync.get("n") == 5
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(BOUND)
        loop.close()


# -- backend_from_url ---------------------------------------------------------


def test_backend_from_url_gives_a_memory_backend_for_memory_urls() -> None:
    assert isinstance(backend_from_url("memory://"), MemoryBackend)


def test_backend_from_url_refuses_an_unknown_scheme_and_memory_options() -> None:
    with pytest.raises(StoreError, match="unknown store URL 'postgres://'"):
        backend_from_url("postgres://localhost/db")
    with pytest.raises(StoreError, match="takes no options"):
        backend_from_url("memory://", namespace="x")


async def test_backend_from_url_gives_a_working_redis_backend(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    backend = backend_from_url(redis_server.url, namespace=redis_namespace)
    assert isinstance(backend, RedisBackend)
    try:
        assert await backend.incr("n") == 1
    finally:
        await backend.close()


# -- Redis only ---------------------------------------------------------------


@pytest.fixture
def raw_redis(redis_server: RedisServer) -> Any:
    client = redis.Redis.from_url(redis_server.url, socket_timeout=BOUND)
    yield client
    client.close()


async def test_two_namespaces_on_one_redis_do_not_see_each_other(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    first = RedisBackend(redis_server.url, redis_namespace + "a")
    second = RedisBackend(redis_server.url, redis_namespace + "b")
    try:
        await first.set("k", "first")
        await first.list_append("l", 1)
        await first.lb_add("b", "m", 1)
        assert await second.get("k") is None
        assert await second.list_range("l") == []
        assert await second.lb_top("b", 5) == []
        assert await second.delete("k") is False
        await second.set("k", "second")
        assert await first.get("k") == "first"
    finally:
        await first.close()
        await second.close()


async def test_keys_live_under_the_namespace_with_one_prefix_per_kind(
    redis_server: RedisServer, redis_namespace: str, raw_redis: Any
) -> None:
    backend = RedisBackend(redis_server.url, redis_namespace)
    try:
        await backend.set("k", {"a": 1})
        await backend.list_append("k", "x")
        await backend.lb_add("k", "m", 2)
        assert sorted(raw_redis.keys(f"{redis_namespace}:*")) == [
            f"{redis_namespace}:lb:k".encode(),
            f"{redis_namespace}:list:k".encode(),
            f"{redis_namespace}:v:k".encode(),
        ]
        assert raw_redis.get(f"{redis_namespace}:v:k") == b'{"a":1}'
    finally:
        await backend.close()


async def test_floats_are_stored_in_their_shortest_exact_text(
    redis_server: RedisServer, redis_namespace: str, raw_redis: Any
) -> None:
    backend = RedisBackend(redis_server.url, redis_namespace)
    try:
        await backend.incr("a", 0.1)
        await backend.incr("a", 0.2)
        await backend.incr("b", 1.5)
        await backend.incr("b", 1.5)
        assert raw_redis.get(f"{redis_namespace}:v:a") == b"0.30000000000000004"
        assert raw_redis.get(f"{redis_namespace}:v:b") == b"3.0"
    finally:
        await backend.close()


async def test_a_key_of_another_redis_type_is_a_store_error(
    redis_server: RedisServer, redis_namespace: str, raw_redis: Any
) -> None:
    raw_redis.rpush(f"{redis_namespace}:v:k", "x")
    raw_redis.set(f"{redis_namespace}:lb:b", "x")
    backend = RedisBackend(redis_server.url, redis_namespace)
    try:
        for call in (
            backend.get("k"),
            backend.incr("k"),
            backend.update("k", lambda v: v),
            backend.lb_top("b", 3),
        ):
            with pytest.raises(StoreError, match="WRONGTYPE"):
                await call
    finally:
        await backend.close()


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


async def test_update_calls_fn_again_when_another_client_wrote_in_between(
    redis_server: RedisServer, redis_namespace: str, raw_redis: Any
) -> None:
    backend = RedisBackend(redis_server.url, redis_namespace)
    seen: list[Any] = []

    def fn(value: int) -> int:
        seen.append(value)
        if len(seen) == 1:
            raw_redis.set(f"{redis_namespace}:v:n", b"100")
        return value + 1

    try:
        await backend.set("n", 1)
        assert await bounded(backend.update("n", fn)) == 101
        assert seen == [1, 100]
        assert await backend.get("n") == 101
    finally:
        await backend.close()


async def test_concurrent_updates_through_one_backend_never_need_a_retry(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    backend = RedisBackend(redis_server.url, redis_namespace, update_retries=0)
    calls = 0

    def bump(value: int) -> int:
        nonlocal calls
        calls += 1
        return value + 1

    try:
        await bounded(asyncio.gather(*(backend.update("n", bump, 0) for _ in range(50))))
        assert await backend.get("n") == 50
        assert calls == 50
    finally:
        await backend.close()


async def test_update_gives_up_with_a_store_error_after_update_retries(
    redis_server: RedisServer, redis_namespace: str, raw_redis: Any
) -> None:
    backend = RedisBackend(redis_server.url, redis_namespace, update_retries=3)
    calls = 0

    def always_contended(value: int) -> int:
        nonlocal calls
        calls += 1
        raw_redis.incr(f"{redis_namespace}:v:n")
        return -1

    try:
        await backend.set("n", 0)
        with pytest.raises(StoreError, match="gave up after 4 attempts"):
            await bounded(backend.update("n", always_contended))
        assert calls == 4
        assert await backend.get("n") == 4
    finally:
        await backend.close()


async def test_a_pool_of_two_connections_serves_many_concurrent_operations(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    backend = RedisBackend(redis_server.url, redis_namespace, max_connections=2)
    try:
        await bounded(asyncio.gather(*(backend.incr("n") for _ in range(200))))
        await bounded(asyncio.gather(*(backend.update("u", lambda v: v + 1, 0) for _ in range(20))))
        assert await backend.get("n") == 200
        assert await backend.get("u") == 20
    finally:
        await backend.close()


def test_a_namespace_with_a_colon_or_a_bad_setting_is_refused() -> None:
    with pytest.raises(StoreError, match="namespace"):
        RedisBackend("redis://127.0.0.1:1/0", "a:b")
    with pytest.raises(StoreError, match="namespace"):
        RedisBackend("redis://127.0.0.1:1/0", "")
    with pytest.raises(StoreError, match="socket_timeout"):
        RedisBackend("redis://127.0.0.1:1/0", socket_timeout=0)
    with pytest.raises(StoreError, match="update_retries"):
        RedisBackend("redis://127.0.0.1:1/0", update_retries=-1)
    with pytest.raises(StoreError, match="cannot use the Redis URL"):
        RedisBackend("redis://127.0.0.1:notaport/0")


async def test_a_redis_nobody_listens_on_is_store_unavailable_without_the_password(
    redis_namespace: str,
) -> None:
    port = _closed_port()
    backend = RedisBackend(f"redis://:hunter2@127.0.0.1:{port}/0", redis_namespace)
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await bounded(backend.get("k"))
        message = str(caught.value)
        assert f"127.0.0.1:{port}" in message
        assert "hunter2" not in message
        assert isinstance(caught.value, StoreError)
    finally:
        await backend.close()


def _closed_port() -> int:
    """A loopback port nothing listens on (bound for a moment, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _every_operation(backend: RedisBackend) -> list[Callable[[], Any]]:
    return [
        lambda: backend.get("k"),
        lambda: backend.set("k", 1),
        lambda: backend.delete("k"),
        lambda: backend.incr("n"),
        lambda: backend.update("u", lambda v: v),
        lambda: backend.list_append("l", 1, maxlen=5),
        lambda: backend.list_range("l"),
        lambda: backend.lb_add("b", "m", 1, keep=3),
        lambda: backend.lb_incr("b", "m"),
        lambda: backend.lb_top("b", 3),
        lambda: backend.lb_rank("b", "m"),
        lambda: backend.lb_score("b", "m"),
    ]


async def test_a_killed_redis_makes_every_operation_unavailable_until_it_restarts(
    own_redis_server: RedisServer, redis_namespace: str
) -> None:
    backend = RedisBackend(own_redis_server.url, redis_namespace)
    try:
        # Warm the pool and the script cache, so stale connections are exercised.
        for op in _every_operation(backend):
            await bounded(op())
        assert await backend.incr("n") == 2

        own_redis_server.kill()
        for op in _every_operation(backend):
            with pytest.raises(StoreUnavailable, match="unavailable"):
                await bounded(op())

        own_redis_server.restart()
        # Nothing was persisted; the same backend reconnects and reloads its scripts.
        assert await bounded(backend.get("n")) is None
        assert await bounded(backend.incr("n", 5)) == 5
        assert await bounded(backend.list_append("l", "x", maxlen=2)) == 1
        await bounded(backend.lb_add("b", "m", 1, keep=1))
        assert await bounded(backend.lb_top("b", 5)) == [("m", 1.0)]
        assert await bounded(backend.update("u", lambda v: v + 1, 0)) == 1
    finally:
        await backend.close()


async def test_a_hung_redis_times_out_as_unavailable_and_recovers_when_it_resumes(
    own_redis_server: RedisServer, redis_namespace: str
) -> None:
    backend = RedisBackend(
        own_redis_server.url, redis_namespace, socket_timeout=0.5, socket_connect_timeout=0.5
    )
    try:
        await backend.set("k", "v")
        own_redis_server.pause()
        try:
            with pytest.raises(StoreUnavailable, match="Timeout"):
                await bounded(backend.get("k"))
            with pytest.raises(StoreUnavailable, match="Timeout"):
                await bounded(backend.update("k", lambda v: v))
        finally:
            own_redis_server.resume()
        assert await bounded(backend.get("k")) == "v"
    finally:
        await backend.close()


async def test_a_cleanly_stopped_redis_is_unavailable_and_the_backend_recovers(
    own_redis_server: RedisServer, redis_namespace: str
) -> None:
    backend = RedisBackend(own_redis_server.url, redis_namespace)
    try:
        await backend.set("k", 1)
        own_redis_server.stop()
        with pytest.raises(StoreUnavailable):
            await bounded(backend.incr("k"))
        own_redis_server.restart()
        assert await bounded(backend.incr("k")) == 1
    finally:
        await backend.close()
