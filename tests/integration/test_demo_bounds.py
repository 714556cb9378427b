"""The demo's global data under attack (issue 12, items 1 and 5), on both stores.

- A poisoning score (a whole number at or beyond 2**64) is refused before
  anything is written, and scores an older release already stored cannot break
  the board: everyone else's ``track_score`` keeps working. Against ``tether
  serve tether.demo`` in a subprocess, with the memory store and a real
  redis-server.
- Rooms give their data back when their last member leaves, and at most
  ``max_rooms`` exist at once: after an attacker who made many rooms is gone,
  the demo's keys are back to their bound (one, the ``rooms`` registry).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import redis

import tether
from tests.conftest import RunningServer
from tests.integration.serve_process import Server, tether_servers  # noqa: F401 -- fixture
from tests.redis_server import RedisServer
from tether.cluster.channels import board_key
from tether.demo import create_app
from tether.store import MemoryBackend

BOUND = 30.0  # a hang guard, never a performance threshold


def _store_args(request: pytest.FixtureRequest) -> tuple[str, str, RedisServer | None]:
    """(store URL, namespace, redis-server or None) for the test's parameter."""
    if request.param == "memory":
        return "memory://", "demo", None
    server: RedisServer = request.getfixturevalue("redis_server")
    namespace: str = request.getfixturevalue("redis_namespace")
    return server.url, namespace, server


@pytest.fixture(params=["memory", "redis"])
def store_args(request: pytest.FixtureRequest) -> tuple[str, str, RedisServer | None]:
    return _store_args(request)


# -- item 1: one score cannot poison the leaderboard ----------------------------------

POISON = [1e20, 18446744073709551615, -1e20, 2**63, 1e300]


def test_a_poisoning_score_is_refused_and_everyone_keeps_scoring(
    tmp_path: Path, servers: list[Server], store_args: tuple[str, str, RedisServer | None]
) -> None:
    url, namespace, redis_server = store_args
    old: list[float] = []
    if redis_server is not None:
        # Scores an older release accepted and stored: they must not break the board.
        old = [1e20, 18446744073709551615.0]
        with redis.Redis.from_url(redis_server.url, socket_timeout=BOUND) as raw:
            raw.zadd(board_key(namespace, "scores"), {"old1": old[0], "old2": old[1]})
    server = Server(tmp_path, "tether.demo", "--store", url, "--namespace", namespace)
    servers.append(server)
    server.wait_ready()
    board = list(old)

    def top() -> list[float]:
        return sorted(board, reverse=True)[:3]

    with (
        tether.connect_sync(server.ws_url) as attacker,
        tether.connect_sync(server.ws_url) as bystander,
    ):
        for score in POISON:
            with pytest.raises(tether.TetherError) as refused:
                attacker.submit("track_score", score)
            assert refused.value.code == "fn_error"
            assert "a score must lie between" in refused.value.message
        # Nothing the attacker sent was written, and the board still encodes for everyone.
        for who, score in (
            (bystander, 42),
            (attacker, 1),
            (bystander, 7.5),
            (bystander, 2**53 - 1),
        ):
            board.append(score)
            assert who.submit("track_score", score) == top()


# -- item 5: rooms give their data back, and there are at most max_rooms ---------------

MAX_ROOMS = 4


def _data_keys(
    running: RunningServer, app: tether.App, namespace: str, redis_server: RedisServer | None
) -> int:
    """How many keys and lists the demo's data holds (session records and node leases aside)."""
    if redis_server is None:
        backend = app.store.backend
        assert isinstance(backend, MemoryBackend)
        # Read on the server's loop, where the store changes.
        return int(
            running.call(lambda: len(backend._values) + len(backend._lists) + len(backend._boards))
        )
    with redis.Redis.from_url(redis_server.url, socket_timeout=BOUND) as raw:
        return sum(
            1
            for key in raw.scan_iter(match=f"{namespace}:*", count=1000)
            # (session records, node leases and topics' current values aside)
            if b":session:" not in key and b":node:" not in key and b":current:" not in key
        )


def _current_values(redis_server: RedisServer | None, namespace: str) -> int:
    """How many topics' current values Redis holds (none: the memory store's are the hub's)."""
    if redis_server is None:
        return 0
    with redis.Redis.from_url(redis_server.url, socket_timeout=BOUND) as raw:
        return sum(1 for _ in raw.scan_iter(match=f"{namespace}:current:*", count=1000))


class KeyCount:
    def __init__(self, count: Callable[[], int], current: Callable[[], int], on_redis: bool):
        self._count = count
        self.current = current
        self.on_redis = on_redis

    def __call__(self) -> int:
        return self._count()


def _settle(count: Callable[[], int], expected: int) -> int:
    """``count()`` once it equals ``expected`` (sessions end asynchronously), or its last value."""
    deadline = time.monotonic() + BOUND
    value = count()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.02)
        value = count()
    return value


