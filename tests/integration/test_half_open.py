"""Half-open handshakes (TCP connections that never finish their HTTP request) count
against their own caps: beyond them a connection is answered 503 and closed at once,
and everyone else can still connect. The attackers connect from other loopback
addresses (127.0.0.2, 127.0.0.3) to the server on 127.0.0.1."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson

from tests.integration.test_wire_attacks import echo_app


async def half_open(
    port: int, source: str, request: bytes = b"GET /ws HTTP/1.1\r\nHo"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    if request:
        writer.write(request)
        await writer.drain()
    return reader, writer


async def refused_at_once(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before it closed (bounded: an open socket fails the test)."""
    return await asyncio.wait_for(reader.read(), 10)


async def everyone_else_is_served(srv) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{srv.url}/healthz") as response:
            assert response.status == 200
        ws = await http.ws_connect(srv.ws_url)
        assert orjson.loads((await ws.receive()).data)["type"] == "welcome"
        await ws.send_str('{"type": "submit", "id": 1, "fn": "echo", "data": [5]}')
        assert orjson.loads((await ws.receive()).data)["data"] == [5]
        await ws.close()


async def counted(srv, n: int) -> None:
    for _ in range(250):  # until the server has accepted them all (bounded)
        if srv.call(lambda: len(srv.server.handshakes)) >= n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{n} connections were never counted")


async def test_half_open_handshakes_beyond_the_per_address_cap_are_refused_at_once(serve_app):
    srv = serve_app(echo_app(), max_handshakes_per_address=20, handshake_timeout=60)
    held = [await half_open(srv.port, "127.0.0.2") for _ in range(20)]
    await counted(srv, 20)
    # (Sending nothing: bytes the server never reads would turn its close into a reset.)
    over = [await half_open(srv.port, "127.0.0.2", b"") for _ in range(30)]
    answers = await asyncio.gather(*(refused_at_once(reader) for reader, _ in over))
    assert all(a.startswith(b"HTTP/1.1 503") for a in answers), answers[:3]
    assert srv.call(lambda: len(srv.server.handshakes)) == 20
    await everyone_else_is_served(srv)
    for _, writer in held + over:
        writer.close()
    for _ in range(250):
        if not srv.call(lambda: len(srv.server.handshakes)):
            break
        await asyncio.sleep(0.02)
    assert srv.call(lambda: len(srv.server.handshakes)) == 0
    # Upgraded connections do not count: the address may hold more WebSockets than
    # its handshake cap.
    async with aiohttp.ClientSession() as http:
        sockets = [await http.ws_connect(srv.ws_url) for _ in range(25)]
        for ws in sockets:
            assert orjson.loads((await ws.receive()).data)["type"] == "welcome"
        assert srv.call(lambda: len(srv.server.handshakes)) == 0
        for ws in sockets:
            await ws.close()


async def test_half_open_handshakes_beyond_the_total_cap_are_refused_at_once(serve_app):
    srv = serve_app(echo_app(), max_handshakes=10, handshake_timeout=60)
    held = [await half_open(srv.port, "127.0.0.2") for _ in range(10)]
    await counted(srv, 10)
    reader, writer = await half_open(srv.port, "127.0.0.3", b"")
    assert (await refused_at_once(reader)).startswith(b"HTTP/1.1 503")
    writer.close()
    for _, held_writer in held:
        held_writer.close()
    for _ in range(250):
        if not srv.call(lambda: len(srv.server.handshakes)):
            break
        await asyncio.sleep(0.02)
    await everyone_else_is_served(srv)


async def test_a_request_that_trickles_in_is_closed_after_handshake_timeout(serve_app):
    srv = serve_app(echo_app(), handshake_timeout=0.5)
    reader, writer = await half_open(srv.port, "127.0.0.2", b"G")

    async def trickle() -> None:
        for byte in b"ET /ws HTTP/1.1\r\nHost: x\r\n" * 100:
            if writer.is_closing():
                return
            writer.write(bytes((byte,)))
            await asyncio.sleep(0.05)

    sender = asyncio.create_task(trickle())
    assert await asyncio.wait_for(reader.read(), 30) == b""  # closed, well before the end
    assert not sender.done()
    sender.cancel()
    writer.close()
