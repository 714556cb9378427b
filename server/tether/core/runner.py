"""Executing user functions: sync ones in a bounded thread pool, async ones on the loop."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import queue
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..app.function import Function
from ..settings import Settings

__all__ = ["Runner"]

log = logging.getLogger("tether.runner")

_DONE: Any = object()


def _step(gen: Any) -> Any:
    return next(gen, _DONE)


class BatchPool:
    """Worker threads for sync functions, with batched hand-offs both ways.

    A thread hand-off costs a wake-up and, on a busy core, a wait for the GIL;
    for a function that runs in microseconds that is most of its cost. So:

    - Calls go into a shared deque. A burst of calls in one loop iteration wakes
      at most one worker (once the iteration is over, in ``_flush``), and no
      worker while one is active: an active worker takes the next call from the
      deque itself when it finishes one. A trivial function's burst is run by
      one worker in one go.
    - A call must not wait behind a slow (blocking) one: while calls are
      pending the loop checks every ``stall`` seconds whether any call was
      taken since the last check, and if none was (every active worker is
      stuck), wakes idle workers, starting threads up to ``size``, for all of
      them. So a blocked worker delays the calls behind it by at most about
      ``stall`` and ``size`` blocking calls still run at once.
    - A finished call's result goes into a deque; only the first of a burst
      schedules a drain on the loop, which settles every result that arrived
      meanwhile: one loop wake-up serves many submits.
    """

    def __init__(self, size: int, name: str = "tether-fn", stall: float = 0.002) -> None:
        self.size = size
        self.name = name
        self.stall = stall
        self._pending: deque[tuple[asyncio.Future[Any], Callable[..., Any], tuple[Any, ...]]] = (
            deque()
        )
        self._wake: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._done: deque[tuple[asyncio.Future[Any], Any, BaseException | None]] = deque()
        self._lock = threading.Lock()
        self._drain_scheduled = False
        self._flush_scheduled = False
        self._check: asyncio.TimerHandle | None = None
        self._threads: list[threading.Thread] = []
        self._idle = 0  # workers waiting for a wake-up (not yet woken)
        self._active = 0  # workers taking calls from the deque
        self._taken = 0  # calls taken so far (the stall check compares it)
        self._taken_seen = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run ``fn(*args)`` in a worker thread; the future completes on the loop."""
        if self._closed:
            raise RuntimeError("the pool is shut down")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((future, fn, args))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        """After a loop iteration's calls are queued: wake a worker if none is active."""
        self._flush_scheduled = False
        if not self._pending or self._closed:
            return
        with self._lock:
            wake = self._active == 0
        if wake:
            self._wake_workers(1)
        if self._check is None and self._loop is not None:
            self._taken_seen = self._taken
            self._check = self._loop.call_later(self.stall, self._check_stalled)

    def _check_stalled(self) -> None:
        self._check = None
        if not self._pending or self._closed:
            return
        if self._taken == self._taken_seen:
            # Nothing was taken for a whole period: the active workers are busy
            # with slow calls. Put a worker on every pending call we can.
            self._wake_workers(len(self._pending))
        self._taken_seen = self._taken
        assert self._loop is not None
        self._check = self._loop.call_later(self.stall, self._check_stalled)

    def _wake_workers(self, wanted: int) -> None:
        with self._lock:
            woken = min(wanted, self._idle)
            self._idle -= woken
            self._active += woken
            started = min(wanted - woken, self.size - len(self._threads))
            self._active += started
        for _ in range(woken):
            self._wake.put(True)
        for _ in range(started):
            thread = threading.Thread(
                target=self._work, name=f"{self.name}_{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _work(self) -> None:
        pending = self._pending
        lock = self._lock
        while True:
            # Active (counted by whoever woke us): take calls until none is left.
            while True:
                try:
                    future, fn, args = pending.popleft()
                except IndexError:
                    # Look again under the lock that _flush reads ``_active``
                    # under: a call queued before that read is seen here, and
                    # one queued after it finds us idle and wakes us.
                    with lock:
                        if pending:
                            continue
                        self._active -= 1
                        self._idle += 1
                    break
                self._taken += 1  # (racy between workers; the stall check needs "changed")
                result: Any = None
                error: BaseException | None = None
                if not future.cancelled():
                    try:
                        result = fn(*args)
                    except BaseException as exc:
                        error = exc
                self._hand_back(future, result, error)
                del future, fn, args, result, error
            if not self._wake.get():
                return  # shutdown

    def _hand_back(
        self, future: asyncio.Future[Any], result: Any, error: BaseException | None
    ) -> None:
        with self._lock:
            self._done.append((future, result, error))
            schedule = not self._drain_scheduled
            self._drain_scheduled = True
        if schedule and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            done = list(self._done)
            self._done.clear()
            self._drain_scheduled = False
        for future, result, error in done:
            if future.done():
                continue  # cancelled meanwhile: the result is discarded
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    def shutdown(self) -> None:
        self._closed = True
        if self._check is not None:
            self._check.cancel()
            self._check = None
        for _ in self._threads:
            self._wake.put(False)


class Runner:
    """Runs functions and hooks. One per server; owns the thread pools."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Sync user functions (and generator steps).
        self.workers = BatchPool(settings.thread_pool_size)
        # Hooks, the authenticate hook, closing generators: rare, so a plain executor.
        self.pool = ThreadPoolExecutor(
            max_workers=settings.thread_pool_size, thread_name_prefix="tether-hook"
        )

    def call(self, function: Function, args: list[Any]) -> Awaitable[Any]:
        """Call ``function`` with the full argument list (public inputs and state);
        await the result. (Not a coroutine itself: one less per submit.)"""
        if function.is_async:
            return function.fn(*args)  # type: ignore[no-any-return]
        # Copy the context so that context variables set for this submit
        # (the session, the client) are visible inside the worker thread.
        ctx = contextvars.copy_context()
        return self.workers.run(ctx.run, function.fn, *args)

    async def stream(self, function: Function, args: list[Any]) -> AsyncIterator[Any]:
        """Iterate a generator function: async ones on the loop, sync ones step by step
        in the thread pool. Closing the iterator closes the user's generator."""
        if function.kind == "agen":
            agen = function.fn(*args)
            try:
                async for item in agen:
                    yield item
            finally:
                await agen.aclose()
            return
        ctx = contextvars.copy_context()
        gen = ctx.run(function.fn, *args)  # creating a generator runs none of its code
        step: asyncio.Future[Any] | None = None
        try:
            while True:
                step = self.workers.run(ctx.run, _step, gen)
                item = await step
                if item is _DONE:
                    return
                yield item
        finally:
            # A step may still be running in its thread (cancel cannot stop it):
            # close the generator there once that step is over.
            def close(_: object = None) -> None:
                with contextlib.suppress(RuntimeError):  # the pool is shut down
                    self.pool.submit(ctx.run, gen.close)

            if step is None or step.done():
                close()
            else:
                step.add_done_callback(close)

    async def call_hook(self, hook: Callable[..., Any], *args: Any) -> None:
        """Run a lifecycle hook, sync or async; its exceptions are logged, never raised."""
        try:
            if inspect.iscoroutinefunction(hook):
                await hook(*args)
            else:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self.pool, hook, *args)
        except Exception:
            log.exception("hook %r failed", getattr(hook, "__name__", hook))

    def close(self) -> None:
        self.workers.shutdown()
        self.pool.shutdown(wait=False, cancel_futures=True)
