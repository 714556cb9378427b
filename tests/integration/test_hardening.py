"""Hardening on a real server: origins, authentication, caps, rate limits, heartbeats."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
import time
from typing import Any

import aiohttp
import orjson
import pytest
import websockets

import tether
from tether import App


def small_app() -> App:
    app = App()

    @app.function(inputs="number", outputs="number")
    def echo(n):
        return n

    @app.function(outputs="json")
    def whoami():
        ctx = tether.context()
        return {"identity": ctx.identity, "session": ctx.session_id, "client": ctx.client}

    return app


async def handshake_status(url: str, headers: dict[str, str] | None = None) -> int:
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(url, headers=headers or {})
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        await ws.close()
        return 101


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    return orjson.loads(msg.data)  # type: ignore[no-any-return]


async def close_code(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    async def until_closed() -> int | None:
        while True:
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return ws.close_code

    return await asyncio.wait_for(until_closed(), 15)


# -- origin ------------------------------------------------------------------


async def test_a_browser_handshake_from_a_foreign_origin_is_refused_with_403(serve_app):
    srv = serve_app(small_app())
    assert await handshake_status(srv.ws_url, {"Origin": "https://evil.example"}) == 403
    assert await handshake_status(srv.ws_url, {"Origin": "null"}) == 403


async def test_the_servers_own_origin_an_allowed_origin_and_no_origin_are_accepted(serve_app):
    srv = serve_app(small_app(), allow_origin="https://app.example, http://localhost:3000")
    own = f"http://127.0.0.1:{srv.port}"
    assert await handshake_status(srv.ws_url, {"Origin": own}) == 101
    assert await handshake_status(srv.ws_url, {"Origin": "https://app.example"}) == 101
    assert await handshake_status(srv.ws_url, {"Origin": "http://localhost:3000/"}) == 101
    assert await handshake_status(srv.ws_url) == 101
    assert await handshake_status(srv.ws_url, {"Origin": "http://localhost:3001"}) == 403


async def test_the_origin_check_can_be_turned_off(serve_app):
    srv = serve_app(small_app(), check_origin=False)
    assert await handshake_status(srv.ws_url, {"Origin": "https://evil.example"}) == 101


# -- authentication ----------------------------------------------------------


def token_app() -> App:
    app = small_app()
    tokens = {"s3cret": "ann", "banned": "mallory"}

    @app.authenticate
    def check(request):
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        user = tokens.get(token)
        if user == "mallory":
            raise tether.Refused(403, "banned")
        return {"user": user} if user else None

    return app


async def test_the_authenticate_hook_refuses_before_the_upgrade_and_passes_the_identity(
    serve_app,
):
    srv = serve_app(token_app())
    assert await handshake_status(srv.ws_url) == 401
    assert await handshake_status(srv.ws_url, {"Authorization": "Bearer wrong"}) == 401
    assert await handshake_status(srv.ws_url, {"Authorization": "Bearer banned"}) == 403
    async with tether.connect(
        srv.ws_url, additional_headers={"Authorization": "Bearer s3cret"}
    ) as c:
        me = await c.submit("whoami")
    assert me["identity"] == {"user": "ann"}
    assert me["session"] == c.session
    assert me["client"] == "127.0.0.1"


async def test_an_async_hook_that_hangs_is_bounded_by_the_handshake_timeout(serve_app):
    app = small_app()

    @app.authenticate
    async def slow(request):
        await asyncio.sleep(60)

    srv = serve_app(app, handshake_timeout=0.3)
    assert await handshake_status(srv.ws_url) == 503
    async with aiohttp.ClientSession() as http, http.get(srv.url + "/healthz") as resp:
        assert resp.status == 200


# -- caps --------------------------------------------------------------------


async def test_connections_over_the_per_address_cap_are_refused_and_released_on_close(serve_app):
    srv = serve_app(small_app(), max_connections_per_address=3)
    async with aiohttp.ClientSession() as http:
        open_ = [await http.ws_connect(srv.ws_url) for _ in range(3)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(srv.ws_url)
        assert info.value.status == 503
        await open_.pop().close()
        deadline = time.monotonic() + 10
        while srv.call(lambda: srv.server.counter.total) != 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        again = await http.ws_connect(srv.ws_url)
        await receive(again)
        for ws in [*open_, again]:
            await ws.close()


async def test_the_global_connection_cap_refuses_with_503_and_serves_the_others(serve_app):
    srv = serve_app(small_app(), max_connections=2)
    async with tether.connect(srv.ws_url) as a, tether.connect(srv.ws_url) as b:
        assert await handshake_status(srv.ws_url) == 503
        assert await a.submit("echo", 1) == 1
        assert await b.submit("echo", 2) == 2


# -- rate limits -------------------------------------------------------------


async def test_a_burst_of_200_and_a_paced_1000_per_second_pass_the_default_limits(serve_app):
    srv = serve_app(small_app())
    async with tether.connect(srv.ws_url) as c:
        assert await asyncio.gather(*(c.submit("echo", i) for i in range(200))) == list(range(200))
        calls = []
        for i in range(1000):  # at most 1000/s: never faster than the sustained rate
            calls.append(await c.start("echo", i))
            await asyncio.sleep(0.001)
        assert [(await call.result())[0] for call in calls] == list(range(1000))


async def test_a_flood_gets_rate_limited_with_retry_after_then_closed_with_1008(serve_app):
    srv = serve_app(small_app(), submit_rate=50, submit_burst=20, flood_limit=100)
    frames = [
        orjson.dumps({"type": "submit", "id": i, "fn": "echo", "data": [i]}).decode()
        for i in range(400)
    ]
    async with tether.connect(srv.ws_url) as bystander:
        async with websockets.connect(srv.ws_url) as ws:
            await ws.recv()

            async def flood() -> None:
                with contextlib.suppress(websockets.ConnectionClosed):
                    for frame in frames:
                        await ws.send(frame)

            sender = asyncio.create_task(flood())
            replies = []
            with contextlib.suppress(websockets.ConnectionClosed):
                while True:
                    replies.append(orjson.loads(await asyncio.wait_for(ws.recv(), 10)))
            await sender
            assert ws.close_code == 1008
        results = [r for r in replies if r["type"] == "result"]
        limited = [r for r in replies if r.get("code") == "rate_limited"]
        assert len(results) < 100  # (accepted ones finishing after the close are not sent)
        assert limited and all(r["retry_after"] > 0 and isinstance(r["id"], int) for r in limited)
        assert await bystander.submit("echo", 5) == 5


# -- heartbeats and idleness -------------------------------------------------


async def test_a_client_that_stops_answering_pings_is_dropped_and_its_session_ends(serve_app):
    app = small_app()
    ended = threading.Event()
    app.on_session_end(lambda session: ended.set())
    srv = serve_app(app, ping_interval=0.3, pong_timeout=0.3, resume_grace=0.2)
    async with aiohttp.ClientSession() as http:
        # autoping=False: the client does not answer pings (and we never read).
        ws = await http.ws_connect(srv.ws_url, autoping=False)
        started = time.monotonic()
        assert await asyncio.to_thread(ended.wait, 10)
        assert time.monotonic() - started < 10
        assert srv.call(lambda: len(srv.server.sessions)) == 0
        await ws.close()


async def test_a_client_that_answers_pings_stays_connected(serve_app):
    srv = serve_app(small_app(), ping_interval=0.1, pong_timeout=0.2)
    async with tether.connect(srv.ws_url) as c:
        await asyncio.sleep(1.0)
        assert await c.submit("echo", 1) == 1


async def test_a_client_that_keeps_talking_is_never_pinged_and_a_silent_one_is(serve_app):
    # Any message counts as a sign of life: pings only go to silent connections.
    srv = serve_app(small_app(), ping_interval=0.2, pong_timeout=5)
    async with aiohttp.ClientSession() as http:
        talker = await http.ws_connect(srv.ws_url, autoping=False)
        silent = await http.ws_connect(srv.ws_url, autoping=False)
        await receive(talker)
        await receive(silent)
        for i in range(20):  # 1 s of a message every 50 ms
            await talker.send_str(orjson.dumps({"type": "ping", "id": i}).decode())
            assert (await receive(talker))["type"] == "pong"
            await asyncio.sleep(0.05)
        msg = await asyncio.wait_for(silent.receive(), 10)
        assert msg.type is aiohttp.WSMsgType.PING
        await silent.pong(msg.data)
        assert srv.call(lambda: len(srv.server.sessions)) == 2
        await talker.close()
        await silent.close()


async def test_a_session_that_sends_nothing_is_closed_with_4001_after_the_idle_timeout(serve_app):
    srv = serve_app(small_app(), idle_timeout=0.4, ping_interval=0)
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(srv.ws_url)
        await receive(ws)
        assert await close_code(ws) == 4001
    async with tether.connect(srv.ws_url, keepalive=0.1) as c:  # pings keep it alive
        await asyncio.sleep(1.0)
        assert await c.submit("echo", 3) == 3


async def test_a_client_that_leaves_during_the_handshake_costs_no_traceback_and_no_slot(
    serve_app, caplog
):
    app = small_app()
    entered = threading.Event()

    @app.authenticate
    async def slow(request):
        entered.set()
        await asyncio.sleep(0.5)  # the client is gone by the time the upgrade is written
        return "someone"

    srv = serve_app(app)
    caplog.set_level(logging.DEBUG)
    request = (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    for _ in range(3):
        entered.clear()
        sock = socket.create_connection(("127.0.0.1", srv.port))
        sock.sendall(request)
        assert await asyncio.to_thread(entered.wait, 10)
        # Reset, not a polite FIN: the server's write of the 101 fails.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        await asyncio.sleep(0.7)
    assert srv.call(lambda: srv.server.counter.total) == 0
    async with tether.connect(srv.ws_url) as c:
        assert await c.submit("echo", 7) == 7
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]
