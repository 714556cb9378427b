"""Opening a client session: the handshake, the welcome, and reconnecting to resume."""

from __future__ import annotations

from collections.abc import Generator
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection

from ..errors import RemoteProtocolError, TetherError
from ..protocol import Welcome, decode_welcome, encode_resume
from .aio import Client

__all__ = ["connect"]


class _Connect:
    """``await connect(url)`` or ``async with connect(url) as c``."""

    def __init__(
        self,
        url: str,
        deltas: bool,
        keepalive: float | None,
        resume: bool,
        resume_timeout: float,
        kwargs: dict[str, Any],
    ) -> None:
        self.url = _with_query(url, "deltas", "1") if deltas else url
        self.keepalive = keepalive
        self.resume = resume
        self.resume_timeout = resume_timeout
        self.kwargs = kwargs
        self.client: Client | None = None

    async def _open(self) -> Client:
        ws, welcome = await self._handshake(self.url)
        self.client = Client(
            ws,
            welcome,
            self.keepalive,
            reconnect=self._resume if self.resume else None,
            resume_timeout=self.resume_timeout,
        )
        return self.client

    async def _resume(self, token: str) -> tuple[ClientConnection, Welcome]:
        # The token travels in the first message, not in the URL (access logs).
        return await self._handshake(_with_query(self.url, "resuming", "1"), token)

    async def _handshake(
        self, url: str, token: str | None = None
    ) -> tuple[ClientConnection, Welcome]:
        ws = await websockets.connect(url, max_size=None, compression=None, **self.kwargs)
        try:
            if token is not None:
                await ws.send(encode_resume(token), text=True)
            welcome = decode_welcome(await ws.recv())
        except RemoteProtocolError as exc:
            await ws.close()
            raise TetherError(exc.code, exc.message) from None
        except BaseException:
            await ws.close()
            raise
        return ws, welcome

    def __await__(self) -> Generator[Any, None, Client]:
        return self._open().__await__()

    async def __aenter__(self) -> Client:
        return await self._open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.client is not None:
            await self.client.close()


def connect(
    url: str,
    *,
    deltas: bool = True,
    keepalive: float | None = 60.0,
    resume: bool = True,
    resume_timeout: float = 30.0,
    **kwargs: Any,
) -> _Connect:
    """Open a session.

    ``deltas``: receive chatbot outputs as deltas (rebuilt here, so results are
    always whole). ``keepalive``: seconds between application pings that keep a
    quiet session from the server's idle timeout (``None``: none). ``resume``:
    after a network drop, reconnect (for up to ``resume_timeout`` seconds) and
    resume the same session, re-sending the submits still waiting. Extra keyword
    arguments go to ``websockets.connect`` (e.g. ``additional_headers`` for a token).
    """
    return _Connect(url, deltas, keepalive, resume, resume_timeout, kwargs)


def _with_query(url: str, key: str, value: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    query.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(query)))