@pytest.fixture
def rooms_server(
    serve_app: Callable[..., RunningServer], store_args: tuple[str, str, RedisServer | None]
) -> Iterator[tuple[RunningServer, KeyCount]]:
    url, namespace, redis_server = store_args
    app = create_app(max_rooms=MAX_ROOMS)
    running = serve_app(app, store=url, namespace=namespace)
    yield (
        running,
        KeyCount(
            lambda: _data_keys(running, app, namespace, redis_server),
            lambda: _current_values(redis_server, namespace),
            redis_server is not None,
        ),
    )


def test_rooms_give_their_data_back_when_the_last_member_leaves(
    rooms_server: tuple[RunningServer, KeyCount],
) -> None:
    running, keys = rooms_server
    with tether.connect_sync(running.ws_url) as bystander:
        bystander.submit("join_room", "Ann", "lobby")
        bystander.submit("say", "hi")
        steady = keys()  # the registry, and the lobby's presence and history
        # One session that walks through many more rooms than may exist at once,
        # leaving a message in each: every room it leaves is freed.
        with tether.connect_sync(running.ws_url) as attacker:
            for i in range(5 * MAX_ROOMS):
                info = attacker.submit("join_room", "Mallory", f"room {i}")
                assert info["history"] == [] and info["members"] == ["Mallory"]
                attacker.submit("say", "x" * 2000)
                assert keys() == steady + 2  # this room's presence and history, no more
                # Nor do room topics' current values pile up (on Redis they are keys).
                assert keys.current() <= 2  # the lobby's and this room's
        assert _settle(keys, steady) == steady
        lobby = 1 if keys.on_redis else 0  # the lobby's (on memory: the hub's, not keys)
        assert _settle(keys.current, lobby) == lobby
        # The lobby kept its data; a room that was freed starts afresh.
        assert [m["text"] for m in bystander.submit("join_room", "Ann", "lobby")["history"]] == [
            "hi"
        ]
        with tether.connect_sync(running.ws_url) as again:
            assert again.submit("join_room", "Bob", "room 0")["history"] == []
            assert again.submit("leave_room") == {"left": "room 0"}
            assert keys() == steady
        bystander.submit("leave_room")
        assert keys() == 1  # the empty registry


def test_no_more_than_max_rooms_exist_and_all_are_freed_when_the_attacker_leaves(
    rooms_server: tuple[RunningServer, KeyCount],
) -> None:
    running, keys = rooms_server
    with tether.connect_sync(running.ws_url) as bystander:
        bystander.submit("join_room", "Ann", "lobby")
        baseline = keys()
        attackers: list[Any] = []
        try:
            for i in range(MAX_ROOMS + 3):
                attacker = tether.connect_sync(running.ws_url)
                attackers.append(attacker)
                if i < MAX_ROOMS - 1:
                    attacker.submit("join_room", "Mallory", f"room {i}")
                    attacker.submit("say", "spam")
                    continue
                # One room too many: a clear error, nothing changed, the session in no room.
                with pytest.raises(tether.TetherError) as refused:
                    attacker.submit("join_room", "Mallory", f"room {i}")
                assert refused.value.code == "fn_error"
                assert f"already {MAX_ROOMS} rooms" in refused.value.message
                with pytest.raises(tether.TetherError, match="join a room first"):
                    attacker.submit("say", "spam")
            assert keys() == baseline + 2 * (MAX_ROOMS - 1)
            # Rooms that exist can still be joined, by anyone.
            assert attackers[-1].submit("join_room", "Eve", "lobby")["members"] == ["Ann", "Eve"]
            joined = attackers[-2].submit("join_room", "Eve2", "room 0")
            assert joined["members"] == ["Eve2", "Mallory"]
        finally:
            # The attackers go (their sessions end without leave_room).
            for attacker in attackers:
                attacker.close()
        assert _settle(keys, baseline) == baseline
        assert bystander.submit("join_room", "Ann", "lobby")["members"] == ["Ann"]
        # The freed rooms can be made again, as many as the limit allows.
        with ExitStack() as stack:
            for i in range(MAX_ROOMS - 1):
                newcomer = stack.enter_context(tether.connect_sync(running.ws_url))
                assert newcomer.submit("join_room", "New", f"fresh {i}")["members"] == ["New"]
    assert _settle(keys, 1) == 1


def test_an_idle_room_expires_even_when_its_members_never_left(
    serve_app: Callable[..., RunningServer],
) -> None:
    # A node that died never counts its members out: the room's data still expires.
    app = create_app(max_rooms=MAX_ROOMS, room_ttl=0.3)
    running = serve_app(app)
    backend = app.store.backend
    assert isinstance(backend, MemoryBackend)
    with tether.connect_sync(running.ws_url) as member:
        member.submit("join_room", "Ann", "lobby")
        member.submit("say", "hi")
        assert running.call(lambda: backend.keys.expiring) == 2  # presence and history

        def swept() -> int:
            backend.keys.sweep()
            return len(backend.keys)

        def left() -> int:
            return int(running.call(swept))

        assert _settle(left, 1) == 1  # only the registry (the member is still counted in it)
        assert member.submit("join_room", "Ann", "lobby")["history"] == []
