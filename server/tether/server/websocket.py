"""One WebSocket connection, from the upgrade to the end: admission, the session
(new, resumed from this node, or claimed from another; a resume's token comes in
the first message, and a resume of a session another connection holds is
refused with ``session_held``), the welcome, the read loop, and what happens to
the session when the connection ends (parked for a resume after a drop, else
closed).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from ..core.resume import load_record
from ..core.session import Session
from ..protocol import Close, Code, decode_resume, encode_error, encode_welcome
from ..store.sessions import SessionHeld
from .frames import GuardedResponse
from .outbox import Connection
from .routes import admit

if TYPE_CHECKING:
    from .server import Server

__all__ = ["handle"]

log = logging.getLogger("tether.transport")

_NO_QUERY: dict[str, str] = {}
_BINARY_REFUSED = encode_error(
    None, Code.BAD_MESSAGE, "binary frames are not part of the protocol; send JSON text frames"
)

_HELD = encode_error(
    None, Code.SESSION_HELD, "the session is held by another connection; try again later"
)


async def handle(server: Server, request: web.Request) -> web.StreamResponse:
    """The handler of ``GET /ws``.

    Its coroutine lives as long as the connection, and so does everything its frame
    holds: the setup (``_open``) and the end (``_end``) run in coroutines of their own,
    so that this one keeps only the read loop's few locals.
    """
    ws = GuardedResponse(
        server.incomplete,
        max_msg_size=server.settings.max_message_size,
        compress=server.settings.compression,
        timeout=server.settings.close_timeout,
        # Pings and pongs are ours (keepalive.py): one sweep for every connection
        # instead of a timer per connection reset per message.
        autoping=False,
    )
    opened = await _open(server, request, ws)
    if opened is None:
        return ws
    conn, session = opened
    del opened
    try:
        # The read loop, inline: a helper coroutine would be one more frame per
        # idle connection (and so is ``async for``'s __anext__; and each local is
        # 8 bytes of this one's).
        while True:
            msg = await ws.receive()
            kind = msg.type
            if kind is WSMsgType.TEXT:
                session.receive(msg.data)
            elif kind is WSMsgType.PONG:
                conn.heard_at = asyncio.get_running_loop().time()
                session.admit_frame(len(msg.data))  # control frames count as messages
            elif kind is WSMsgType.PING:
                if session.admit_frame(len(msg.data)):
                    await ws.pong(msg.data)
            elif kind is WSMsgType.BINARY:
                if session.admit_frame(len(msg.data)):
                    conn.send(_BINARY_REFUSED)
            else:  # CLOSE, CLOSING, CLOSED, ERROR
                break
            del msg
            if conn.requested_close is not None:
                break
        if conn.requested_close is not None:
            # Closing from this task (no receive pending) lets aiohttp wait for
            # the client's close reply, reading what it still sends, instead of
            # closing the socket under unread data (a TCP reset loses the frame).
            await conn.flush_and_close(*conn.requested_close, server.settings.close_timeout)
    finally:
        await _end(server, request, ws, conn, session)
    return ws


async def _open(
    server: Server, request: web.Request, ws: GuardedResponse
) -> tuple[Connection, Session] | None:
    """Admission, the upgrade, the session (new or resumed) and the welcome; None when
    the connection ended on the way (then nothing of it is left to clean up)."""
    identity = await admit(server, request)
    settings = server.settings
    address = request.remote or ""
    server.counter.add(address)
    try:
        await ws.prepare(request)
    except ConnectionError as exc:
        # The client went away during the handshake: nothing to serve, and
        # nothing worth a traceback.
        server.counter.remove(address)
        log.debug("a client left during the handshake: %r", exc)
        return None
    except BaseException:
        server.counter.remove(address)
        raise
    server.handshakes.upgraded(request.protocol)
    task = asyncio.current_task()
    assert task is not None
    server.handlers.add(task)
    conn = Connection(ws, settings, request.transport, server.metrics)
    # (request.query is a parsed copy kept as long as the request, and request.raw_path
    # one more entry in the request's cache: only the query's presence is looked at.)
    query = request.query if "?" in request._message.path else _NO_QUERY
    deltas = query.get("deltas", "") in ("1", "true")
    # The token comes in the first message (?resuming=1), out of access logs
    # (protocol 6's ?resume=<token> is gone since protocol 8).
    token = ""
    resuming = query.get("resuming", "") == "1" and settings.resume_grace > 0
    del query
    parked = server.parked
    try:
        if resuming:
            token = await _resume_message(ws, settings.handshake_timeout)
        session, record = await parked.find(token)
    except SessionHeld:
        # One connection holds a session: a resume while it is connected is refused.
        # Held here? Ping its connection now: a dead one is found in pong_timeout.
        holder = parked.holder(token)
        held_by = server.connections.get(holder.id) if holder is not None else None
        if held_by is not None and not held_by.ping_at:
            held_by.ping(asyncio.get_running_loop().time())
        conn.send(_HELD)
        await conn.flush_and_close(Close.TRY_AGAIN_LATER, "session held", settings.close_timeout)
        server.counter.remove(address)
        conn.closed = True
        conn.stop_writer()
        await conn.wait_closed(settings.close_timeout + 2)
        server.handlers.discard(task)
        return None
    resumed = session is not None
    if session is not None:
        session.attach(conn, deltas=deltas)
    else:
        session = Session(
            server.services,
            conn,  # (the object, not a bound method of it: per-session memory)
            deltas=deltas,
            client=address or None,
            identity=identity,
            id=record.get("id") if record else None,
        )
        resumed = record is not None
    if settings.resume_grace > 0:
        parked.hold(session)
    server.sessions[session.id] = session
    server.connections[session.id] = conn
    try:
        if resumed and parked.shared:
            # Held under its new token before the client learns that token.
            await parked.saved(session, record)
        extra: dict[str, Any] = {**server.app.welcome_fields(), "deltas": deltas}
        if settings.resume_grace > 0:
            extra["resume"] = session.resume_token
            extra["resumed"] = resumed
        conn.send(encode_welcome(session.id, server.manifest, **extra))
        if record is not None:
            load_record(session, server.app, record)
    except BaseException:
        await _end(server, request, ws, conn, session)
        raise
    return conn, session


async def _end(
    server: Server, request: web.Request, ws: GuardedResponse, conn: Connection, session: Session
) -> None:
    """The connection is over: park its session for a resume, or close it."""
    if ws.guard is not None:
        ws.guard.release()
        if ws.guard.failed:
            # Closed for breaking the protocol (1002, 1007, 1008, 1009; frames.py): the
            # session ends; resuming it would only replay the fault.
            conn.closed_by_server = True
    server.sessions.pop(session.id, None)
    server.connections.pop(session.id, None)
    server.counter.remove(request.remote or "")
    conn.closed = True
    conn.stop_writer()
    parked = server.parked
    if _should_park(server, ws, conn):
        parked.park(session)
    else:
        parked.release(session)
        await session.close()
        if session.on_commit is not None:
            parked.forget(session.resume_token)
    # A close handshake we started must finish before aiohttp drops the socket.
    await conn.wait_closed(server.settings.close_timeout + 2)
    server.handlers.discard(asyncio.current_task())


def _should_park(server: Server, ws: web.WebSocketResponse, conn: Connection) -> bool:
    """Park a session whose connection dropped (no close frame from the client, a
    missed pong); a client that closed on purpose, or that we closed for a reason,
    ends its session now."""
    if server.settings.resume_grace <= 0 or server.stopping:
        return False
    if conn.requested_close is not None or conn.closed_by_server:
        return False
    return conn.dead or ws.close_code not in (1000, 1001)


async def _resume_message(ws: web.WebSocketResponse, limit: float) -> str:
    """A resuming connection's first message: its token ("" when it sent none in time:
    a fresh session)."""
    try:
        async with asyncio.timeout(limit):
            msg = await ws.receive()
    except TimeoutError:
        return ""
    if msg.type is not WSMsgType.TEXT:
        return ""
    return decode_resume(msg.data) or ""
