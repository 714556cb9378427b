"""The memory backend's place among backends: one process, no session records."""

from __future__ import annotations

from tether.store import MemoryBackend, Store


async def test_the_memory_backend_is_not_shared_keeps_no_session_records_and_is_always_up() -> None:
    backend = MemoryBackend()
    assert backend.shared is False
    assert backend.sessions is None
    assert backend.publisher is None
    assert await backend.ping() is True
    await backend.close()
    assert await backend.ping() is True


async def test_a_store_made_without_a_backend_has_its_own_memory_backend() -> None:
    first, second = Store(), Store()
    assert isinstance(first.backend, MemoryBackend)
    await first.set("k", 1)
    assert await second.get("k") is None


async def test_a_closed_memory_backend_keeps_its_data() -> None:
    backend = MemoryBackend()
    await backend.set("k", [1])
    await backend.close()
    assert await backend.get("k") == [1]
