"""``Config``: what one load test runs, as the command line gave it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Final

from .scenario import DEFAULT_TURNS

__all__ = ["CONNECT_TIMEOUT", "DRAIN_TIMEOUT", "Config"]

# How long in-flight submits may take to finish once the duration is over.
DRAIN_TIMEOUT: Final = 10.0
CONNECT_TIMEOUT: Final = 10.0


@dataclass(frozen=True, slots=True)
class Config:
    url: str
    users: int
    duration: float
    scenario: str = "auto"
    ramp: float = 0.0
    rate: float | None = None
    procs: int = 1
    check: bool = False
    turns: int = DEFAULT_TURNS
    rooms: int | None = None  # rooms scenario; None: default_rooms(users)
    drain_timeout: float = DRAIN_TIMEOUT
    connect_timeout: float = CONNECT_TIMEOUT
    progress: bool = True
    # The client stack of the built-in scenarios (stacks.CLIENTS); ``execute`` resolves
    # "auto" to the one that runs, so a result names it.
    client: str = "auto"
    # auto: (function, weight) pairs from --mix; empty: every function alike.
    mix: tuple[tuple[str, float], ...] = ()
    # The welcome's functions as the command line read them ({name, inputs, outputs});
    # empty: each generator process reads a welcome of its own.
    functions: tuple[dict[str, Any], ...] = ()
    # Shared by the generator processes of one run; names its rooms.
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
