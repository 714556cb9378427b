"""HTTP connections not upgraded to a WebSocket: counted per client address and in
all, against their own caps (``max_handshakes_per_address``, ``max_handshakes``).

A TCP connection counts from the moment it is accepted until it is upgraded
to a WebSocket (then the connection caps of ``core.admission.AddressCounter``
take over) or closed. One over a cap is answered ``503`` and closed at once,
before aiohttp reads a byte of it, so half-open handshakes from one address
cannot take every open file (and with them ``/ws`` and ``/healthz``) from
everyone. How long one may stay half-open is bounded by ``handshake_timeout``
(aiohttp's keep-alive timer, armed when the connection is made and not reset
by a request that trickles in).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from ..core.admission import AddressCounter
from ..core.metrics import Metrics
from ..settings import Settings

__all__ = ["Handshakes"]

log = logging.getLogger("tether.transport")

_BODY = b"too many connections in handshake\n"
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Type: text/plain\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BODY), _BODY)
)


class Handshakes:
    """Connections of one aiohttp server that are not (yet) WebSockets."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.counter = AddressCounter(settings.max_handshakes, settings.max_handshakes_per_address)
        self.metrics = metrics
        self._open: dict[Any, str] = {}  # request handler -> client address

    def install(self, http: web.Server) -> None:
        """Count the connections of ``http`` (aiohttp's low-level server: every request
        handler reports its connection's start and end to it)."""
        made, lost = http.connection_made, http.connection_lost

        def connection_made(handler: Any, transport: asyncio.Transport) -> None:
            made(handler, transport)
            self.accepted(handler, transport)

        def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
            self.upgraded(handler)
            lost(handler, exc)

        http.connection_made = connection_made  # type: ignore[method-assign]
        http.connection_lost = connection_lost  # type: ignore[method-assign]

    def accepted(self, handler: Any, transport: asyncio.Transport) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if peer else ""
        refusal = self.counter.refusal(address)
        if refusal is not None:
            self.metrics.closed["handshake_cap"] += 1
            log.debug("refused a connection from %s: %s", address, refusal)
            transport.write(_REFUSAL)
            transport.close()
            return
        self.counter.add(address)
        self._open[handler] = address

    def upgraded(self, handler: Any) -> None:
        """``handler``'s connection is a WebSocket now, or gone: it no longer counts."""
        address = self._open.pop(handler, None)
        if address is not None:
            self.counter.remove(address)

    def __len__(self) -> int:
        return len(self._open)
