"""Choosing a backend from the ``store`` setting's URL."""

from __future__ import annotations

from typing import Any

from ..errors import StoreError
from .backend import StoreBackend
from .memory import MemoryBackend

__all__ = ["backend_from_url"]


def backend_from_url(url: str, **options: Any) -> StoreBackend:
    """The backend a URL names: ``memory://`` or ``redis://host:port/db``.

    ``rediss://`` (TLS) and ``unix:///path.sock?db=0`` work too. ``options``
    go to ``RedisBackend`` (``namespace``, timeouts, ...); the memory backend
    takes none. ``redis`` is imported only here, so it stays optional.
    """
    scheme = url.partition("://")[0].lower()
    if scheme == "memory":
        if options:
            raise StoreError(f"the memory store takes no options (got {', '.join(options)})")
        return MemoryBackend()
    if scheme in ("redis", "rediss", "unix"):
        try:
            from .redis_backend import RedisBackend
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.partition(".")[0] != "redis":
                raise
            raise StoreError(
                "the Redis store needs the 'redis' package: pip install 'tether[redis]'"
            ) from None
        return RedisBackend(url, **options)
    raise StoreError(
        f"unknown store URL {url.partition('://')[0] + '://'!r}: "
        "use memory:// or redis://host:port/db"
    )
