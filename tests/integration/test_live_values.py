"""Current values of topics (protocol 8) on a real server, one process and a Redis cluster.

A late subscriber gets the topic's current value first, then every change: no
gap, no duplicate, on the node where the changes happen or on another one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
import websockets

import tether
from tests.conftest import RunningServer
from tests.redis_server import RedisServer
from tether import App, context
from tether.cluster.channels import current_key
from tether.demo import create_app


def live_app() -> App:
    """The demo, plus a counter whose every value is published as the topic's value."""
    app = create_app()
    app.allow_topics("counter", "news")

    @app.function(outputs="number")
    def bump() -> int:
        value: int = app.store.sync.update("counter", lambda v: v + 1, 0, topic="counter")
        return value

    @app.function(inputs="json", outputs="number")
    async def announce(value: Any) -> int:
        app.publish("news", value, retain=True)
        return 1

    @app.function(inputs="json", outputs="number")
    def tell(value: Any) -> int:
        context().publish("news", value, retain=True)
        return 1

    @app.function(inputs="json", outputs="number")
    async def chatter(value: Any) -> int:
        app.publish("news", value)  # not a value: not kept
        return 1

    return app


Nodes = Callable[[], tuple[RunningServer, RunningServer]]


@pytest.fixture(params=["one process", "two nodes on Redis"])
def nodes(request: pytest.FixtureRequest, serve_app: Any) -> Nodes:
    """(where the changes happen, where the late subscriber is): the same server, or
    two servers sharing a real redis-server."""

    def start() -> tuple[RunningServer, RunningServer]:
        if request.param == "one process":
            srv = serve_app(live_app())
            return srv, srv
        redis: RedisServer = request.getfixturevalue("redis_server")
        namespace: str = request.getfixturevalue("redis_namespace")
        a = serve_app(live_app(), store=redis.url, namespace=namespace)
        b = serve_app(live_app(), store=redis.url, namespace=namespace)
        return a, b

    return start


async def frames(ws: Any) -> dict[str, Any]:
    return orjson.loads(await asyncio.wait_for(ws.recv(), 10))  # type: ignore[no-any-return]


async def subscribe_raw(url: str, topic: str) -> Any:
    ws = await websockets.connect(url)
    assert (await frames(ws))["type"] == "welcome"
    await ws.send(orjson.dumps({"type": "subscribe", "topic": topic}).decode())
    assert await frames(ws) == {"type": "subscribed", "topic": topic}
    return ws


