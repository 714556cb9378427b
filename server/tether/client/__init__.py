"""The Python client: ``connect`` (asyncio) and ``connect_sync`` (blocking scripts),
built on the protocol's client half (``tether.protocol.client``)."""

from __future__ import annotations

from ..errors import TetherError
from .aio import Client
from .call import Call
from .connect import connect
from .sync import SyncClient, connect_sync

__all__ = ["Call", "Client", "SyncClient", "TetherError", "connect", "connect_sync"]
