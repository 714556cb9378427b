"""The batching worker pool that runs sync functions."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tether.core.runner import BatchPool


async def test_results_and_exceptions_come_back_to_their_own_futures():
    pool = BatchPool(4)
    try:
        futures = [pool.run(lambda i=i: i * i) for i in range(200)]
        assert await asyncio.gather(*futures) == [i * i for i in range(200)]
        with pytest.raises(ValueError, match="nope"):
            await pool.run(_raise, ValueError("nope"))
    finally:
        pool.shutdown()


async def test_no_more_threads_than_the_size_and_they_are_named():
    pool = BatchPool(3)
    seen: set[str] = set()
    barrier = threading.Barrier(3, timeout=10)

    def work() -> None:
        seen.add(threading.current_thread().name)
        barrier.wait()

    try:
        await asyncio.gather(*(pool.run(work) for _ in range(3)))
        await asyncio.gather(
            *(pool.run(lambda: seen.add(threading.current_thread().name)) for _ in range(50))
        )
        assert len(pool._threads) == 3
        assert len(seen) == 3 and all(name.startswith("tether-fn") for name in seen)
    finally:
        pool.shutdown()


async def test_a_cancelled_call_discards_its_result_and_the_pool_keeps_working():
    pool = BatchPool(1)
    release = threading.Event()
    try:
        blocked = pool.run(release.wait, 10)
        queued = pool.run(lambda: "never seen")
        queued.cancel()
        release.set()
        assert await blocked is True
        assert await pool.run(lambda: "next") == "next"
        assert queued.cancelled()
    finally:
        pool.shutdown()


async def test_a_burst_of_quick_calls_is_run_by_one_worker():
    # A long stall period: only the batching decides how many workers run.
    pool = BatchPool(8, stall=60)
    try:
        names = await asyncio.gather(
            *(pool.run(lambda: threading.current_thread().name) for _ in range(300))
        )
        assert len(set(names)) == 1
        assert len(pool._threads) == 1
    finally:
        pool.shutdown()


async def test_calls_made_one_after_another_never_wait_for_the_stall_check():
    # Each call finds the worker just going idle: the race the worker's second
    # look closes. A stranded call would wait the 60 s stall period.
    pool = BatchPool(2, stall=60)

    async def caller(k: int) -> None:
        for i in range(1000):
            assert await asyncio.wait_for(pool.run(int, i + k), 30) == i + k

    try:
        await caller(0)
        # Several callers: both workers come and go while calls keep arriving.
        await asyncio.gather(*(caller(k) for k in range(4)))
    finally:
        pool.shutdown()


async def test_a_call_queued_behind_a_blocked_one_is_taken_by_another_worker():
    pool = BatchPool(2, stall=0.002)
    release = threading.Event()
    try:
        blocked_in: list[str] = []

        def block() -> bool:
            blocked_in.append(threading.current_thread().name)
            return release.wait(30)

        blocked = pool.run(block)
        quick = pool.run(lambda: threading.current_thread().name)
        # The bound is a deadlock guard, not a timing claim: without the stall
        # check, the quick call would wait the whole 30 s behind the blocked one.
        name = await asyncio.wait_for(quick, 20)
        assert not blocked.done()
        release.set()
        assert await blocked is True
        assert blocked_in and name != blocked_in[0]
    finally:
        release.set()
        pool.shutdown()


async def test_as_many_blocking_calls_as_the_size_run_at_once_when_queued_in_one_burst():
    pool = BatchPool(6, stall=0.002)
    barrier = threading.Barrier(6, timeout=20)
    try:
        results = await asyncio.gather(*(pool.run(barrier.wait) for _ in range(6)))
        assert sorted(results) == list(range(6))
    finally:
        pool.shutdown()


def _raise(exc: BaseException) -> None:
    raise exc
