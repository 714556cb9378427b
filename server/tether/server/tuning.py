"""Process tuning, shared by the server, the CLI, the load tester and bench.

Nothing here imports aiohttp or the rest of the server: the open-files limit
(one socket per session), the cyclic garbage collector's settings, and the
event loop factory (uvloop where it exists).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable

__all__ = ["freeze_startup_objects", "loop_factory", "raise_open_files_limit", "tune_gc"]

log = logging.getLogger("tether.server")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None (asyncio's default loop) where uvloop is missing."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def raise_open_files_limit(connections: int | None = None) -> int:
    """Raise this process's soft limit on open files towards ``connections`` (plus
    room for everything else; None: as far as the hard limit goes); return the limit.

    Warns when the limit stays below ``connections``.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return connections or 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if connections is None else connections + 256
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if wanted > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    if connections is not None and soft < connections:
        log.warning(
            "the open-files limit (%d) is below max_connections (%d): connections beyond "
            "it will fail; raise the hard limit (ulimit -Hn) or lower max_connections",
            soft,
            connections,
        )
    return int(soft)


def tune_gc(young_threshold: int) -> None:
    """Collect the youngest generation every ``young_threshold`` allocations (0: leave
    the interpreter's setting)."""
    if young_threshold:
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(young_threshold, older, oldest)


def freeze_startup_objects() -> None:
    """Move everything alive now out of the collector's reach (once per process):
    modules, the app and the server are here for good, and full collections
    should walk only what serving creates."""
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()
