"""Session resume after a network drop, on one node (the memory store)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import orjson
import websockets

import tether
from tether import App
from tether.protocol import encode_resume


def counting_app() -> tuple[App, dict[str, Any]]:
    app = App()
    seen: dict[str, Any] = {
        "runs": 0,
        "ended": [],
        "gate": threading.Event(),
        "entered": threading.Event(),
    }

    @app.function(inputs=["text", "state"], outputs=["json", "state"])
    def note(text, notes=[]):  # noqa: B006
        seen["runs"] += 1
        if text == "slow":
            seen["entered"].set()
            seen["gate"].wait(10)
        notes.append(text)
        return list(notes), notes

    @app.on_session_end
    def ended(session):
        seen["ended"].append(session.id)

    return app, seen


def drop(client: tether.Client) -> None:
    """Cut the TCP connection without a close frame, as a network failure would."""
    client.ws.transport.abort()


async def test_the_client_resumes_after_a_drop_with_its_state_and_session(serve_app):
    app, seen = counting_app()
    srv = serve_app(app)
    async with tether.connect(srv.ws_url) as c:
        assert c.welcome.resumed is False and c.resume_token
        session = c.session
        await c.submit("note", "a")
        drop(c)
        assert await c.submit("note", "b") == ["a", "b"]
        assert c.resumes == 1 and c.session == session
    assert seen["runs"] == 2


async def test_a_submit_in_flight_when_the_connection_drops_runs_once_and_is_answered(serve_app):
    app, seen = counting_app()
    srv = serve_app(app)
    async with tether.connect(srv.ws_url) as c:
        call = await c.start("note", "slow")
        assert await asyncio.to_thread(seen["entered"].wait, 10)
        drop(c)
        await asyncio.sleep(0.2)
        seen["gate"].set()
        assert await asyncio.wait_for(call.result(), 10) == [["slow"]]
        assert await c.submit("note", "after") == ["slow", "after"]
    assert seen["runs"] == 2


async def test_a_re_sent_submit_id_after_a_resume_gets_the_stored_result(serve_app):
    app, seen = counting_app()
    srv = serve_app(app)
    ws = await websockets.connect(srv.ws_url)
    welcome = orjson.loads(await ws.recv())
    await ws.send('{"type":"submit","id":"once","fn":"note","data":["x"]}')
    first = orjson.loads(await ws.recv())
    ws.transport.abort()
    again = await websockets.connect(srv.ws_url + "?resuming=1")
    await again.send(encode_resume(welcome["resume"]).decode())
    resumed = orjson.loads(await again.recv())
    assert resumed["resumed"] is True and resumed["session"] == welcome["session"]
    await again.send('{"type":"submit","id":"once","fn":"note","data":["x"]}')
    assert orjson.loads(await again.recv()) == first
    await again.send('{"type":"submit","id":"twice","fn":"note","data":["y"]}')
    assert orjson.loads(await again.recv())["data"] == [["x", "y"]]
    await again.close()
    assert seen["runs"] == 2


async def test_a_token_in_the_url_resumes_nothing_since_protocol_8(serve_app):
    app, _ = counting_app()
    srv = serve_app(app)
    ws = await websockets.connect(srv.ws_url)
    welcome = orjson.loads(await ws.recv())
    ws.transport.abort()
    async with websockets.connect(srv.ws_url + "?resume=" + welcome["resume"]) as legacy:
        fresh = orjson.loads(await legacy.recv())
    assert fresh["resumed"] is False and fresh["session"] != welcome["session"]


async def test_a_forged_or_expired_token_gives_a_fresh_session(serve_app):
    app, seen = counting_app()
    srv = serve_app(app, resume_grace=0.3)
    async with websockets.connect(srv.ws_url + "?resuming=1") as ws:
        await ws.send(encode_resume("forged").decode())
        assert orjson.loads(await ws.recv())["resumed"] is False
    ws = await websockets.connect(srv.ws_url)
    welcome = orjson.loads(await ws.recv())
    ws.transport.abort()
    deadline = time.monotonic() + 10
    while welcome["session"] not in seen["ended"]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    async with websockets.connect(srv.ws_url + "?resuming=1") as late:
        await late.send(encode_resume(welcome["resume"]).decode())
        fresh = orjson.loads(await late.recv())
        assert fresh["resumed"] is False and fresh["session"] != welcome["session"]


async def test_on_session_end_runs_once_after_the_grace_period_and_not_on_resume(serve_app):
    app, seen = counting_app()
    srv = serve_app(app, resume_grace=0.5)
    async with tether.connect(srv.ws_url) as c:
        await c.submit("note", "a")
        drop(c)
        await c.submit("note", "b")  # resumed within the grace period
        assert seen["ended"] == []
        assert srv.call(lambda: len(srv.server.parked)) == 0
    # A clean close ends the session at once, no grace period.
    deadline = time.monotonic() + 10
    while seen["ended"] != [c.session]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


async def test_a_page_style_clean_close_is_not_parked(serve_app):
    app, seen = counting_app()
    srv = serve_app(app)
    async with websockets.connect(srv.ws_url) as ws:
        await ws.recv()
    deadline = time.monotonic() + 10
    while len(seen["ended"]) != 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert srv.call(lambda: len(srv.server.parked)) == 0
