"""The batching worker pool that runs sync functions."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tether.runner import BatchPool


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


def _raise(exc: BaseException) -> None:
    raise exc
