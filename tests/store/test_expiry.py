"""TTLs, on both backends: ``set(..., ttl=)`` and ``expire`` (issue 13).

Every test runs on the memory backend and on a real redis-server. Expiry is
awaited by polling with a bound (``expired``), never by a wall-clock
threshold; whether a TTL was kept or cleared is told by a probe key given the
same TTL later: once the probe has expired, so would the key have.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.store.helpers import BOUND
from tether.store import Store, StoreError
from tether.store.bounds import MAX_TTL

TTL = 0.2


async def expired(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait (at most ``BOUND`` seconds) until ``check()`` is true."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + BOUND
    while not await check():
        assert loop.time() < give_up, "did not expire"
        await asyncio.sleep(0.02)


async def probe_expired(store: Store) -> None:
    """Set a probe key with ``TTL`` now and wait until it has expired."""
    await store.set("probe", 1, ttl=TTL)

    async def gone() -> bool:
        return await store.get("probe") is None

    await expired(gone)


async def test_a_value_set_with_a_ttl_expires(store: Store) -> None:
    await store.set("k", {"a": 1}, ttl=TTL)
    assert await store.get("k") == {"a": 1}

    async def gone() -> bool:
        return await store.get("k", "missing") == "missing"

    await expired(gone)
    assert await store.delete("k") is False


async def test_set_without_a_ttl_clears_the_ttl(store: Store) -> None:
    await store.set("k", 1, ttl=TTL)
    await store.set("k", 2)
    await probe_expired(store)
    assert await store.get("k") == 2


async def test_update_replaces_the_value_and_clears_its_ttl(store: Store) -> None:
    await store.set("k", 1, ttl=TTL)
    assert await store.update("k", lambda v: v + 1) == 2
    await probe_expired(store)
    assert await store.get("k") == 2


@pytest.mark.parametrize("by", [1, 0.5], ids=["int", "float"])
async def test_incr_keeps_the_ttl(store: Store, by: float) -> None:
    await store.set("k", 1, ttl=TTL)
    assert await store.incr("k", by) == 1 + by

    async def gone() -> bool:
        return await store.get("k") is None

    await expired(gone)
    assert await store.incr("k") == 1  # from nothing: no TTL any more
    await probe_expired(store)
    assert await store.get("k") == 1


async def test_expire_ends_the_value_the_list_and_the_board_of_a_name(store: Store) -> None:
    await store.set("room", "v")
    await store.list_append("room", "item")
    await store.lb_add("room", "ann", 3)
    assert await store.expire("room", TTL) is True
    # Changed in place, as Redis' RPUSH and ZADD: the TTL stays.
    await store.list_append("room", "more")
    await store.lb_incr("room", "bob", 1)

    async def gone() -> bool:
        return (
            await store.get("room") is None
            and await store.list_range("room") == []
            and await store.lb_top("room", 10) == []
        )

    await expired(gone)
    assert await store.lb_rank("room", "ann") is None
    assert await store.lb_score("room", "ann") is None
    assert await store.delete("room") is False


async def test_expire_of_a_missing_name_is_false(store: Store) -> None:
    assert await store.expire("nothing", TTL) is False


async def test_expire_again_moves_the_deadline(store: Store) -> None:
    await store.list_append("l", 1)
    assert await store.expire("l", TTL)
    assert await store.expire("l", BOUND * 10)
    await probe_expired(store)
    assert await store.list_range("l") == [1]


async def test_delete_ends_a_ttl_with_its_key(store: Store) -> None:
    await store.set("k", 1, ttl=TTL)
    assert await store.delete("k") is True
    await store.set("k", 2)
    await probe_expired(store)
    assert await store.get("k") == 2


@pytest.mark.parametrize(
    "ttl", [0, -1, math.nan, math.inf, 1e300, MAX_TTL * 2, "1", True, [1]], ids=repr
)
async def test_a_bad_ttl_is_a_store_error_and_changes_nothing(store: Store, ttl: Any) -> None:
    await store.set("k", 1)
    with pytest.raises(StoreError, match="ttl must be a positive, finite number"):
        await store.set("k", 2, ttl=ttl)
    with pytest.raises(StoreError, match="ttl must be a positive, finite number"):
        await store.expire("k", ttl)
    await probe_expired(store)
    assert await store.get("k") == 1


async def test_the_longest_ttl_is_accepted(store: Store) -> None:
    await store.set("k", 1, ttl=MAX_TTL)
    assert await store.expire("k", MAX_TTL)
    assert await store.get("k") == 1
