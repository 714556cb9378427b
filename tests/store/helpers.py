"""Shared by the store tests (not a test module)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tether.store import StoreBackend

# A hang guard, never a performance threshold: every await is bounded.
BOUND = 30.0

OpenBackend = Callable[..., StoreBackend]


def bounded(coro: Any) -> Any:
    return asyncio.wait_for(coro, BOUND)
