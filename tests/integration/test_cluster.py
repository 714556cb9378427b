"""Several tether nodes (real processes) on one real redis-server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets

import tether
from tests.conftest import free_port
from tests.redis_server import RedisServer
from tether.protocol import encode_resume

APP = textwrap.dedent(
    """
    from tether.demo import create_app

    app = create_app()

    @app.function(outputs="number")
    def bump():
        return app.store.sync.incr("hits")

    @app.function(inputs="text", outputs="number")
    def publish(text):
        app.publish("scores", text)
        return 1
    """
)


class Node:
    def __init__(self, module_dir: Path, redis_url: str, namespace: str, *extra: str) -> None:
        self.port = free_port()
        self.args = [
            sys.executable, "-m", "tether", "serve", "clusterapp:app",
            "--port", str(self.port), "--store", redis_url, "--namespace", namespace,
            "--log-level", "warning", *extra,
        ]  # fmt: skip
        self.cwd = module_dir
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Node:
        self.proc = subprocess.Popen(
            self.args, cwd=self.cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if "serving on" in line:
                return self
            if not line and self.proc.poll() is not None:
                break
        raise AssertionError(f"node did not start: {self.proc.poll()}")

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
                return r.status, orjson.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, orjson.loads(exc.read())

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


async def resume_when_free(url: str, first: str | None = None, tries: int = 100) -> Any:
    """Connect to resume, again while the session is held (bounded): (ws, welcome)."""
    for _ in range(tries):
        ws = await websockets.connect(url)
        if first is not None:
            await ws.send(first)
        hello = orjson.loads(await ws.recv())
        if hello["type"] == "welcome":
            return ws, hello
        assert hello["code"] == "session_held", hello
        await ws.close()
        await asyncio.sleep(0.1)
    raise AssertionError("the session stayed held")


@pytest.fixture
def cluster(tmp_path: Path, own_redis_server: RedisServer) -> Iterator[Any]:
    (tmp_path / "clusterapp.py").write_text(APP)
    namespace = "t" + uuid.uuid4().hex[:8]
    started: list[Node] = []

    def start(count: int = 3, *extra: str) -> list[Node]:
        nodes = [Node(tmp_path, own_redis_server.url, namespace, *extra) for _ in range(count)]
        for node in nodes:
            started.append(node.start())
        return nodes

    start.redis = own_redis_server  # type: ignore[attr-defined]
    start.dir = tmp_path  # type: ignore[attr-defined]
    start.namespace = namespace  # type: ignore[attr-defined]
    yield start
    for node in started:
        node.stop()


async def test_increments_and_scores_from_sessions_on_three_nodes_are_exact(cluster):
    nodes = cluster(3)
    clients = [await tether.connect(node.ws_url) for node in nodes for _ in range(3)]
    try:
        bumps = await asyncio.gather(*(c.submit("bump") for c in clients for _ in range(40)))
        assert sorted(bumps) == list(range(1, 361))
        scores = list(range(1, 91))
        await asyncio.gather(
            *(c.submit("track_score", s) for c, s in zip(clients * 10, scores, strict=False))
        )
        assert await clients[0].submit("track_score", 0) == [90, 89, 88]
    finally:
        for c in clients:
            await c.close()


async def test_a_publish_on_one_node_reaches_subscribers_on_the_others_and_presence_agrees(
    cluster,
):
    a, b, c = cluster(3)
    async with (
        tether.connect(a.ws_url) as on_a,
        tether.connect(b.ws_url) as on_b,
        tether.connect(c.ws_url) as on_c,
    ):
        await on_b.subscribe("scores")
        await on_c.subscribe("scores")
        await on_a.submit("track_score", 42)
        assert await on_b.next_event("scores", timeout=10) == [42]
        assert await on_c.next_event("scores", timeout=10) == [42]
        await on_a.submit("publish", "hello")
        assert await on_b.next_event("scores", timeout=10) == "hello"
        assert await on_c.next_event("scores", timeout=10) == "hello"

        await on_a.submit("join_room", "Ann", "lobby")
        await on_b.submit("join_room", "Bob", "lobby")
        joined = await on_c.submit("join_room", "Cy", "lobby")
        assert joined["members"] == ["Ann", "Bob", "Cy"]
        for client in (on_a, on_b):
            while (event := await client.next_event("room:lobby", timeout=10))["members"] != [
                "Ann",
                "Bob",
                "Cy",
            ]:
                assert event["kind"] == "presence"
        await on_c.submit("say", "hi all")
        for client in (on_a, on_b):
            said = await client.next_event("room:lobby", timeout=10)
            assert (said["name"], said["text"]) == ("Cy", "hi all")


async def test_a_session_resumes_on_another_node_after_its_node_is_killed(cluster):
    a, b, _ = cluster(3, "--resume-node-lease", "0.5")
    ws = await websockets.connect(a.ws_url)
    welcome = orjson.loads(await ws.recv())
    for i, text in enumerate(["one", "two"]):
        await ws.send(
            orjson.dumps({"type": "submit", "id": i, "fn": "chat", "data": [text]}).decode()
        )
        last = orjson.loads(await ws.recv())
    a.kill()
    # Held by node a until its lease runs out (session_held, 1013 meanwhile).
    resumed, hello = await resume_when_free(
        b.ws_url + "?resuming=1", encode_resume(welcome["resume"]).decode()
    )
    assert hello["resumed"] is True and hello["session"] == welcome["session"]
    await resumed.send(
        orjson.dumps({"type": "submit", "id": 1, "fn": "chat", "data": ["two"]}).decode()
    )
    assert orjson.loads(await resumed.recv()) == last  # answered, not run again
    await resumed.send(
        orjson.dumps({"type": "submit", "id": 2, "fn": "chat", "data": ["three"]}).decode()
    )
    history = orjson.loads(await resumed.recv())["data"][0]
    assert [m for m, _ in history] == ["one", "two", "three"]
    await resumed.close()
    # The token was used: it cannot resume a second time elsewhere.
    async with websockets.connect(b.ws_url + "?resuming=1") as again:
        await again.send(encode_resume(welcome["resume"]).decode())
        assert orjson.loads(await again.recv())["resumed"] is False


async def test_killing_redis_gives_store_unavailable_and_service_recovers_by_itself(cluster):
    a, b = cluster(2)
    redis: RedisServer = cluster.redis
    async with tether.connect(a.ws_url) as on_a, tether.connect(b.ws_url) as on_b:
        await on_b.subscribe("scores")
        assert await on_a.submit("bump") == 1
        redis.kill()
        with pytest.raises(tether.TetherError) as info:
            await on_a.submit("bump")
        assert info.value.code == "store_unavailable"
        assert "unavailable" in info.value.message
        assert (await on_a.submit("chat", "still here"))[-1][0] == "still here"
        assert a.get("/healthz")[0] == 200
        assert a.get("/readyz")[0] == 503
        redis.restart()
        deadline = time.monotonic() + 20
        while True:
            try:
                await on_a.submit("bump")
                break
            except tether.TetherError as exc:
                assert exc.code == "store_unavailable"
                assert time.monotonic() < deadline, "the store did not recover"
                await asyncio.sleep(0.2)
        while a.get("/readyz")[0] != 200 or b.get("/readyz")[0] != 200:
            assert time.monotonic() < deadline, "readyz did not recover"
            await asyncio.sleep(0.2)
        await on_a.submit("track_score", 7)
        assert await on_b.next_event("scores", timeout=10) == [7]
        assert a.proc.poll() is None and b.proc.poll() is None


def test_workers_share_one_port_and_each_takes_connections(cluster):
    node = Node(cluster.dir, cluster.redis.url, cluster.namespace, "--workers", "2")
    node.start()
    try:
        pids = set()
        deadline = time.monotonic() + 30
        while len(pids) < 2:
            assert time.monotonic() < deadline, f"only saw workers {pids}"
            pids.add(node.get("/healthz")[1]["pid"])
        assert node.proc is not None and node.proc.pid not in pids
        with tether.connect_sync(node.ws_url) as c:
            assert c.submit("bump") == 1
    finally:
        node.stop()
    assert node.proc.returncode == 0


def test_workers_are_refused_with_the_memory_store(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tether", "demo", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ},
    )
    assert result.returncode == 2
    assert "needs a shared store" in result.stderr
