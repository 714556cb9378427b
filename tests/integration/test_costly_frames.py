"""Costly frames on a real server (issue 12, items 10 and 11): messages are charged
to the rate limit by size, nesting is capped far below orjson's 1024 levels, and
WebSocket pings, pongs and binary frames count against flood control like messages."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
import websockets

import tether
from tether import App


def echo_app() -> App:
    app = App()

    @app.function(inputs="json", outputs="json")
    def echo(value):
        return value

    return app


def submit(id: int, value: Any) -> str:
    return orjson.dumps({"type": "submit", "id": id, "fn": "echo", "data": [value]}).decode()


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


async def answers(ws: Any, count: int) -> list[dict[str, Any]]:
    """The next ``count`` results and errors (at most ten seconds each)."""
    got: list[dict[str, Any]] = []
    while len(got) < count:
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame["type"] in ("result", "error"):
            got.append(frame)
    return got


async def test_a_message_nested_deeper_than_max_message_depth_gets_bad_message(serve_app):
    srv = serve_app(echo_app())  # default max_message_depth: 32
    async with websockets.connect(srv.ws_url, max_size=None) as ws:
        await ws.recv()
        # The message is level 1 and data level 2: a value nested 30 deep is level 32.
        await ws.send(submit(1, nested(30)))
        await ws.send(submit(2, nested(40)))
        await ws.send(submit(3, [nested(31), "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]))
        ok, deep, deeper = sorted(await answers(ws, 3), key=lambda r: r["id"])
        assert ok == {"type": "result", "id": 1, "data": [nested(30)]}
        assert deep.get("code") == "bad_message" and deep["id"] == 2
        assert "deeper than 32 levels" in deep["message"]
        assert deeper["code"] == "bad_message" and deeper["id"] == 3
        # Brackets inside strings are not nesting.
        await ws.send(submit(4, ["[" * 100, {"a": "{" * 100}]))
        (fine,) = await answers(ws, 1)
        assert fine["type"] == "result" and fine["id"] == 4


async def accepted_before_rate_limited(url: str, value: Any, count: int) -> int:
    """How many of ``count`` identical submits a fresh session gets served before the
    first ``rate_limited``."""
    async with websockets.connect(url, max_size=None) as ws:
        await ws.recv()
        for i in range(count):
            await ws.send(submit(i, value))
        replies = await answers(ws, count)
        # Even a big rate-limited frame (not decoded) is answered with its id.
        assert sorted(r["id"] for r in replies) == list(range(count))
        codes = [r.get("code", "ok") for r in sorted(replies, key=lambda r: r["id"])]
        assert set(codes) <= {"ok", "rate_limited"}
        return codes.index("rate_limited") if "rate_limited" in codes else count


async def test_big_messages_exhaust_the_rate_limit_in_proportion_to_their_size(serve_app):
    # A bucket of 40 that hardly refills; message_cost_bytes is 1024 by default.
    srv = serve_app(echo_app(), submit_rate=0.01, submit_burst=40, flood_limit=10**6)
    small = await accepted_before_rate_limited(srv.ws_url, "x", 60)
    big = await accepted_before_rate_limited(srv.ws_url, "x" * 10_000, 60)  # ~10 KiB: 10 tokens
    assert small == 40
    assert 3 <= big <= 5  # 40 tokens at 10 or 11 each (the last one may run into debt)
    # A message bigger than the whole bucket is still accepted on a full bucket.
    huge = await accepted_before_rate_limited(srv.ws_url, "x" * 100_000, 3)
    assert huge == 1


async def flood_with(srv: Any, kind: str) -> int | None:
    """Send up to 20,000 frames of ``kind``; the close code the server ended with."""
    async with websockets.connect(srv.ws_url, max_queue=None) as ws:
        await ws.recv()
        with contextlib.suppress(websockets.ConnectionClosed):
            for _ in range(20_000):
                if kind == "ping":
                    await ws.ping()
                elif kind == "pong":
                    await ws.pong(b"unsolicited")
                else:
                    await ws.send(b"\x00binary")
        with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
            async with asyncio.timeout(10):
                while True:
                    await ws.recv()
        return ws.close_code


async def test_a_flood_of_websocket_pings_pongs_or_binary_frames_is_closed_with_1008(serve_app):
    srv = serve_app(echo_app(), submit_rate=50, submit_burst=20, flood_limit=100)
    async with tether.connect(srv.ws_url) as bystander:
        for kind in ("ping", "pong", "binary"):
            assert await flood_with(srv, kind) == 1008, kind
        assert await bystander.submit("echo", 5) == 5
