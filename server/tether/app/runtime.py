"""What a server lends the App it serves: its loop, its store backend, its topics.

The server builds one ``Runtime`` when it starts and hands it to
``App.attach``; ``app.store`` and ``app.publish`` act through it until
``App.detach``. The App itself holds no serving state, so an App that is not
being served is a plain registry, and a second server on the same App is
refused instead of silently sharing the first one's store and topics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..store import StoreBackend

__all__ = ["Runtime"]


@dataclass(frozen=True, slots=True, eq=False)
class Runtime:
    loop: asyncio.AbstractEventLoop
    backend: StoreBackend
    # Publish ``data`` to every subscriber of a topic (from the loop or any
    # thread): ``publish(topic, data, retain)``; ``retain``: also its current value.
    publish: Callable[[str, Any, bool], None]
    # Forget a topic's current value (from the loop or any thread).
    forget: Callable[[str], None]
