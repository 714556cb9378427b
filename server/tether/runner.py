"""Executing user functions: sync ones in a bounded thread pool, async ones on the loop."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .app import Function
from .settings import Settings

__all__ = ["Runner"]

log = logging.getLogger("tether.runner")


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
