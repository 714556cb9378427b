"""Executing user functions: sync ones in a bounded thread pool, async ones on the loop."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
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


class Runner:
    """Runs functions and hooks. One per server; owns the thread pool."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool = ThreadPoolExecutor(
            max_workers=settings.thread_pool_size, thread_name_prefix="tether-fn"
        )

    async def call(self, function: Function, args: list[Any]) -> Any:
        """Call ``function`` with the full argument list (public inputs and state)."""
        if function.is_async:
            return await function.fn(*args)
        loop = asyncio.get_running_loop()
        # Copy the context so that context variables set for this submit
        # (the session, the client) are visible inside the worker thread.
        ctx = contextvars.copy_context()
        return await loop.run_in_executor(self.pool, ctx.run, function.fn, *args)

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
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        gen = ctx.run(function.fn, *args)  # creating a generator runs none of its code
        step: asyncio.Future[Any] | None = None
        try:
            while True:
                step = loop.run_in_executor(self.pool, ctx.run, _step, gen)
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
        self.pool.shutdown(wait=False, cancel_futures=True)
