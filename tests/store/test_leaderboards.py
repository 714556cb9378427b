"""More of the leaderboard contract, on the memory backend and a real redis-server.

Ordering and ties (non-ASCII members where code point order is not UTF-16's),
trims, ranks at the boundaries, ranks after ``lb_incr``, top-N beyond the
board. Every test runs as ``[memory]`` and ``[redis]`` (``open_backend``).
"""

from __future__ import annotations

from tests.store.helpers import OpenBackend
from tether.store import Store

# By code point (= UTF-8 bytes, Redis' memcmp): "" < "B" < "a" < "é" < "日本"
# < U+FF61 < U+FFFD < U+1F600. UTF-16 would put the emoji (a surrogate pair) before U+FF61.
BY_CODE_POINT = ["", "B", "a", "é", "日本", "\uff61", "\ufffd", "\U0001f600"]


async def test_equal_scores_order_members_by_code_point_descending(store: Store) -> None:
    for member in reversed(BY_CODE_POINT):
        await store.lb_add("b", member, 3)
    expected = list(reversed(BY_CODE_POINT))
    assert [m for m, _ in await store.lb_top("b", 20)] == expected
    for rank, member in enumerate(expected):
        assert await store.lb_rank("b", member) == rank


async def test_score_orders_before_member(store: Store) -> None:
    await store.lb_add("b", "\U0001f600", 1)
    await store.lb_add("b", "", 2)
    await store.lb_add("b", "a", 1.5)
    assert await store.lb_top("b", 5) == [("", 2.0), ("a", 1.5), ("\U0001f600", 1.0)]


async def test_keep_trims_by_the_same_order_including_non_ascii_ties(store: Store) -> None:
    for member in BY_CODE_POINT:
        await store.lb_add("b", member, 0)
    await store.lb_add("b", "high", 1, keep=3)
    assert [m for m, _ in await store.lb_top("b", 10)] == ["high", "\U0001f600", "\ufffd"]
    assert await store.lb_score("b", "\uff61") is None


async def test_keep_one_leaves_only_the_best(store: Store) -> None:
    await store.lb_add("b", "a", 5)
    await store.lb_add("b", "b", 7)
    assert await store.lb_add("b", "c", 6, keep=1, top=3) == [("b", 7.0)]
    assert await store.lb_rank("b", "c") is None


async def test_the_added_member_itself_can_be_trimmed(store: Store) -> None:
    await store.lb_add("b", "a", 5)
    await store.lb_add("b", "b", 7)
    assert await store.lb_add("b", "z", 1, keep=2, top=5) == [("b", 7.0), ("a", 5.0)]
    assert await store.lb_score("b", "z") is None


async def test_ranks_at_the_boundaries(store: Store) -> None:
    for i in range(50):
        await store.lb_add("b", f"m{i:02}", i)
    assert await store.lb_rank("b", "m49") == 0
    assert await store.lb_rank("b", "m48") == 1
    assert await store.lb_rank("b", "m01") == 48
    assert await store.lb_rank("b", "m00") == 49
    assert await store.lb_rank("b", "m50") is None
    assert await store.lb_rank("missing", "m00") is None


async def test_rank_follows_lb_incr(store: Store) -> None:
    for member, score in [("a", 10), ("b", 20), ("c", 30)]:
        await store.lb_add("b", member, score)
    assert await store.lb_rank("b", "a") == 2
    assert await store.lb_incr("b", "a", 15) == 25.0
    assert await store.lb_rank("b", "a") == 1
    assert await store.lb_incr("b", "a", 5) == 30.0
    assert await store.lb_rank("b", "a") == 1
    assert await store.lb_rank("b", "c") == 0
    await store.lb_incr("b", "a", -100)
    assert await store.lb_rank("b", "a") == 2
    assert await store.lb_incr("b", "new", 1) == 1.0
    assert await store.lb_rank("b", "new") == 2 and await store.lb_rank("b", "a") == 3


async def test_top_n_larger_than_the_board_gives_the_whole_board(store: Store) -> None:
    await store.lb_add("b", "a", 1)
    await store.lb_add("b", "b", 2)
    assert await store.lb_top("b", 1000) == [("b", 2.0), ("a", 1.0)]
    assert await store.lb_add("b", "c", 0, top=50) == [("b", 2.0), ("a", 1.0), ("c", 0.0)]


async def test_a_replaced_score_moves_the_member_and_keeps_one_entry(store: Store) -> None:
    for member, score in [("a", 1), ("b", 2), ("c", 3)]:
        await store.lb_add("b", member, score)
    await store.lb_add("b", "c", 0)
    assert await store.lb_top("b", 10) == [("b", 2.0), ("a", 1.0), ("c", 0.0)]
    await store.lb_add("b", "c", 0)
    assert await store.lb_top("b", 10) == [("b", 2.0), ("a", 1.0), ("c", 0.0)]


async def test_delete_empties_a_board_and_it_starts_again(open_backend: OpenBackend) -> None:
    backend = open_backend()
    await backend.lb_add("b", "a", 1)
    assert await backend.delete("b") is True
    assert await backend.lb_top("b", 5) == []
    assert await backend.lb_rank("b", "a") is None
    await backend.lb_add("b", "z", 3)
    assert await backend.lb_top("b", 5) == [("z", 3.0)]
