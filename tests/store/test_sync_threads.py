"""``app.store.sync`` from many worker threads at once, mixed with async callers on
the loop: no update is lost, every operation is atomic, and events leave in the
order of the changes (on the memory backend the sync calls run in the calling
thread under the lock the loop takes too; on Redis they go through the loop)."""

from __future__ import annotations

import asyncio
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.store.helpers import BOUND, bounded
from tests.store.test_facade import serving
from tether.store import MemoryBackend, Store
from tether.store.memory import MAX_PENDING_EVENTS

THREADS = 16


async def delivered(published: list[Any], n: int) -> None:
    """Until ``n`` events are out (worker threads' events leave from the loop)."""
    for _ in range(int(BOUND * 100)):
        if len(published) >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(published)} of {n} events delivered")


async def in_threads(loop: asyncio.AbstractEventLoop, work: Any, n: int = THREADS) -> list[Any]:
    with ThreadPoolExecutor(n) as pool:
        return list(
            await bounded(asyncio.gather(*(loop.run_in_executor(pool, work, w) for w in range(n))))
        )


async def test_100k_sync_increments_from_many_threads_and_the_loop_lose_none(store: Store) -> None:
    loop = asyncio.get_running_loop()
    # 100k through the memory backend; Redis pays a round trip each, so fewer.
    per_thread = 100_000 // THREADS if isinstance(store.backend, MemoryBackend) else 500
    per_task = per_thread // 10

    def work(worker: int) -> list[int | float]:
        return [store.sync.incr("n") for _ in range(per_thread)]

    async def async_writer() -> list[int | float]:
        seen = []
        for _ in range(per_task):
            seen.append(await store.incr("n"))
            await asyncio.sleep(0)
        return seen

    with serving(store, loop):
        results = await bounded(
            asyncio.gather(in_threads(loop, work), *(async_writer() for _ in range(4)))
        )
        total = THREADS * per_thread + 4 * per_task
        assert await store.get("n") == total
        # Every increment saw its own sum: each of 1..total exactly once.
        sums = [s for part in (*results[0], *results[1:]) for s in part]
        assert sorted(sums) == list(range(1, total + 1))


async def test_sync_and_async_updates_of_one_value_interleave_atomically(store: Store) -> None:
    loop = asyncio.get_running_loop()
    n = 200

    def work(worker: int) -> None:
        for i in range(n):
            store.sync.update("log", lambda v, e=f"t{worker}-{i}": [*v, e], [])
            store.sync.lb_incr("b", "m")

    async def async_writer(worker: int) -> None:
        for i in range(n):
            await store.update("log", lambda v, e=f"a{worker}-{i}": [*v, e], [])
            await store.lb_incr("b", "m")
            await asyncio.sleep(0)

    with serving(store, loop):
        await bounded(
            asyncio.gather(in_threads(loop, work, 8), *(async_writer(w) for w in range(2)))
        )
        log = await store.get("log")
        assert len(log) == len(set(log)) == 10 * n
        for writer in [f"t{w}" for w in range(8)] + ["a0", "a1"]:
            mine = [e for e in log if e.split("-")[0] == writer]
            assert mine == [f"{writer}-{i}" for i in range(n)]  # each writer's order kept
        assert await store.lb_score("b", "m") == 10 * n


async def test_leaderboard_events_from_concurrent_writers_follow_one_serial_order() -> None:
    # Every board event holds all the scores (top is big enough): a serial order
    # of the adds gives events that grow by exactly one score each, in order.
    store = Store()
    loop = asyncio.get_running_loop()
    per_thread, threads, per_task = 100, 8, 50
    returned: list[list[float]] = []

    def work(worker: int) -> None:
        for i in range(per_thread):
            best = store.sync.lb_add(
                "board", f"t{worker}-{i}", worker * 1000 + i, top=10_000, topic="b"
            )
            returned.append([s for _, s in best])

    async def async_writer(worker: int) -> None:
        for i in range(per_task):
            best = await store.lb_add(
                "board", f"a{worker}-{i}", 0.5 + worker * 1000 + i, top=10_000, topic="b"
            )
            returned.append([s for _, s in best])
            await asyncio.sleep(0)

    with serving(store, loop) as published:
        await bounded(
            asyncio.gather(in_threads(loop, work, threads), *(async_writer(w) for w in range(2)))
        )
        total = threads * per_thread + 2 * per_task

        await delivered(published, total)
    events = [data for topic, data in published]
    assert {topic for topic, _ in published} == {"b"}
    assert len(events) == total
    previous: Counter[float] = Counter()
    for k, event in enumerate(events, 1):
        assert len(event) == k
        assert event == sorted(event, reverse=True)
        grown = Counter(event)
        assert grown - previous and sum((grown - previous).values()) == 1 and not previous - grown
        previous = grown
    # What each call returned is the event its change published.
    assert sorted(map(tuple, returned), key=len) == [tuple(e) for e in events]


async def test_a_thread_publishing_faster_than_the_loop_hands_out_waits_and_loses_nothing() -> None:
    store = Store()
    loop = asyncio.get_running_loop()
    n = 3 * MAX_PENDING_EVENTS

    def work(worker: int) -> None:
        for i in range(n):
            store.sync.update("v", lambda _, i=i: i, topic=f"t{worker}")

    with serving(store, loop) as published:
        await in_threads(loop, work, 2)

        await delivered(published, 2 * n)
    for worker in range(2):
        assert [data for topic, data in published if topic == f"t{worker}"] == list(range(n))
