"""A subscriber that stops reading cannot grow the server's memory: it is cut off (4008).

The server runs as a subprocess so that its resident memory can be read from
/proc/<pid>/status. The bound checked is about memory, never time.
"""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import aiohttp
import orjson

import tether
from tests.integration.serve_process import Server, tether_servers  # noqa: F401 -- fixture

EVENT_SIZE = 256 * 1024
EVENTS_PER_SUBMIT = 40
SUBMITS = 10  # 10 x 40 x 256 KiB: 100 MiB of events in all
STALLED = 3
# Generous: a stalled connection queues at most 16 MiB (send_queue_bytes; the frames
# are shared by all subscribers) and worker threads at most 4 MiB more
# (publish_backlog_bytes). Unbounded, the server would hold most of the 100 MiB.
RSS_GROWTH_BOUND = 64 * 1024 * 1024

APP = """
import tether

app = tether.App("firehose", topics=["firehose"])


@app.function(inputs=["number", "number"], outputs="number")
def blast(count, size):
    payload = "x" * int(size)
    for _ in range(int(count)):
        app.publish("firehose", payload)
    return count
"""


def memory(pid: int, field: str) -> int:
    """A memory figure of a process in bytes: VmRSS (now) or VmHWM (its peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


async def sessions(http: aiohttp.ClientSession, port: int) -> int:
    async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
        return int((await resp.json())["sessions"])


async def read_until_closed(ws: aiohttp.ClientWebSocketResponse) -> tuple[int, int | None]:
    """Read everything that is left; (events read, close code or None if dropped)."""
    events = 0
    while True:
        msg = await ws.receive()
        if msg.type is aiohttp.WSMsgType.TEXT:
            assert orjson.loads(msg.data)["type"] == "event"
            events += 1
        elif msg.type is aiohttp.WSMsgType.CLOSE:
            return events, msg.data  # the code in the server's close frame
        else:  # CLOSED or ERROR: the TCP connection was dropped without a close frame
            return events, None


async def test_stalled_subscribers_are_cut_off_and_server_memory_stays_bounded(tmp_path, servers):
    (tmp_path / "firehose.py").write_text(textwrap.dedent(APP))
    server = Server(tmp_path, "firehose:app")
    servers.append(server)
    server.wait_ready()
    pid = server.proc.pid

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        stalled = []
        for _ in range(STALLED):
            ws = await http.ws_connect(server.ws_url, max_msg_size=0, autoping=False)
            assert (
                orjson.loads((await asyncio.wait_for(ws.receive(), 30)).data)["type"] == "welcome"
            )
            await ws.send_str('{"type": "subscribe", "topic": "firehose"}')
            assert orjson.loads((await asyncio.wait_for(ws.receive(), 30)).data) == {
                "type": "subscribed",
                "topic": "firehose",
            }
            stalled.append(ws)  # and from now on, nobody reads it

        async with tether.connect(server.ws_url) as trigger:
            # Warm up the code paths (one event, read by nobody yet), then take the baseline.
            assert await trigger.submit("blast", 1, 1024) == 1
            baseline = memory(pid, "VmRSS")
            sent = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        trigger.submit("blast", EVENTS_PER_SUBMIT, EVENT_SIZE)
                        for _ in range(SUBMITS)
                    )
                ),
                120,
            )
            assert sent == [EVENTS_PER_SUBMIT] * SUBMITS
            # The stalled sessions are gone; only the trigger's is left.
            for _ in range(600):
                if await sessions(http, server.port) == 1:
                    break
                await asyncio.sleep(0.05)
            assert await sessions(http, server.port) == 1
            peak = memory(pid, "VmHWM")
            assert await trigger.submit("blast", 1, 10) == 1  # the server still serves

        for ws in stalled:
            events, code = await asyncio.wait_for(read_until_closed(ws), 60)
            # protocol.md: closed with 4008, or dropped if the close is not answered in time.
            assert code in (4008, None), code
            assert events < SUBMITS * EVENTS_PER_SUBMIT  # it was cut off, not served everything

    server.stop()
    growth = peak - baseline
    assert growth < RSS_GROWTH_BOUND, f"the server grew by {growth / 2**20:.1f} MiB"
    assert server.output.count("closing a slow consumer") == STALLED, server.output