async def events_until(ws: Any, done: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    while not seen or not done(seen[-1]):
        message = await frames(ws)
        assert message["type"] == "event", message
        seen.append(message)
    return seen


async def nothing_before_pong(ws: Any) -> None:
    await ws.send('{"type":"ping"}')
    assert await frames(ws) == {"type": "pong"}


async def test_a_late_subscriber_gets_the_top_3_at_once_without_a_new_submit(nodes: Nodes):
    a, b = nodes()
    async with tether.connect(a.ws_url) as player:
        for score in (70, 90, 10, 80):
            await player.submit("track_score", score)
    async with tether.connect(b.ws_url) as viewer:
        await viewer.subscribe("scores")
        assert await viewer.next_event("scores", timeout=10) == [90, 80, 70]
    ws = await subscribe_raw(b.ws_url, "scores")
    current = await frames(ws)
    assert current["current"] is True and current["data"] == [90, 80, 70]
    assert isinstance(current["seq"], int)
    await ws.close()


async def test_a_late_subscriber_sees_the_current_value_then_every_change_no_gap_no_duplicate(
    nodes: Nodes,
):
    a, b = nodes()
    writers_per_node, bumps = 3, 40
    total = 2 * writers_per_node * bumps
    early = await subscribe_raw(a.ws_url, "counter")
    writers = [await tether.connect(n.ws_url) for n in (a, b) for _ in range(writers_per_node)]

    async def write(client: Any) -> None:
        for _ in range(bumps):
            await client.submit("bump")

    try:
        writing = [asyncio.create_task(write(c)) for c in writers]
        seen_early = await events_until(early, lambda e: e["data"] >= total // 4)
        late = await subscribe_raw(b.ws_url, "counter")  # while the changes go on
        seen_late = await events_until(late, lambda e: e["data"] == total)
        await asyncio.gather(*writing)
        seen_early += await events_until(early, lambda e: e["data"] == total)
    finally:
        for c in writers:
            await c.close()
    # The early subscriber saw every change, in order, each with a larger seq.
    assert [e["data"] for e in seen_early] == list(range(1, total + 1))
    seqs = [e["seq"] for e in seen_early]
    assert seqs == sorted(seqs) and len(set(seqs)) == total
    # The late one: the current value, flagged, then exactly the changes after it.
    first, rest = seen_late[0], seen_late[1:]
    assert first["current"] is True and not any(e.get("current") for e in rest)
    start = first["data"]
    assert [e["data"] for e in rest] == list(range(start + 1, total + 1))
    by_value = {e["data"]: e["seq"] for e in seen_early}
    assert [e["seq"] for e in seen_late] == [by_value[v] for v in range(start, total + 1)]
    await early.close()
    await late.close()


async def test_the_current_value_after_concurrent_changes_from_many_sessions_is_the_last(
    nodes: Nodes,
):
    a, b = nodes()
    clients = [await tether.connect(n.ws_url) for n in (a, b) for _ in range(10)]
    try:
        await asyncio.gather(*(c.submit("bump") for c in clients for _ in range(10)))
    finally:
        for c in clients:
            await c.close()
    for node in (a, b):
        ws = await subscribe_raw(node.ws_url, "counter")
        current = await frames(ws)
        assert current["current"] is True and current["data"] == 200
        await nothing_before_pong(ws)
        await ws.close()


async def test_retained_publishes_from_app_and_context_keep_the_value_and_plain_ones_do_not(
    nodes: Nodes,
):
    a, b = nodes()
    async with tether.connect(a.ws_url) as c:
        await c.submit("announce", {"headline": "one"})
        await c.submit("tell", {"headline": "two"})
        await c.submit("chatter", "just saying")  # an event, not the value
    # app.publish hands the value to the bridge, which writes it to Redis after the
    # submit's answer: on a loaded machine another node may read it a moment later.
    for _ in range(50):
        ws = await subscribe_raw(b.ws_url, "news")
        current = await frames(ws)
        assert current["current"] is True
        if current["data"] == {"headline": "two"}:
            break
        assert current["data"] == {"headline": "one"}  # the earlier value, never chatter
        await ws.close()
        await asyncio.sleep(0.1)
    assert current["data"] == {"headline": "two"}
    await nothing_before_pong(ws)
    await ws.close()


async def test_a_topic_that_never_had_a_value_sends_only_subscribed(nodes: Nodes):
    _, b = nodes()
    ws = await subscribe_raw(b.ws_url, "news")
    await nothing_before_pong(ws)
    await ws.close()


async def test_a_rooms_presence_is_its_current_value_for_a_visitor_who_has_not_joined(
    nodes: Nodes,
):
    a, b = nodes()
    async with tether.connect(a.ws_url) as ann, tether.connect(a.ws_url) as bob:
        await ann.submit("join_room", "Ann", "lobby")
        await bob.submit("join_room", "Bob", "lobby")
        ws = await subscribe_raw(b.ws_url, "room:lobby")
        current = await frames(ws)
        assert current["current"] is True
        assert current["data"] == {"kind": "presence", "members": ["Ann", "Bob"]}
        await bob.submit("leave_room")
        change = await frames(ws)
        assert change["data"] == {"kind": "presence", "members": ["Ann"]}
        assert change["seq"] > current["seq"] and "current" not in change
        await ws.close()


async def test_a_current_value_in_redis_lives_retained_ttl_after_its_last_change(
    serve_app: Any, redis_server: RedisServer, redis_namespace: str
):
    srv = serve_app(live_app(), store=redis_server.url, namespace=redis_namespace, retained_ttl=0.4)
    async with tether.connect(srv.ws_url) as c:
        await c.submit("bump")
    client = aioredis.Redis.from_url(redis_server.url)
    key = current_key(redis_namespace, "counter")
    try:
        ttl = await client.pttl(key)
        assert 0 < ttl <= 400
        frame = orjson.loads(await client.hget(key, "frame"))
        assert frame["data"] == 1 and frame["topic"] == "counter"
        for _ in range(200):  # Redis expires it (bounded wait)
            if not await client.exists(key):
                break
            await asyncio.sleep(0.05)
        assert not await client.exists(key)
    finally:
        await client.aclose()
    ws = await subscribe_raw(srv.ws_url, "counter")
    await nothing_before_pong(ws)  # gone with its TTL
    await ws.close()
