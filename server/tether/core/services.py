"""What every session of one server shares (``Services``): one object per server, so
that a session keeps one reference to all of it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from ..app import App, Function
from ..settings import Settings
from .execution import Executor
from .gates import Gate
from .hub import Hub
from .metrics import Metrics

__all__ = ["Services"]


class Services:
    """What every session of one server shares: the app, the settings, the executor,
    the functions' gates, the hub and the metrics (and the loop they all run on)."""

    __slots__ = ("app", "executor", "gate", "hub", "loop", "loop_thread", "metrics", "settings")

    def __init__(
        self,
        app: App,
        settings: Settings,
        executor: Executor,
        gate: Callable[[Function], Gate],
        hub: Hub | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.executor = executor
        self.gate = gate
        self.hub = hub
        self.metrics = metrics
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()

    def refused(self, code: str) -> None:
        if self.metrics is not None:
            self.metrics.refused[code] += 1
