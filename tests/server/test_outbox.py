"""A connection's outgoing side, on a transport that records what is written."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from tether.server.outbox import Connection, _frame_header
from tether.settings import Settings


class Transport:
    """What a connection writes, and a write buffer that can be made to look full."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.buffered = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def writelines(self, parts: Any) -> None:
        self.written.append(b"".join(parts))

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.closing = True


def connection(transport: Transport, **settings: Any) -> Connection:
    return Connection(web.WebSocketResponse(), Settings(**settings), transport)  # type: ignore[arg-type]


def text_frame(payload: bytes) -> bytes:
    return _frame_header(len(payload)) + payload


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70_000])
def test_frame_headers_follow_rfc_6455(size):
    header = _frame_header(size)
    assert header[0] == 0x81  # final text frame
    if size < 126:
        assert header[1:] == bytes([size])
    elif size < 65536:
        assert header[1] == 126 and int.from_bytes(header[2:]) == size
    else:
        assert header[1] == 127 and int.from_bytes(header[2:]) == size


async def test_one_event_to_many_connections_is_framed_right_for_each():
    transports = [Transport() for _ in range(3)]
    conns = [connection(t) for t in transports]
    event, other = b'{"type":"event"}', b'{"type":"result"}'
    for conn in conns:
        conn.send(event)  # the same bytes object: framed once, written to each
    conns[1].send(other)
    conns[1].send(event)
    big = b"x" * 20_000  # written as header and payload, not copied
    conns[2].send(big)
    assert transports[0].written == [text_frame(event)]
    assert transports[1].written == [text_frame(event), text_frame(other), text_frame(event)]
    assert transports[2].written == [text_frame(event), text_frame(big)]


async def test_equal_but_distinct_frames_are_each_framed():
    transport = Transport()
    conn = connection(transport)
    conn.send(b"abc")
    conn.send(bytes(bytearray(b"abd")))
    assert transport.written == [text_frame(b"abc"), text_frame(b"abd")]


async def test_a_peer_that_falls_behind_gets_a_queue_bounded_in_bytes_then_4008():
    transport = Transport()
    conn = connection(transport, send_queue_messages=100, send_queue_bytes=1000)
    transport.buffered = 1 << 20  # the socket is not draining: frames queue
    conn.send(b"a" * 400)
    conn.send(b"b" * 400)
    assert transport.written == [] and conn.queued_bytes == 800
    conn.send(b"c" * 400)  # over the byte limit: a slow consumer
    assert conn.closed and conn.queued_bytes == 0
    conn.send(b"d")  # closed: dropped
    assert transport.written == []
    await asyncio.sleep(0)  # let the close task start
    conn.stop_writer()


async def test_frames_written_after_a_close_was_sent_are_dropped():
    transport = Transport()
    conn = connection(transport)
    conn.ws._closed = True  # aiohttp sent a close frame (ws.close, or the peer's close)
    conn.send(b"late")
    assert transport.written == [] and conn.closed


async def test_a_connection_keeps_the_first_close_it_was_asked_for():
    conn = connection(Transport())
    conn.request_close(4001, "first")
    conn.request_close(1008, "second")
    assert conn.requested_close == (4001, "first")
