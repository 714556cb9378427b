"""A WebSocket client on a raw socket, for frames no library would send."""

from __future__ import annotations

import asyncio
import base64
import os
import struct

import orjson

__all__ = ["RawWS", "frame", "raw_connect"]

TEXT, CLOSE, CONTINUATION = 0x1, 0x8, 0x0


def frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True) -> bytes:
    """One client frame (masked unless told otherwise)."""
    first = (0x80 if fin else 0) | opcode
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head = bytes((first, bit | n))
    elif n < 65536:
        head = struct.pack("!BBH", first, bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, bit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    stream = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload) ^ int.from_bytes(stream)).to_bytes(n) if n else b""
    return head + key + masked


class RawWS:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def submit(self, id: int, fn: str, *data: object, mask: bool = True) -> None:
        body = orjson.dumps({"type": "submit", "id": id, "fn": fn, "data": list(data)})
        await self.send(frame(TEXT, body, mask=mask))

    async def read_frame(self) -> tuple[int, bytes]:
        first, second = await self.reader.readexactly(2)
        n = second & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(n)

    async def read_message(self, limit: float = 10) -> dict[str, object]:
        opcode, payload = await asyncio.wait_for(self.read_frame(), limit)
        assert opcode == TEXT, (opcode, payload)
        return orjson.loads(payload)  # type: ignore[no-any-return]

    async def close_code(self, limit: float = 10) -> int | None:
        """Read up to the server's close frame: its code (None: the socket just ended)."""

        async def until_close() -> int | None:
            while True:
                try:
                    opcode, payload = await self.read_frame()
                except (asyncio.IncompleteReadError, ConnectionError):
                    return None
                if opcode == CLOSE:
                    return int.from_bytes(payload[:2]) if payload else 1005

        return await asyncio.wait_for(until_close(), limit)

    def close(self) -> None:
        self.writer.close()


async def raw_connect(port: int, path: str = "/ws", headers: str = "", then: bytes = b"") -> RawWS:
    """Handshake on a raw socket (``then``: bytes sent right behind the request, in the
    same write) and read the welcome."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{headers}\r\n"
        ).encode()
        + then
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101"), head
    ws = RawWS(reader, writer)
    welcome = await ws.read_message()
    assert welcome["type"] == "welcome", welcome
    return ws
