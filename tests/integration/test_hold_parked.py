"""Parked sessions are bounded (issue 12, item 2): abortive drops never lock newcomers out."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

import orjson
import websockets

from tether import App


def ending_app() -> tuple[App, list[str]]:
    app = App()
    ended: list[str] = []

    @app.function(inputs=["text"], outputs=["text"])
    def echo(text):
        return text

    @app.on_session_end
    def end(session):
        ended.append(session.id)

    return app, ended


async def connect_and_reset(url: str, local: str = "127.0.0.1") -> str:
    """Open a session, then reset its TCP connection (SO_LINGER 0: an RST, no close frame)."""
    ws = await websockets.connect(url, local_addr=(local, 0))
    welcome = orjson.loads(await ws.recv())
    assert welcome["type"] == "welcome"
    sock: socket.socket = ws.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.transport.abort()
    return str(welcome["session"])


async def wait_for(srv: Any, what: Any, limit: int = 200) -> Any:
    for _ in range(limit):
        value = await asyncio.to_thread(srv.call, what)
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("the server did not get there")


async def test_abortive_drops_from_one_address_never_refuse_a_newcomer(serve_app):
    app, ended = ending_app()
    srv = serve_app(
        app,
        resume_grace=120,
        max_sessions=10,
        max_parked_sessions=8,
        max_parked_per_address=4,
    )
    dropped = [await connect_and_reset(srv.ws_url) for _ in range(40)]
    # Every drop parked its session; the address keeps its 4 newest, the rest ended
    # with their hooks run.
    await wait_for(srv, lambda: len(ended) >= 36 and len(srv.server.sessions) == 0)
    assert await asyncio.to_thread(srv.call, lambda: len(srv.server.parked)) == 4
    assert sorted(ended) == sorted(dropped[:36])
    async with websockets.connect(srv.ws_url) as ws:
        assert orjson.loads(await ws.recv())["type"] == "welcome"


async def test_the_parked_total_is_bounded_across_addresses_and_gives_way_to_the_live(serve_app):
    app, ended = ending_app()
    srv = serve_app(
        app,
        resume_grace=120,
        max_sessions=6,
        max_parked_sessions=5,
        max_parked_per_address=4,
    )
    for local in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
        for _ in range(4):
            await connect_and_reset(srv.ws_url, local)
    await wait_for(srv, lambda: len(ended) >= 7 and len(srv.server.sessions) == 0)
    assert await asyncio.to_thread(srv.call, lambda: len(srv.server.parked)) == 5
    # Live newcomers up to max_sessions: each one evicts a parked session, none is refused.
    live = [await websockets.connect(srv.ws_url) for _ in range(6)]
    try:
        for ws in live:
            assert orjson.loads(await ws.recv())["type"] == "welcome"
        assert await asyncio.to_thread(srv.call, lambda: len(srv.server.parked)) == 0
        await wait_for(srv, lambda: len(ended) == 12)
    finally:
        for ws in live:
            await ws.close()
