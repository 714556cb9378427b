"""The load tester's connections against real servers, on both client stacks (picows'
``PicowsConnection``, aiohttp's ``LeanConnection``): replies matched by id, and what
they report."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from tests.loadtest.conftest import Send
from tether.demo import create_app
from tether.errors import RemoteProtocolError
from tether.loadtest import LeanConnection
from tether.loadtest.picows_connection import PicowsConnection
from tether.loadtest.replies import Connection, ConnectionLost, Reply
from tether.loadtest.stacks import open_stack
from tether.protocol import (
    Error,
    Event,
    Result,
    ServerMessage,
    Submit,
    Subscribed,
    encode_submit,
    encode_welcome,
)


class Seen:
    """What a connection handed to its callbacks."""

    def __init__(self) -> None:
        self.frames: list[ServerMessage] = []
        self.violations: list[str] = []
        self.changed = asyncio.Event()

    def frame(self, message: ServerMessage) -> None:
        self.frames.append(message)
        self.changed.set()

    def violation(self, text: str) -> None:
        self.violations.append(text)
        self.changed.set()

    async def until(self, ready: Any) -> None:
        async with asyncio.timeout(10):
            while not ready():
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture(params=["picows", "aiohttp"])
async def opener(request):
    """Opens connections of one client stack (each test runs on both)."""
    async with open_stack(request.param) as open_one:
        yield open_one


async def open_connection(opener: Any, url: str, seen: Seen, first_id: int = 1000) -> Connection:
    return await opener(url, seen.frame, seen.violation, first_id)


async def send_raw(conn: Connection, frame: bytes) -> None:
    """A frame past the connection's submit ids (as a confused client would send it)."""
    if isinstance(conn, PicowsConnection):
        from picows import WSMsgType

        conn.transport.send(WSMsgType.TEXT, frame)
    else:
        from aiohttp import WSMsgType

        assert isinstance(conn, LeanConnection)
        await conn.ws.send_frame(frame, WSMsgType.TEXT)


async def test_a_submit_gets_its_own_result_as_a_typed_message(serve_app, opener):
    srv = serve_app(create_app())
    seen = Seen()
    conn = await open_connection(opener, srv.ws_url, seen)
    first, second = await asyncio.gather(conn.submit("chat", ["one"]), conn.submit("chat", ["two"]))
    error = await conn.submit("no_such_function", [])
    await conn.close()
    assert type(first) is Result and first.id == 1000
    assert type(second) is Result and second.id == 1001
    assert [pair[0] for pair in second.data[0]] == ["one", "two"]
    assert type(error) is Error and error.code == "unknown_fn"
    assert seen.violations == [] and seen.frames == []


async def test_a_reply_to_an_id_the_connection_never_sent_is_a_violation(serve_app, opener):
    srv = serve_app(create_app())
    seen = Seen()
    conn = await open_connection(opener, srv.ws_url, seen)
    # A submit that bypasses the connection's ids: the server's reply answers
    # nothing this connection sent.
    await send_raw(conn, encode_submit(7, "chat", ["stray"]))
    await seen.until(lambda: seen.violations)
    assert type(await conn.submit("chat", ["mine"])) is Result
    await conn.close()
    assert seen.violations == ["a result for submit 7, which was never sent"]


async def test_a_second_reply_to_an_answered_submit_is_a_violation(serve_app, opener):
    srv = serve_app(create_app())
    seen = Seen()
    conn = await open_connection(opener, srv.ws_url, seen)
    assert type(await conn.submit("chat", ["once"])) is Result
    # The same id again: the server answers it a second time.
    await send_raw(conn, encode_submit(1000, "chat", ["twice"]))
    await seen.until(lambda: seen.violations)
    await conn.close()
    assert seen.violations == ["a second reply to submit 1000 (result)"]


async def test_messages_that_answer_no_submit_go_to_on_frame(serve_app, opener):
    srv = serve_app(create_app())
    seen = Seen()
    conn = await open_connection(opener, srv.ws_url, seen)
    joined = await conn.submit("join_room", ["ann", "lobby"])
    await seen.until(lambda: any(type(m) is Event for m in seen.frames))
    await conn.close()
    assert type(joined) is Result
    assert Subscribed("room:lobby") in seen.frames
    [event] = [m for m in seen.frames if type(m) is Event]
    assert event.topic == "room:lobby"
    assert event.data["kind"] == "presence" and "ann" in event.data["members"]
    assert seen.violations == []


async def test_a_frame_the_protocol_does_not_allow_is_a_violation_and_ends_the_connection(
    raw_server, opener
):
    async def result_without_data(submit: Submit, send: Send, history: list[Any]) -> None:
        await send(orjson.dumps({"type": "result", "id": submit.id}))

    url = raw_server(result_without_data)
    seen = Seen()
    conn = await open_connection(opener, url, seen)
    with pytest.raises(ConnectionLost):
        await conn.submit("chat", ["hello"])
    await conn.wait_closed()
    assert conn.closed
    await conn.close()
    [violation] = seen.violations
    assert violation.startswith("the server broke the protocol: ")
    assert "'result'" in violation


async def test_a_server_of_another_protocol_version_is_refused_at_open(raw_server, opener):
    async def never(submit: Submit, send: Send, history: list[Any]) -> None:
        raise AssertionError("no submit should be sent")

    welcome = orjson.loads(encode_welcome("old", []))
    url = raw_server(never, welcome=orjson.dumps({**welcome, "protocol": 1}))
    with pytest.raises(RemoteProtocolError, match="server speaks protocol 1"):
        await open_connection(opener, url, Seen())


async def test_picows_hands_a_reply_straight_to_its_callback(serve_app):
    srv = serve_app(create_app())
    seen = Seen()
    conn = await PicowsConnection.open(srv.ws_url, seen.frame, seen.violation, 1 << 32)
    assert conn.sends_now and conn.stack == "picows"
    replies: list[Reply | None] = []
    done = asyncio.Event()

    def on_reply(reply: Reply | None) -> None:
        replies.append(reply)
        if len(replies) < 3:  # the next submit leaves from inside the callback
            conn.submit_then("chat", [f"turn {len(replies)}"], on_reply)
        else:
            done.set()

    conn.submit_then("chat", ["turn 0"], on_reply)
    async with asyncio.timeout(10):
        await done.wait()
    assert [type(r) for r in replies] == [Result, Result, Result]
    assert [r.id for r in replies if r is not None] == [(1 << 32) + k for k in range(3)]
    last = replies[-1]
    assert isinstance(last, Result)
    assert [pair[0] for pair in last.data[0]] == ["turn 0", "turn 1", "turn 2"]
    assert conn.in_flight == 0
    await conn.close()
    assert conn.closed and seen.violations == []


async def test_a_callback_waiting_when_the_server_closes_gets_none(raw_server):
    async def close_instead(submit: Submit, send: Send, history: list[Any]) -> None:
        raise ConnectionResetError  # the raw server drops the connection

    url = raw_server(close_instead)
    seen = Seen()
    conn = await PicowsConnection.open(url, seen.frame, seen.violation)
    got: list[Reply | None] = []
    closed = asyncio.Event()

    def on_reply(reply: Reply | None) -> None:
        got.append(reply)
        closed.set()

    conn.submit_then("chat", ["hello"], on_reply)
    async with asyncio.timeout(10):
        await closed.wait()
    assert got == [None] and conn.closed
    with pytest.raises(ConnectionLost):
        conn.submit_then("chat", ["again"], on_reply)
    await conn.close()
