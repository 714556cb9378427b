"""The reference load generator: a picows client written to be as fast as it can be.

    python bench/generator_reference.py ws://127.0.0.1:PORT/ws --users 100 --seconds 5 --turns 20

It does what ``tether loadtest --scenario chat`` does to a server, and nothing
else: C sessions in a closed loop (send a submit, wait for its reply, send the
next), each conversation ``--turns`` messages of the chat scenario's text
(``user U conversation N turn T``) on a fresh connection, closed as the loadtest
closes it (a close frame with 1000, so the server ends the session at once, and
the server's answer and its TCP close awaited), then a new one. No
histogram, no checks, no typed messages: a reply is ``orjson.loads`` and a look
at its id, all in picows' frame callback. What it carries against a server is
what one generator core can carry there; ``generator.py`` compares
``tether loadtest`` with it. Prints one JSON line: submits/s, the process's CPU
(% of one core) and the errors seen.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import orjson
import uvloop
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from tether.protocol import encode_submit


class User(WSListener):
    """One simulated user's current connection: every reply sends the next submit."""

    def __init__(self, run: Run, user: int, number: int) -> None:
        self.run = run
        self.user = user
        self.number = number
        self.turn = 0
        self.transport: WSTransport | None = None
        self.welcomed = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def send_next(self) -> None:
        assert self.transport is not None
        text = f"user {self.user} conversation {self.number} turn {self.turn}"
        self.transport.send(WSMsgType.TEXT, encode_submit(self.turn, "chat", [text]))

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not WSMsgType.TEXT:
            if frame.msg_type is WSMsgType.CLOSE:  # the server then closes TCP first
                if not transport.is_close_frame_sent:
                    transport.send_close(WSCloseCode.OK)
                asyncio.get_running_loop().call_later(5, transport.disconnect)
            return
        reply = orjson.loads(frame.get_payload_as_memoryview())
        if not self.welcomed:
            self.welcomed = True
        else:
            if reply.get("id") != self.turn or reply.get("type") != "result":
                self.run.errors += 1
            self.run.ok += 1
            self.turn += 1
            if self.turn >= self.run.turns or self.run.stopping:
                if not self.done.done():
                    self.done.set_result(None)
                return
        self.send_next()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.done.done():
            self.done.set_result(None)


class Run:
    def __init__(self, url: str, users: int, seconds: float, turns: int) -> None:
        self.url, self.users, self.seconds, self.turns = url, users, seconds, turns
        self.ok = 0
        self.errors = 0
        self.stopping = False

    async def user(self, index: int) -> None:
        number = 0
        while not self.stopping:
            listener = User(self, index, number)
            try:
                transport, _ = await ws_connect(lambda: listener, self.url)  # noqa: B023
            except Exception:
                self.errors += 1
                await asyncio.sleep(0.05)
                continue
            await listener.done
            transport.send_close(WSCloseCode.OK)
            try:
                async with asyncio.timeout(5):
                    await transport.wait_disconnected()
            except TimeoutError:
                transport.disconnect(graceful=False)
            number += 1

    async def main(self) -> dict[str, Any]:
        tasks = [asyncio.create_task(self.user(i)) for i in range(self.users)]
        # Let the connections open before counting, as the loadtest counts from its start.
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(self.seconds)
        ok = self.ok
        wall = time.monotonic() - wall0
        cpu = time.process_time() - cpu0
        self.stopping = True
        await asyncio.wait(tasks, timeout=5)
        for task in tasks:
            task.cancel()
        return {
            "throughput": round(ok / wall, 1),
            "generator_cpu_percent": round(100 * cpu / wall, 1),
            "errors": self.errors,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--turns", type=int, default=20)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        out = runner.run(Run(args.url, args.users, args.seconds, args.turns).main())
    print(orjson.dumps(out).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
