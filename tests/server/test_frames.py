"""The frame guard in front of aiohttp's real WebSocket reader, without a socket: it
hands every byte on unchanged however the stream is cut, and its accounting of
unfinished messages returns to zero."""

from __future__ import annotations

import asyncio
import random
import struct
from typing import Any

from aiohttp import WSMsgType
from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader

from tests.integration.rawws import CLOSE, CONTINUATION, TEXT, frame
from tether.server.frames import FrameGuard, IncompleteBytes, valid_close_code

PING, PONG = 0x9, 0xA


class _Transport:
    _reading_paused = False

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def guarded(budget: IncompleteBytes, max_size: int = 1 << 20) -> tuple[FrameGuard, Any]:
    queue = WebSocketDataQueue(_Transport(), 1 << 30, loop=asyncio.get_running_loop())
    return FrameGuard(
        WebSocketReader(queue, max_size, compress=False, decode_text=True), queue, budget
    ), queue


def stream(rng: random.Random) -> tuple[bytes, list[tuple[WSMsgType, Any]]]:
    """Random masked traffic: whole and fragmented text messages, pings and pongs
    between fragments, every payload length form."""
    wire, expected = [], []
    for _ in range(60):
        size = rng.choice([0, 1, 125, 126, 127, 65535, 65536, 70000, rng.randrange(300)])
        text = "".join(rng.choice("aé€") for _ in range(size // 2))
        body = text.encode()
        pieces = rng.randrange(1, 5)
        cuts = sorted(rng.randrange(len(body) + 1) for _ in range(pieces - 1))
        parts = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        for i, part in enumerate(parts):
            if rng.random() < 0.3:  # a control frame, before or between fragments
                opcode = rng.choice([PING, PONG])
                payload = bytes(rng.randrange(256) for _ in range(rng.randrange(126)))
                wire.append(frame(opcode, payload))
                expected.append((WSMsgType.PING if opcode == PING else WSMsgType.PONG, payload))
            wire.append(frame(TEXT if i == 0 else CONTINUATION, part, fin=i == len(parts) - 1))
        expected.append((WSMsgType.TEXT, text))
    wire.append(frame(CLOSE, struct.pack("!H", 1000)))
    expected.append((WSMsgType.CLOSE, 1000))
    return b"".join(wire), expected


async def test_any_cut_of_a_valid_stream_reaches_aiohttps_reader_unchanged() -> None:
    for seed in range(12):
        rng = random.Random(seed)
        data, expected = stream(rng)
        budget = IncompleteBytes(1 << 30)
        guard, queue = guarded(budget)
        pos = 0
        while pos < len(data):
            step = rng.choice([1, 2, 3, 7, 14, 100, 4096, 65536])
            assert guard.feed_data(data[pos : pos + step]) == (False, b"")
            pos += step
            assert budget.total >= 0
        assert not guard.failed
        assert budget.total == 0 and guard.started == 0.0
        got = []
        for _ in expected:
            msg = await asyncio.wait_for(queue.read(), 5)
            got.append((msg.type, msg.data))
        assert got == expected, seed


async def test_an_unfinished_message_holds_its_bytes_until_it_ends_or_the_connection_does():
    budget = IncompleteBytes(1 << 30)
    guard, _ = guarded(budget)
    guard.feed_data(frame(TEXT, b"x" * 1000, fin=False))
    assert budget.total == 1000 and guard.started > 0
    whole = frame(CONTINUATION, b"y" * 500)
    guard.feed_data(whole[:200])  # header (8 bytes with the mask) and 192 payload bytes
    assert budget.total == 1000 + 200 - 8
    guard.feed_data(whole[200:])
    assert budget.total == 0 and guard.started == 0.0
    guard.feed_data(frame(TEXT, b"z" * 300, fin=False))
    assert budget.total == 300
    guard.feed_eof()
    assert budget.total == 0


def test_close_codes_a_peer_may_send() -> None:
    assert [c for c in range(0, 6000) if valid_close_code(c)] == [
        *range(1000, 1004),
        *range(1007, 1015),
        *range(3000, 5000),
    ]
