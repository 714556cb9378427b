"""``Board``, the memory backend's leaderboard, and the memory backend against a model.

The model is the plainest one: a dict of scores, sorted on every question.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tether.store import MemoryBackend
from tether.store.boards import Board

# Code point order (= UTF-8 byte order, Redis' order) differs from UTF-16's here:
# U+FF61 < U+FFFD < U+1F600 by code point; in UTF-16 the emoji (D83D DE00) sorts first.
TRICKY = ["", "a", "B", "é", "\uff61", "\ufffd", "\U0001f600", "日本"]


def model_order(scores: dict[str, float]) -> list[tuple[str, float]]:
    return sorted(scores.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)


def test_an_empty_board_has_no_members_ranks_or_scores() -> None:
    board = Board()
    assert len(board) == 0
    assert board.top(5) == []
    assert board.rank("x") is None and board.score("x") is None
    assert board.remove("x") is False
    board.keep(0)
    assert len(board) == 0


def test_top_is_score_descending_then_member_descending_by_code_point() -> None:
    board = Board()
    for member in TRICKY:
        board.set(member, 1.0)
    board.set("best", 2.0)
    expected = ["best", *sorted(TRICKY, reverse=True)]
    assert [m for m, _ in board.top(100)] == expected
    assert expected[1:4] == ["\U0001f600", "\ufffd", "\uff61"]
    assert [board.rank(m) for m in expected] == list(range(len(expected)))


def test_set_replaces_a_score_and_moves_the_member() -> None:
    board = Board()
    board.set("a", 1.0)
    board.set("b", 2.0)
    board.set("a", 3.0)
    assert board.top(2) == [("a", 3.0), ("b", 2.0)]
    assert len(board) == 2
    board.set("a", 3.0)
    assert len(board) == 2 and board.rank("a") == 0


def test_negative_zero_is_kept_as_given_and_ties_with_zero() -> None:
    board = Board()
    board.set("a", 0.0)
    board.set("a", -0.0)
    assert str(board.score("a")) == "-0.0"
    board.set("b", 0.0)
    assert [m for m, _ in board.top(2)] == ["b", "a"]


def test_incr_starts_from_zero_and_moves_the_member() -> None:
    board = Board()
    assert board.incr("a", 2.5) == 2.5
    board.set("b", 3.0)
    assert board.rank("a") == 1
    assert board.incr("a", 1.0) == 3.5
    assert board.rank("a") == 0 and board.rank("b") == 1


def test_remove_takes_the_member_out_of_every_answer() -> None:
    board = Board()
    for i, member in enumerate("abc"):
        board.set(member, float(i))
    assert board.remove("b") is True
    assert board.top(5) == [("c", 2.0), ("a", 0.0)]
    assert board.rank("b") is None and board.rank("a") == 1 and len(board) == 2


def test_keep_drops_the_worst_and_breaks_a_cutoff_tie_by_the_smaller_member() -> None:
    board = Board()
    for member, score in [("x", 5.0), ("y", 5.0), ("z", 9.0), ("w", 1.0)]:
        board.set(member, score)
    board.keep(2)
    assert board.top(5) == [("z", 9.0), ("y", 5.0)]
    assert board.score("x") is None and board.score("w") is None
    board.keep(10)
    assert len(board) == 2
    board.keep(0)
    assert len(board) == 0 and board.top(1) == []


def test_ranks_at_both_ends_of_a_large_board() -> None:
    board = Board()
    for i in range(1000):
        board.set(f"m{i:04}", float(i // 10))
    assert board.rank("m0999") == 0
    assert board.rank("m0990") == 9
    assert board.rank("m0000") == 999
    assert board.top(1) == [("m0999", 99.0)]
    assert board.top(2000)[-1] == ("m0000", 0.0)


members = st.sampled_from([*TRICKY, "ab", "aa", "b"])
scores = st.sampled_from([-2.0, -0.5, -0.0, 0.0, 1.0, 1.0, 2.5, 1e15])
keeps = st.none() | st.integers(1, 6)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), members, scores, keeps, st.integers(0, 8)),
        st.tuples(st.just("incr"), members, scores),
        st.tuples(st.just("rank"), members),
        st.tuples(st.just("score"), members),
        st.tuples(st.just("top"), st.integers(0, 15)),
        st.tuples(
            st.just("delete"),
        ),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_memory_backend_leaderboards_equal_a_sorted_list_model(steps: list[Any]) -> None:
    asyncio.run(_replay(steps))


async def _replay(steps: list[Any]) -> None:
    backend = MemoryBackend()
    model: dict[str, float] = {}
    for step in steps:
        kind = step[0]
        if kind == "add":
            _, member, score, keep, top = step
            model[member] = score
            if keep is not None:
                model = dict(model_order(model)[:keep])
            got = await backend.lb_add("b", member, score, keep, top=top)
            assert got == model_order(model)[:top]
        elif kind == "incr":
            _, member, by = step
            model[member] = model.get(member, 0.0) + by
            assert await backend.lb_incr("b", member, by) == model[member]
        elif kind == "rank":
            order = [m for m, _ in model_order(model)]
            want = order.index(step[1]) if step[1] in model else None
            assert await backend.lb_rank("b", step[1]) == want
        elif kind == "score":
            assert await backend.lb_score("b", step[1]) == model.get(step[1])
        elif kind == "top":
            assert await backend.lb_top("b", step[1]) == model_order(model)[: step[1]]
        else:
            await backend.delete("b")
            model = {}
    assert await backend.lb_top("b", 100) == model_order(model)
