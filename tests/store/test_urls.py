"""``backend_from_url``: the backend the ``store`` setting names; ``redis`` stays optional."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.redis_server import RedisServer
from tether.store import MemoryBackend, StoreError, backend_from_url
from tether.store.redis_backend import RedisBackend


def test_backend_from_url_gives_a_memory_backend_for_memory_urls() -> None:
    assert isinstance(backend_from_url("memory://"), MemoryBackend)


def test_backend_from_url_refuses_an_unknown_scheme_and_memory_options() -> None:
    with pytest.raises(StoreError, match="unknown store URL 'postgres://'"):
        backend_from_url("postgres://localhost/db")
    with pytest.raises(StoreError, match="takes no options"):
        backend_from_url("memory://", namespace="x")


async def test_backend_from_url_gives_a_working_redis_backend(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    backend = backend_from_url(redis_server.url, namespace=redis_namespace)
    assert isinstance(backend, RedisBackend)
    try:
        assert await backend.incr("n") == 1
    finally:
        await backend.close()


def test_the_store_and_the_channel_names_import_without_redis() -> None:
    code = (
        "import sys, tether.store, tether.cluster.channels, tether.store.sessions\n"
        "tether.store.backend_from_url('memory://')\n"
        "assert 'redis' not in sys.modules, sorted(m for m in sys.modules if 'redis' in m)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
