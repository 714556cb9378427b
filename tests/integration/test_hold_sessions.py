"""One connection holds a session, in the whole cluster (issue 12, items 4 and 14).

Two nodes (in-process servers, and subprocess nodes that are killed with -9) on
one real redis-server: a resume while the owner is connected is refused, two
resumes at once have one winner, the token rotates and travels in the first
message, and every result a client saw survives its node.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import websockets

import tether
from tests.conftest import RunningServer
from tests.integration.test_cluster import Node, cluster, resume_when_free
from tether.demo import create_app

__all__ = ["cluster"]


def submit(id: int, text: str) -> str:
    return orjson.dumps({"type": "submit", "id": id, "fn": "chat", "data": [text]}).decode()


def resume_message(token: str) -> str:
    return orjson.dumps({"type": "resume", "token": token}).decode()


async def open_resume(srv: RunningServer | Node, token: str) -> tuple[Any, dict[str, Any]]:
    """Resume with the token in the first message: (ws, the first frame)."""
    ws = await websockets.connect(srv.ws_url + "?resuming=1")
    await ws.send(resume_message(token))
    return ws, orjson.loads(await asyncio.wait_for(ws.recv(), 10))


async def chat(ws: Any, id: int, text: str) -> list[str]:
    await ws.send(submit(id, text))
    answer = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
    assert answer["type"] == "result", answer
    return [m for m, _ in answer["data"][0]]


@pytest.fixture
def two_nodes(serve_app, redis_server, redis_namespace) -> list[RunningServer]:
    settings = {"store": redis_server.url, "namespace": redis_namespace}
    return [serve_app(create_app(), **settings) for _ in range(2)]


async def wait_parked(srv: RunningServer, token: str) -> None:
    for _ in range(200):
        if await asyncio.to_thread(srv.call, lambda: token in srv.server.parked):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the session was not parked")


async def test_a_resume_while_the_owner_is_connected_is_refused_on_any_node(two_nodes):
    a, b = two_nodes
    owner = await websockets.connect(a.ws_url)
    welcome = orjson.loads(await owner.recv())
    assert await chat(owner, 1, "mine") == ["mine"]  # saved to Redis, held by a
    for node in (b, a):
        clone, first = await open_resume(node, welcome["resume"])
        assert first["type"] == "error" and first["code"] == "session_held", first
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(clone.recv(), 10)
        assert clone.close_code == 1013
        # Protocol 6's ?resume=<token> is gone (protocol 8): a fresh session.
        legacy = await websockets.connect(node.ws_url + "?resume=" + welcome["resume"])
        fresh = orjson.loads(await legacy.recv())
        assert fresh["type"] == "welcome" and fresh["resumed"] is False
        assert fresh["session"] != welcome["session"]
        await legacy.close()
    # The owner was not disturbed.
    assert await chat(owner, 2, "still mine") == ["mine", "still mine"]
    await owner.close()


async def test_of_two_resumes_at_once_of_a_dropped_session_exactly_one_wins(two_nodes):
    a, b = two_nodes
    for trial, (first, second) in enumerate([(a, b), (b, a), (a, a), (b, b), (a, b), (b, a)]):
        owner = await websockets.connect(a.ws_url)
        welcome = orjson.loads(await owner.recv())
        await chat(owner, 1, f"trial {trial}")
        owner.transport.abort()
        await wait_parked(a, welcome["resume"])
        outcomes = await asyncio.gather(
            open_resume(first, welcome["resume"]), open_resume(second, welcome["resume"])
        )
        won = [hello for _, hello in outcomes if hello.get("resumed") is True]
        assert len(won) == 1, [hello for _, hello in outcomes]
        assert won[0]["session"] == welcome["session"]
        for ws, _ in outcomes:
            await ws.close()


async def test_the_token_rotates_on_every_resume_and_a_spent_one_resumes_nothing(two_nodes):
    a, b = two_nodes
    owner = await websockets.connect(a.ws_url)
    welcome = orjson.loads(await owner.recv())
    tokens = [welcome["resume"]]
    await chat(owner, 1, "one")
    for node in (a, b, b, a):  # same node and across nodes
        owner.transport.abort()
        url = node.ws_url + "?resuming=1"
        owner, hello = await resume_when_free(url, resume_message(tokens[-1]))
        assert hello["resumed"] is True and hello["session"] == welcome["session"]
        assert hello["resume"] not in tokens
        tokens.append(hello["resume"])
    assert await chat(owner, 2, "two") == ["one", "two"]
    owner.transport.abort()
    for spent in tokens[:-1]:
        for node in (a, b):
            ws, hello = await open_resume(node, spent)
            assert hello["resumed"] is False
            await ws.close()
    ws, hello = await resume_when_free(a.ws_url + "?resuming=1", resume_message(tokens[-1]))
    assert hello["resumed"] is True
    await ws.close()


async def test_the_token_in_the_first_message_resumes_on_one_node_memory_store(serve_app):
    srv = serve_app(create_app())
    owner = await websockets.connect(srv.ws_url)
    welcome = orjson.loads(await owner.recv())
    await chat(owner, 1, "one")
    clone, first = await open_resume(srv, welcome["resume"])
    assert first["code"] == "session_held"
    await clone.close()
    owner.transport.abort()
    await wait_parked(srv, welcome["resume"])
    again, hello = await open_resume(srv, welcome["resume"])
    assert hello["resumed"] is True and hello["resume"] != welcome["resume"]
    assert await chat(again, 2, "two") == ["one", "two"]
    await again.close()


async def test_every_acknowledged_turn_survives_kill_9_of_its_node(cluster):
    (b,) = cluster(1, "--resume-node-lease", "0.5")
    for trial in range(5):
        a = Node(cluster.dir, cluster.redis.url, cluster.namespace, "--resume-node-lease", "0.5")
        a.start()
        ws = await websockets.connect(a.ws_url)
        welcome = orjson.loads(await ws.recv())
        turns = [f"t{trial} one", f"t{trial} two", f"t{trial} three"]
        for i, text in enumerate(turns):
            seen = await chat(ws, i, text)
        assert seen == turns
        a.kill()  # right after the third result
        resumed, hello = await resume_when_free(
            b.ws_url + "?resuming=1", resume_message(welcome["resume"])
        )
        assert hello["resumed"] is True, hello
        assert await chat(resumed, 3, "after") == [*turns, "after"]
        await resumed.close()


async def test_a_refused_resume_finds_a_dead_holder_in_pong_timeout_not_ping_interval(serve_app):
    # The client's old connection is dead but the server has not noticed (no pings for a
    # minute): the refused resume makes the server ping it, and the retry resumes.
    srv = serve_app(create_app(), ping_interval=60, pong_timeout=0.5)
    owner = await websockets.connect(srv.ws_url)
    welcome = orjson.loads(await owner.recv())
    await chat(owner, 1, "one")
    owner.transport.pause_reading()  # reads (and answers) nothing from now on
    url = srv.ws_url + "?resuming=1"
    again, hello = await resume_when_free(url, resume_message(welcome["resume"]), tries=50)
    assert hello["resumed"] is True and hello["session"] == welcome["session"]
    assert await chat(again, 2, "two") == ["one", "two"]
    await again.close()
    owner.transport.abort()


async def test_the_python_client_resumes_without_the_token_in_its_request_line(serve_app):
    srv = serve_app(create_app())
    lines: list[bytes] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", srv.port)
        first = await reader.readline()
        lines.append(first)
        up_writer.write(first)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    proxy = await asyncio.start_server(relay, "127.0.0.1", 0)
    port = proxy.sockets[0].getsockname()[1]
    try:
        async with tether.connect(f"ws://127.0.0.1:{port}/ws") as c:
            token = c.resume_token
            assert token
            await c.submit("chat", "one")
            c.ws.transport.abort()
            assert [m for m, _ in await c.submit("chat", "two")] == ["one", "two"]
            assert c.resumes == 1 and c.resume_token != token
    finally:
        proxy.close()
    assert len(lines) == 2 and b"resuming=1" in lines[1]
    assert all(token.encode() not in line and b"resume=" not in line for line in lines)
