"""Global state: ``app.store``, a store shared by every session, with atomic operations.

- ``backend``: ``StoreBackend``, the contract (every operation's signature and
  doc, atomicity, ordering, key spaces, errors);
- ``facade``: ``Store`` (``app.store``) and ``SyncStore`` (``app.store.sync``);
- ``memory``: ``MemoryBackend``, the store of one process;
- ``redis_backend`` (+ ``redis_scripts``): ``RedisBackend``, shared by every node;
- ``sessions``: ``SessionRecords``, parked sessions kept for a resume on any node;
- ``checks``: argument checks and error messages the backends share;
- ``urls``: ``backend_from_url``.

``redis`` is optional: nothing here imports it until a ``redis://`` URL is used.
"""

from __future__ import annotations

from ..errors import StoreError, StoreUnavailable
from .backend import StoreBackend
from .checks import plain_number
from .facade import Store, SyncStore
from .memory import MemoryBackend
from .urls import backend_from_url

__all__ = [
    "MemoryBackend",
    "Store",
    "StoreBackend",
    "StoreError",
    "StoreUnavailable",
    "SyncStore",
    "backend_from_url",
    "plain_number",
]
