"""The servers the benchmark compares, each run as its own process.

``python bench/servers.py KIND --port P`` serves one of:

- ``baseline-inline``: bare aiohttp + uvloop. Each WebSocket keeps its
  conversation in a local list and answers a submit with the whole history,
  as the demo's chat does, computed inline on the event loop.
- ``baseline-executor``: the same, with the reply computed in a thread pool
  (``run_in_executor``), as tether runs a synchronous function.
- ``baseline-fanout``: bare aiohttp + uvloop with a set of subscribed
  WebSockets; a submit's payload is encoded once as an event frame and that
  frame is sent to every subscriber (the fan-out section's baseline).

The tether kinds are started through the real command line:
``tether-sync`` is ``tether demo`` (its ``chat`` is a sync function with
session state) and ``tether-async`` is ``tether serve servers:async_app``, the
same chat written as ``async def``. ``tether-fanout`` is ``tether serve
servers:fanout_app``, whose one function publishes its input once on a topic.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tether import PROTOCOL_VERSION, App
from tether.demo import reply_to

HERE = Path(__file__).resolve().parent
KINDS = (
    "baseline-inline", "baseline-executor", "tether-sync", "tether-async",
    "baseline-fanout", "tether-fanout",
)  # fmt: skip
BASELINE_KINDS = ("baseline-inline", "baseline-executor", "baseline-fanout")
SERVER_CPU = 0  # the server gets this core, the load generator the other one
START_TIMEOUT = 30.0

async_app = App("tether bench: async chat")


@async_app.function(inputs=["text", "state"], outputs=["chatbot", "state"])
async def chat(message: str, history: list[list[str]] = []) -> Any:  # noqa: B006
    """The demo's chat as a coroutine function."""
    history.append([message, reply_to(message)])
    return history, history


FANOUT_TOPIC = "fanout"
fanout_app = App("tether bench: fan-out", topics=[FANOUT_TOPIC])


@fanout_app.function(inputs="json")
async def publish(data: Any) -> None:
    """Publish the input once on topic "fanout"."""
    # Async, so it runs on the event loop and publishes from there: next to
    # fanning out to thousands of subscribers the function itself costs nothing.
    fanout_app.publish(FANOUT_TOPIC, data)


def _welcome() -> bytes:
    return orjson.dumps(
        {
            "type": "welcome",
            "protocol": PROTOCOL_VERSION,
            "session": os.urandom(16).hex(),
            "functions": [{"name": "chat", "inputs": ["text"], "outputs": ["chatbot"]}],
        }
    )


def _reply(obj: dict[str, Any], history: list[list[str]]) -> bytes:
    message = obj["data"][0]
    history.append([message, reply_to(message)])
    return orjson.dumps({"type": "result", "id": obj["id"], "data": [history]})


def serve_baseline(port: int, executor: bool) -> None:
    from aiohttp import WSMsgType, web

    pool = ThreadPoolExecutor(max_workers=16)

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 20, compress=False)
        await ws.prepare(request)
        await ws.send_frame(_welcome(), WSMsgType.TEXT)
        history: list[list[str]] = []
        loop = asyncio.get_running_loop()
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            obj = orjson.loads(msg.data)
            if executor:
                frame = await loop.run_in_executor(pool, _reply, obj, history)
            else:
                frame = _reply(obj, history)
            await ws.send_frame(frame, WSMsgType.TEXT)
        return ws

    _run_bare(port, websocket)


def _run_bare(port: int, websocket: Any) -> None:
    """Serve ``websocket`` at /ws (and a /healthz) on bare aiohttp + uvloop."""
    import uvloop
    from aiohttp import web

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/ws", websocket)
    app.router.add_get("/healthz", healthz)
    web.run_app(
        app, host="127.0.0.1", port=port, print=None, access_log=None, loop=uvloop.new_event_loop()
    )


