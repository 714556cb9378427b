"""Custom scenarios: a Python file defining ``async def user(client, index)``.

``user`` gets the regular ``tether.Client`` API, as a ``MeasuredClient``
whose submits are timed and counted. It is called again and again on one
session until the time is up (a new session per call if the file sets
``RECONNECT = True``); the driver (``driver.py``) does the calling.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..errors import TetherError
from ..protocol import Code
from .scenario import ScenarioError
from .scenarios import SCENARIOS
from .stats import Meter

if TYPE_CHECKING:
    from ..client import Client

__all__ = ["MeasuredClient", "load_scenario_file"]


def load_scenario_file(path: str) -> ModuleType:
    """Import a scenario file; it must define ``async def user(client, index)``."""
    file = Path(path)
    if not file.is_file():
        raise ScenarioError(
            f"no scenario {path!r}: use one of {', '.join(SCENARIOS)} or a Python file"
        )
    spec = importlib.util.spec_from_file_location(f"tether_scenario_{file.stem}", file)
    if spec is None or spec.loader is None:
        raise ScenarioError(f"cannot import {path!r}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ScenarioError(f"{path}: {type(exc).__name__}: {exc}") from None
    user = getattr(module, "user", None)
    if not inspect.iscoroutinefunction(user):
        raise ScenarioError(f"{path} must define `async def user(client, index)`")
    return module


class MeasuredClient:
    """A ``tether.Client`` whose submits are timed and counted into ``meter``; everything
    else passes through. With ``check``, a submit that got no reply is a violation."""

    def __init__(self, client: Client, meter: Meter, check: bool) -> None:
        self._client = client
        self._meter = meter
        self._check = check

    async def submit(self, fn: str, *args: Any) -> Any:
        outputs = await self.submit_raw(fn, list(args))
        if len(outputs) == 1:
            return outputs[0]
        return tuple(outputs)

    async def submit_raw(self, fn: str, data: list[Any], id: Any = None) -> list[Any]:
        meter = self._meter
        t0 = time.perf_counter()
        try:
            outputs = await self._client.submit_raw(fn, data, id)
        except TetherError as exc:
            if exc.code == Code.CONNECTION_CLOSED:
                meter.error("lost")
                if self._check:
                    meter.violation(f"session {self._client.session[:8]}: {fn}: {exc}")
            else:
                meter.error(exc.code)
            raise
        except asyncio.CancelledError:
            meter.error("lost")
            if self._check:
                meter.violation(
                    f"session {self._client.session[:8]}: a {fn} submit got no reply "
                    "before the drain timeout"
                )
            raise
        except Exception:
            meter.error("lost")
            raise
        meter.ok(time.perf_counter() - t0)
        if self._check:
            # A custom scenario checks content itself; here: the reply reached its submitter.
            meter.stats.checked += 1
        return outputs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)
