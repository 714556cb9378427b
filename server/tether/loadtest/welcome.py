"""``read_welcome``: the command line reads the server's welcome once before a run, to
know its functions (the auto scenario calls them; the demo's scenarios need theirs)."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import WSMsgType

from ..errors import RemoteProtocolError
from ..protocol import Welcome, decode_welcome
from .replies import MAX_REPLY_SIZE

__all__ = ["fetch_welcome", "read_welcome"]


async def fetch_welcome(url: str) -> Welcome:
    """Connect to ``url``, read the welcome, close; raises when there is none."""
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, max_msg_size=MAX_REPLY_SIZE, compress=0) as ws,
    ):
        msg = await ws.receive()
        if msg.type is not WSMsgType.TEXT:
            raise ConnectionError(f"the connection closed before the welcome ({msg.type!r})")
        return decode_welcome(msg.data)


async def _fetch_within(url: str, seconds: float) -> Welcome:
    async with asyncio.timeout(seconds):
        return await fetch_welcome(url)


def read_welcome(url: str, timeout: float) -> Welcome | None:
    """``fetch_welcome`` from synchronous code; None when the server gave none (the run
    then goes ahead, and each generator process tries for itself)."""
    try:
        return asyncio.run(_fetch_within(url, timeout))
    except (OSError, aiohttp.ClientError, TimeoutError, RemoteProtocolError, ValueError):
        return None
