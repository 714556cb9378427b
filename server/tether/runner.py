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
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .app import Function
from .settings import Settings

__all__ = ["Runner"]

log = logging.getLogger("tether.runner")

_DONE: Any = object()


def _step(gen: Any) -> Any:
    return next(gen, _DONE)


class BatchPool:
    """Worker threads for sync functions that hand results back to the loop in batches.

    ``run_in_executor`` wakes the event loop once per finished call (one
    ``call_soon_threadsafe`` each). Here a finished call is appended to a
    deque, and only the first of a burst schedules a drain on the loop, which
    then settles every result that arrived meanwhile: under load, one wake-up
    serves many submits. Threads start lazily, up to ``size``.
    """

    def __init__(self, size: int, name: str = "tether-fn") -> None:
        self.size = size
        self.name = name
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._done: deque[tuple[asyncio.Future[Any], Any, BaseException | None]] = deque()
        self._lock = threading.Lock()
        self._drain_scheduled = False
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run ``fn(*args)`` in a worker thread; the future completes on the loop."""
        if self._closed:
            raise RuntimeError("the pool is shut down")
        loop = self._loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            start = self._idle == 0 and len(self._threads) < self.size
            if not start:
                self._idle -= 1 if self._idle else 0
        self._jobs.put((future, fn, args))
        if start:
            thread = threading.Thread(
                target=self._work, name=f"{self.name}_{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        return future

    def _work(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            future, fn, args = job
            result: Any = None
            error: BaseException | None = None
            if not future.cancelled():
                try:
                    result = fn(*args)
                except BaseException as exc:
                    error = exc
            with self._lock:
                self._done.append((future, result, error))
                schedule = not self._drain_scheduled
                self._drain_scheduled = True
                self._idle += 1
            if schedule and self._loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop is closed
                    self._loop.call_soon_threadsafe(self._drain)
            del job, future, fn, args, result, error

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
        for _ in self._threads:
            self._jobs.put(None)


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

    async def call(self, function: Function, args: list[Any]) -> Any:
        """Call ``function`` with the full argument list (public inputs and state)."""
        if function.is_async:
            return await function.fn(*args)
        # Copy the context so that context variables set for this submit
        # (the session, the client) are visible inside the worker thread.
        ctx = contextvars.copy_context()
        return await self.workers.run(ctx.run, function.fn, *args)

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
