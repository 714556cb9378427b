"""Keepalive: one sweep over every connection, instead of a timer per connection.

Every ``sweep_period`` seconds: close sessions that sent nothing for
``idle_timeout`` seconds (4001); ping connections silent for
``ping_interval`` seconds, and drop those whose ping went unanswered for
``pong_timeout`` seconds (the session is then parked for a resume). Any
message from the client, not only a pong, counts as an answer. A message begun
more than ``message_timeout`` seconds ago and still unfinished closes its
connection with 1008 (frames.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from ..core.metrics import Metrics
from ..core.session import Session
from ..protocol import Close
from ..settings import Settings
from .outbox import Connection

__all__ = ["sweep", "sweep_period"]

log = logging.getLogger("tether.transport")


def sweep_period(settings: Settings) -> float:
    """How often ``sweep`` looks at every connection (0: no sweeps needed)."""
    periods = []
    if settings.idle_timeout > 0:
        periods.append(min(settings.idle_timeout / 4, 5.0))
    if settings.ping_interval > 0:
        periods.append(min(settings.ping_interval, settings.pong_timeout) / 4)
    if settings.message_timeout > 0:
        periods.append(min(settings.message_timeout / 4, 5.0))
    return min(periods, default=0.0)


async def sweep(
    period: float,
    connections: Mapping[str, Connection],
    sessions: Mapping[str, Session],
    settings: Settings,
    metrics: Metrics,
) -> None:
    """Sweep ``connections`` (by session id) every ``period`` seconds, until cancelled."""
    idle_timeout = settings.idle_timeout
    interval, pong_timeout = settings.ping_interval, settings.pong_timeout
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(period)
        now = loop.time()
        for session_id, conn in list(connections.items()):
            session = sessions.get(session_id)
            if session is None or conn.closed:
                continue
            guard = conn.guard
            if guard is not None and guard.overdue(now):
                # A message begun and not finished in time (frames.py).
                metrics.closed["message_timeout"] += 1
                conn.abort(Close.POLICY_VIOLATION, "message took too long")
                continue
            if idle_timeout > 0 and session.last_active < now - idle_timeout:
                metrics.closed["idle"] += 1
                conn.abort(Close.IDLE, "idle timeout")
                continue
            if interval <= 0:
                continue
            heard = max(conn.heard_at, session.last_active)
            if conn.ping_at:
                if heard >= conn.ping_at:
                    conn.ping_at = 0.0  # answered
                elif now - conn.ping_at >= pong_timeout:
                    log.info("dropping session %s: no pong in %g s", session_id, pong_timeout)
                    metrics.closed["no_pong"] += 1
                    conn.give_up()
                    continue
            if not conn.ping_at and now - heard >= interval:
                conn.ping(now)
