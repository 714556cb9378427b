"""Session records on a real redis-server: saved by the node that parks a session,
claimed (exactly once) by the node it resumes on."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.redis_server import RedisServer
from tests.store.helpers import bounded
from tether.cluster.channels import session_key
from tether.store import StoreUnavailable
from tether.store.redis_backend import RedisBackend
from tether.store.sessions import RedisSessionRecords, SessionHeld, SessionRecords

RECORD = {"id": "s1", "state": {"chat.history": [["a", "b"]]}, "results": []}


@pytest.fixture
async def nodes(
    redis_server: RedisServer, redis_namespace: str
) -> AsyncIterator[list[RedisBackend]]:
    """Two backends on one namespace, each with its own connection pool, like two nodes."""
    backends = [RedisBackend(redis_server.url, redis_namespace) for _ in range(2)]
    yield backends
    for backend in backends:
        await backend.close()


def records(backend: RedisBackend) -> SessionRecords:
    assert backend.sessions is not None
    return backend.sessions


async def test_a_redis_backend_is_shared_and_keeps_session_records() -> None:
    backend = RedisBackend("redis://127.0.0.1:1/0")
    try:
        assert backend.shared is True
        assert isinstance(backend.sessions, RedisSessionRecords)
    finally:
        await backend.close()


async def test_a_saved_record_is_claimed_once_and_then_is_gone(nodes: list[RedisBackend]) -> None:
    a, b = nodes
    await records(a).save("tok", RECORD, ttl=10, node="A", held=False)
    assert await records(b).claim("tok", node="B", ttl=10) == RECORD
    assert await records(a).claim("tok", node="B", ttl=10) is None
    assert await records(b).claim("tok", node="B", ttl=10) is None


async def test_of_two_concurrent_claims_of_one_token_exactly_one_gets_the_record(
    nodes: list[RedisBackend],
) -> None:
    a, b = nodes
    tokens = [f"tok{i}" for i in range(50)]
    for token in tokens:
        await records(a).save(token, {**RECORD, "id": token}, ttl=10, node="A", held=False)
    for token in tokens:
        claims = await bounded(
            asyncio.gather(
                records(a).claim(token, node="B", ttl=10), records(b).claim(token, node="B", ttl=10)
            )
        )
        assert sorted(claims, key=lambda c: c is None) == [{**RECORD, "id": token}, None]


async def test_many_concurrent_claims_of_many_tokens_hand_out_each_record_once(
    nodes: list[RedisBackend],
) -> None:
    tokens = [f"t{i}" for i in range(40)]
    for token in tokens:
        await records(nodes[0]).save(token, {"id": token}, ttl=10, node="A", held=False)
    claims = await bounded(
        asyncio.gather(
            *(
                records(n).claim(t, node="B", ttl=10)
                for t in tokens
                for n in nodes
                for _ in range(3)
            )
        )
    )
    won = [claim["id"] for claim in claims if claim is not None]
    assert sorted(won) == sorted(tokens)


async def test_a_record_expires_after_its_ttl(nodes: list[RedisBackend]) -> None:
    a, b = nodes
    await records(a).save("short", RECORD, ttl=0.05, node="A", held=False)
    await asyncio.sleep(0.3)
    assert await records(b).claim("short", node="B", ttl=10) is None


async def test_saving_again_replaces_the_record_and_delete_leaves_a_tombstone(
    nodes: list[RedisBackend],
) -> None:
    a, b = nodes
    await records(a).save("tok", RECORD, ttl=10, node="A", held=False)
    await records(a).save("tok", {**RECORD, "results": [1]}, ttl=10, node="A", held=False)
    await records(b).delete("tok", node="B", ttl=10)  # not B's: nothing happens
    assert await records(b).claim("tok", node="B", ttl=10) == {**RECORD, "results": [1]}
    await records(a).save("tok2", RECORD, ttl=10, node="A", held=False)
    await records(a).delete("tok2", node="A", ttl=10)
    # A late save of the forgotten record does not bring it back.
    assert await records(a).save("tok2", RECORD, ttl=10, node="A", held=False) is False
    assert await records(b).claim("tok2", node="B", ttl=10) is None


async def test_a_held_record_is_refused_while_its_node_lives_and_claimed_once_it_died(
    nodes: list[RedisBackend],
) -> None:
    a, b = nodes
    await records(a).node_alive("A", 0.3)
    assert await records(a).save("tok", RECORD, ttl=10, node="A", held=True) is True
    with pytest.raises(SessionHeld):
        await records(b).claim("tok", node="B", ttl=10)
    for _ in range(100):  # node A stops renewing its lease: it died
        await asyncio.sleep(0.05)
        try:
            claimed = await records(b).claim("tok", node="B", ttl=10)
            break
        except SessionHeld:
            continue
    assert claimed == RECORD
    # Fenced: A can no longer write the record B claimed.
    assert await records(a).save("tok", RECORD, ttl=10, node="A", held=True) is False
    assert await records(b).claim("tok", node="B", ttl=10) is None


async def test_records_live_under_the_namespace_apart_from_the_data(
    nodes: list[RedisBackend], redis_namespace: str, raw_redis: Any
) -> None:
    a, _ = nodes
    await records(a).save("tok", RECORD, ttl=10, node="A", held=False)
    await a.set("tok", "a value")
    assert raw_redis.exists(session_key(redis_namespace, "tok")) == 1
    assert await a.get("tok") == "a value"
    assert await records(a).claim("tok", node="B", ttl=10) == RECORD


async def test_a_redis_nobody_listens_on_makes_session_records_unavailable(
    redis_namespace: str,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = RedisBackend(f"redis://127.0.0.1:{port}/0", redis_namespace)
    try:
        with pytest.raises(StoreUnavailable):
            await bounded(records(backend).claim("tok", node="B", ttl=10))
    finally:
        await backend.close()