def serve_fanout_baseline(port: int) -> None:
    """The least a fan-out server can do: one encode, then one send per subscriber."""
    from aiohttp import WSMsgType, web

    subscribers: set[web.WebSocketResponse] = set()
    welcome = orjson.dumps(
        {
            "type": "welcome",
            "protocol": PROTOCOL_VERSION,
            "session": "fanout-baseline",
            "topics": [FANOUT_TOPIC],
            "functions": [{"name": "publish", "inputs": ["json"], "outputs": []}],
        }
    )

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 20, compress=False)
        await ws.prepare(request)
        await ws.send_frame(welcome, WSMsgType.TEXT)
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                obj = orjson.loads(msg.data)
                if obj["type"] == "subscribe":
                    subscribers.add(ws)
                    reply = {"type": "subscribed", "topic": obj["topic"]}
                elif obj["type"] == "submit":
                    frame = orjson.dumps(
                        {"type": "event", "topic": FANOUT_TOPIC, "data": obj["data"][0]}
                    )
                    for subscriber in list(subscribers):
                        with contextlib.suppress(ConnectionError, RuntimeError):
                            await subscriber.send_frame(frame, WSMsgType.TEXT)
                    reply = {"type": "result", "id": obj["id"], "data": []}
                else:
                    continue
                await ws.send_frame(orjson.dumps(reply), WSMsgType.TEXT)
        finally:
            subscribers.discard(ws)
        return ws

    _run_bare(port, websocket)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The connection caps are safety limits for the internet; every benchmark
# session comes from 127.0.0.1, so they are lifted (like the baseline has none).
# The total stays within the open-files hard limit, which the server raises its
# own limit to (a cap beyond it only earns a warning at startup).
_FILES = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
_MAX = str(100000 if _FILES == resource.RLIM_INFINITY else max(1000, min(100000, _FILES - 64)))
CAPS = [
    "--max-connections", _MAX, "--max-connections-per-address", _MAX, "--max-sessions", _MAX,
    # The session holders open hundreds at once from one address (the memory section).
    "--max-handshakes", _MAX, "--max-handshakes-per-address", _MAX,
    # One session may go faster than the default 1000 messages/s (C=1, the wire section).
    "--submit-rate", "1000000", "--submit-burst", "1000000",
]  # fmt: skip


def command(kind: str, port: int) -> list[str]:
    if kind == "tether-sync":
        return [
            sys.executable, "-m", "tether", "demo", "--port", str(port), "--log-level", "warning",
            *CAPS,
        ]  # fmt: skip
    if kind in ("tether-async", "tether-fanout"):
        app = "servers:async_app" if kind == "tether-async" else "servers:fanout_app"
        return [
            sys.executable, "-m", "tether", "serve", app,
            "--port", str(port), "--log-level", "warning", *CAPS,
        ]  # fmt: skip
    return [sys.executable, str(HERE / "servers.py"), kind, "--port", str(port)]


def pin(pid: int, cpu: int) -> None:
    """Keep a process on one core, when the machine has more than one."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, {cpu})


def wait_healthy(port: int, timeout: float = START_TIMEOUT, proc: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.005)
    raise RuntimeError(f"server on port {port} did not answer /healthz in {timeout:g} s")


@dataclass
class Running:
    kind: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def start(kind: str, extra: Sequence[str] = ()) -> Running:
    """Start a server of ``kind`` (``extra``: more command-line options) pinned to the
    server core; return once it answers /healthz."""
    port = free_port()
    proc = subprocess.Popen(
        [*command(kind, port), *extra],
        cwd=HERE,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    pin(proc.pid, SERVER_CPU)
    running = Running(kind, port, proc)
    try:
        wait_healthy(port, proc=proc)
    except BaseException:
        running.stop()
        raise
    return running


@contextlib.contextmanager
def running(kind: str) -> Iterator[str]:
    server = start(kind)
    try:
        yield server.url
    finally:
        server.stop()


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def main() -> None:
    parser = argparse.ArgumentParser(description="serve a baseline for the benchmark")
    parser.add_argument("kind", choices=BASELINE_KINDS)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.kind == "baseline-fanout":
        serve_fanout_baseline(args.port)
    else:
        serve_baseline(args.port, executor=args.kind == "baseline-executor")


if __name__ == "__main__":
    main()
