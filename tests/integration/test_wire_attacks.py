"""Frames no honest client sends, on raw sockets to a real server: unmasked frames,
forbidden close codes, messages that never finish, forged origins."""

from __future__ import annotations

import asyncio
import struct

import aiohttp
import orjson
import pytest

from tests.integration.rawws import CLOSE, CONTINUATION, TEXT, frame, raw_connect
from tether import App


def echo_app() -> App:
    app = App()

    @app.function(inputs="number", outputs="number")
    def echo(n):
        return n

    return app


async def echo_works(port: int) -> None:
    ws = await raw_connect(port)
    await ws.submit(1, "echo", 7)
    answer = await ws.read_message()
    assert (answer["type"], answer["data"]) == ("result", [7]), answer
    await ws.send(frame(CLOSE, struct.pack("!H", 1000)))
    assert await ws.close_code() == 1000
    ws.close()


async def parked(srv) -> int:
    """Sessions parked once every handler has ended (bounded wait)."""
    for _ in range(250):
        if not srv.call(lambda: len(srv.server.sessions)):
            break
        await asyncio.sleep(0.02)
    return int(srv.call(lambda: len(srv.server.parked)))


# -- RFC 6455 ----------------------------------------------------------------


async def test_an_unmasked_client_frame_closes_with_1002_and_ends_the_session(serve_app):
    srv = serve_app(echo_app())
    ws = await raw_connect(srv.port)
    await ws.submit(1, "echo", 1, mask=False)
    assert await ws.close_code() == 1002
    ws.close()
    assert await parked(srv) == 0
    await echo_works(srv.port)


async def test_frames_sent_with_the_handshake_are_checked_too(serve_app):
    srv = serve_app(echo_app())
    body = orjson.dumps({"type": "submit", "id": 1, "fn": "echo", "data": [1]})
    ws = await raw_connect(srv.port, then=frame(TEXT, body, mask=False))
    assert await ws.close_code() == 1002
    ws.close()
    ws = await raw_connect(srv.port, then=frame(TEXT, body))
    assert (await ws.read_message())["data"] == [1]
    ws.close()


@pytest.mark.parametrize("code", [1004, 1005, 1006, 1015, 5000, 65535])
async def test_a_close_code_a_peer_must_not_send_is_answered_with_1002(serve_app, code):
    srv = serve_app(echo_app())
    ws = await raw_connect(srv.port)
    await ws.send(frame(CLOSE, struct.pack("!H", code) + b"bye"))
    assert await ws.close_code() == 1002
    ws.close()


@pytest.mark.parametrize("code", [1000, 1001, 1011, 3000, 4999])
async def test_a_valid_close_code_is_answered_normally(serve_app, code):
    srv = serve_app(echo_app())
    ws = await raw_connect(srv.port)
    await ws.send(frame(CLOSE, struct.pack("!H", code)))
    assert await ws.close_code() == 1000
    ws.close()


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (frame(CONTINUATION, b"x"), 1002),  # a continuation of nothing
        (frame(TEXT, b'{"type": "ping", "x": "\xff"}'), 1007),  # not UTF-8
        (frame(TEXT, b" " * 2048), 1009),  # over max_message_size
        # Fragments count together: an unfinished message is bounded the same way.
        (frame(TEXT, b" " * 600, fin=False) + frame(CONTINUATION, b" " * 600, fin=False), 1009),
    ],
    ids=["1002", "1007", "1009", "1009-fragments"],
)
async def test_a_session_ended_by_a_protocol_error_is_not_parked(serve_app, bad, code):
    srv = serve_app(echo_app(), max_message_size=1024, resume_grace=30)
    ws = await raw_connect(srv.port)
    await ws.send(bad)
    assert await ws.close_code() == code
    ws.close()
    assert await parked(srv) == 0


# -- messages that never finish -----------------------------------------------


async def test_a_message_that_does_not_finish_in_message_timeout_closes_with_1008(serve_app):
    srv = serve_app(echo_app(), message_timeout=0.5)
    fragmented = await raw_connect(srv.port)
    await fragmented.send(frame(TEXT, b'{"type": "pi', fin=False))
    # An unfinished frame's payload is held the same way.
    trickled = await raw_connect(srv.port)
    await trickled.send(frame(TEXT, b" " * 600)[:300])
    assert await fragmented.close_code(limit=20) == 1008
    assert await trickled.close_code(limit=20) == 1008
    fragmented.close()
    trickled.close()
    await echo_works(srv.port)


async def test_unfinished_messages_share_one_budget_and_the_one_passing_it_closes_with_1009(
    serve_app,
):
    chunk = b" " * 100_000
    srv = serve_app(echo_app(), incomplete_message_bytes=250_000, max_message_size=1 << 20)
    holders = [await raw_connect(srv.port) for _ in range(2)]
    for ws in holders:
        await ws.send(frame(TEXT, b'{"type": "ping", "pad": "' + chunk, fin=False))
    for _ in range(100):  # until the server has read both (bounded)
        if srv.call(lambda: srv.server.incomplete.total) >= 200_000:
            break
        await asyncio.sleep(0.02)
    assert srv.call(lambda: srv.server.incomplete.total) >= 200_000
    third = await raw_connect(srv.port)
    await third.send(frame(TEXT, b'{"type": "ping", "pad": "' + chunk, fin=False))
    assert await third.close_code() == 1009
    third.close()
    # Small messages that arrive whole take nothing from the budget.
    await echo_works(srv.port)
    # The holders finish their messages: they are answered, and the budget is free.
    for ws in holders:
        await ws.send(frame(CONTINUATION, b'"}'))
        assert (await ws.read_message())["type"] == "pong"
    assert srv.call(lambda: srv.server.incomplete.total) == 0
    for ws in holders:
        await ws.send(frame(TEXT, b'{"type": "ping", "pad": "' + chunk, fin=False))
        ws.close()
    for _ in range(100):  # dropped mid-message: their bytes are given back
        if srv.call(lambda: srv.server.incomplete.total) == 0:
            break
        await asyncio.sleep(0.02)
    assert srv.call(lambda: srv.server.incomplete.total) == 0


# -- origin --------------------------------------------------------------------


async def handshake(port: int, headers: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\n{headers}\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    return head.split(b" ", 2)[1]


async def test_the_origin_is_compared_whole_and_only_once(serve_app):
    srv = serve_app(echo_app(), allow_origin="https://app.example")
    own = f"http://127.0.0.1:{srv.port}"
    assert await handshake(srv.port, f"Origin: {own}\r\n") == b"101"
    assert await handshake(srv.port, "Origin: https://app.example:443\r\n") == b"101"
    for origin in (
        f"ftp://127.0.0.1:{srv.port}",
        f"{own}/x",
        f"http://127.0.0.1:{srv.port + 1}",
        "http://app.example",
        "https://app.example/x",
    ):
        assert await handshake(srv.port, f"Origin: {origin}\r\n") == b"403", origin
    # Two Origin headers: refused, whichever comes first.
    two = f"Origin: {own}\r\nOrigin: https://evil.example\r\n"
    assert await handshake(srv.port, two) == b"403"
    two = f"Origin: {own}\r\nOrigin: {own}\r\n"
    assert await handshake(srv.port, two) == b"403"
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(srv.ws_url)
        assert orjson.loads((await ws.receive()).data)["type"] == "welcome"
        await ws.close()
