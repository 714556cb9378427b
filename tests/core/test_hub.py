"""Topic fan-out, without a socket: events published from worker threads are bounded."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import orjson
import pytest

from tether.core.hub import Hub
from tether.protocol import encode_event


class Inbox:
    """A subscriber that keeps what it is sent."""

    def __init__(self) -> None:
        self.topics: dict[str, None] = {}
        self.frames: list[bytes] = []

    def send(self, frame: bytes) -> None:
        self.frames.append(frame)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop that runs only when the test runs it: until then it is "busy"."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def wait_until(condition: Callable[[], bool], limit: float = 10) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_a_thread_publishing_faster_than_the_loop_delivers_waits_for_it(loop):
    payload = "x" * 10_000
    frame_size = len(encode_event("t", [0, payload]))
    hub = Hub(max_backlog_bytes=3 * frame_size)
    hub.bind(loop)  # this thread is the loop's thread
    inbox = Inbox()
    hub.subscribe(inbox, "t")
    published = 0

    def publisher() -> None:
        nonlocal published
        for i in range(10):
            hub.publish("t", [i, payload])
            published += 1

    thread = threading.Thread(target=publisher)
    thread.start()
    wait_until(lambda: published == 3)
    time.sleep(0.2)
    assert published == 3  # the backlog is full and the loop has not run: it waits
    while thread.is_alive():
        loop.run_until_complete(asyncio.sleep(0.01))  # the loop hands events out
    assert [orjson.loads(f)["data"][0] for f in inbox.frames] == list(range(10))
    hub.bind(None)


def test_a_thread_waiting_to_publish_is_released_when_the_server_stops(loop):
    hub = Hub(max_backlog_bytes=1024)
    hub.bind(loop)
    errors: list[Exception] = []

    def publisher() -> None:
        try:
            for _ in range(3):
                hub.publish("t", "x" * 2000)
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=publisher)
    thread.start()
    wait_until(lambda: hub._backlog > 0)  # one event published; it waits with the next
    hub.bind(None)
    thread.join(10)
    assert not thread.is_alive()
    assert len(errors) == 1 and "served" in str(errors[0])
