"""Topic fan-out, without a socket: events published from worker threads are bounded."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import orjson
import pytest

from tether.core.hub import Hub
from tether.protocol import encode_event, retained_event


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


# -- current values (protocol 8) -----------------------------------------------------


def decoded(inbox: Inbox) -> list[dict]:
    return [orjson.loads(frame) for frame in inbox.frames]


def test_a_new_subscriber_gets_the_current_value_first_then_every_change(loop):
    hub = Hub()
    hub.bind(loop)
    early = Inbox()
    hub.subscribe(early, "scores")
    hub.publish("scores", [1], retain=True)
    hub.publish("scores", [2, 1], retain=True)
    late = Inbox()
    hub.subscribe(late, "scores")
    hub.publish("scores", [3, 2, 1], retain=True)
    seen_early, seen_late = decoded(early), decoded(late)
    assert [e["data"] for e in seen_early] == [[1], [2, 1], [3, 2, 1]]
    assert not any(e.get("current") for e in seen_early)
    assert seen_late[0]["current"] is True and seen_late[0]["data"] == [2, 1]
    assert seen_late[0]["seq"] == seen_early[1]["seq"]  # the same change, flagged current
    assert seen_late[1:] == seen_early[2:]
    seqs = [e["seq"] for e in seen_early]
    assert seqs == sorted(set(seqs))


def test_a_topic_without_a_retained_publish_sends_nothing_on_subscribe(loop):
    hub = Hub()
    hub.bind(loop)
    hub.publish("chatter", "hi")  # a stream item: no seq, not kept
    inbox = Inbox()
    hub.subscribe(inbox, "chatter")
    assert inbox.frames == [] and hub.retained_count() == 0
    hub.publish("chatter", "there")
    assert decoded(inbox) == [{"type": "event", "topic": "chatter", "data": "there"}]


def test_subscribing_again_to_a_followed_topic_sends_no_second_current_value(loop):
    hub = Hub()
    hub.bind(loop)
    hub.publish("t", 1, retain=True)
    inbox = Inbox()
    hub.subscribe(inbox, "t")
    hub.subscribe(inbox, "t")
    assert len(inbox.frames) == 1


def test_current_values_are_bounded_by_count_and_bytes_least_recently_changed_first(loop):
    hub = Hub(max_topics=2, max_bytes=10_000)
    hub.bind(loop)
    for topic in ("a", "b", "c"):
        hub.publish(topic, topic, retain=True)
    assert hub.retained_count() == 2 and hub.evicted == 1
    forgotten, kept = Inbox(), Inbox()
    hub.subscribe(forgotten, "a")
    hub.subscribe(kept, "c")
    assert forgotten.frames == [] and decoded(kept)[0]["data"] == "c"
    hub.publish("big", "x" * 20_000, retain=True)  # alone over max_bytes: kept, others go
    assert hub.retained_count() == 1


def test_a_forgotten_topics_next_value_still_has_a_higher_seq(loop):
    hub = Hub(max_topics=1)
    hub.bind(loop)
    inbox = Inbox()
    hub.subscribe(inbox, "a")
    hub.publish("a", 1, retain=True)
    hub.publish("b", 1, retain=True)  # "a" is forgotten
    hub.publish("a", 2, retain=True)
    first, second = decoded(inbox)
    assert second["seq"] > first["seq"]


def test_retained_publishes_from_a_thread_keep_their_order_and_the_last_is_current(loop):
    hub = Hub()
    hub.bind(loop)
    early = Inbox()
    hub.subscribe(early, "n")
    thread = threading.Thread(target=lambda: [hub.publish("n", i, retain=True) for i in range(50)])
    thread.start()
    thread.join()
    loop.run_until_complete(asyncio.sleep(0))  # the loop hands them out
    assert [e["data"] for e in decoded(early)] == list(range(50))
    late = Inbox()
    hub.subscribe(late, "n")
    assert decoded(late) == [{**decoded(early)[-1], "current": True}]


def test_on_a_cluster_changes_during_the_fetch_are_held_back_and_the_newest_is_current():
    # The fetch stands in for Redis only in timing: the hub is given a reader,
    # as the bridge gives it one, and changes arrive while the read is out.
    async def scenario() -> tuple[list[dict], list[dict]]:
        hub = Hub()
        hub.bind(asyncio.get_running_loop())
        release = asyncio.Event()
        fetches = []

        async def fetch(topic: str) -> bytes | None:
            fetches.append(topic)
            await release.wait()
            return retained_event(topic, 5, b'"five"')  # what Redis held at the read

        hub.fetch_current = fetch
        early = Inbox()
        hub.subscribe(early, "t")
        await asyncio.sleep(0)
        release.set()
        await asyncio.sleep(0.01)  # early's fetch done: nothing newer came
        late, later = Inbox(), Inbox()
        release.clear()
        hub.subscribe(late, "t")
        hub.subscribe(later, "t")  # joins the same read
        await asyncio.sleep(0)
        hub.deliver("t", retained_event("t", 6, b'"six"'))  # arrives during the read
        release.set()
        await asyncio.sleep(0.01)
        hub.deliver("t", retained_event("t", 7, b'"seven"'))
        assert fetches == ["t", "t"]
        assert decoded(later) == decoded(late)
        return decoded(early), decoded(late)

    early, late = asyncio.run(scenario())
    flags = [(e["seq"], e.get("current", False)) for e in early]
    assert flags == [(5, True), (6, False), (7, False)]
    assert [(e["seq"], e.get("current", False)) for e in late] == [(6, True), (7, False)]


# -- delivery: no copy of the subscribers, changes during a delivery ------------------


class Reacting(Inbox):
    """A subscriber whose send runs ``react`` (a send that closes a connection,
    unsubscribes or subscribes someone, as a slow consumer's close may)."""

    def __init__(self, react: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.react = react

    def send(self, frame: bytes) -> None:
        super().send(frame)
        if self.react is not None:
            react, self.react = self.react, None
            react()


def test_delivery_goes_to_every_subscriber_once_in_the_order_they_subscribed(loop):
    hub = Hub()
    hub.bind(loop)
    order: list[int] = []
    inboxes = [Reacting() for _ in range(50)]
    for i, inbox in enumerate(inboxes):
        inbox.react = lambda i=i: order.append(i)
        hub.subscribe(inbox, "t")
    assert hub.deliver("t", b"frame") == 50
    assert order == list(range(50))
    assert all(inbox.frames == [b"frame"] for inbox in inboxes)


def test_unsubscribing_during_a_delivery_neither_breaks_it_nor_skips_anyone(loop):
    hub = Hub()
    hub.bind(loop)
    rest = [Inbox() for _ in range(10)]
    first = Reacting()
    # The first subscriber's send unsubscribes itself and the last one, then a newcomer
    # subscribes: the delivery under way goes on over the subscribers it started with.
    newcomer = Inbox()

    def react() -> None:
        hub.unsubscribe(first, "t")
        hub.unsubscribe(rest[-1], "t")
        hub.subscribe(newcomer, "t")

    first.react = react
    hub.subscribe(first, "t")
    for inbox in rest:
        hub.subscribe(inbox, "t")
    assert hub.deliver("t", b"one") == 11
    assert first.frames == [b"one"] and all(inbox.frames == [b"one"] for inbox in rest)
    assert newcomer.frames == []
    # The next delivery sees the changes.
    hub.deliver("t", b"two")
    assert first.frames == [b"one"] and rest[-1].frames == [b"one"]
    assert newcomer.frames == [b"two"] and all(i.frames[-1] == b"two" for i in rest[:-1])
    assert "t" not in first.topics and "t" in newcomer.topics


def test_the_last_subscriber_leaving_during_a_delivery_removes_the_topic(loop):
    hub = Hub()
    hub.bind(loop)
    only = Reacting(lambda: hub.drop(only))
    hub.subscribe(only, "t")
    assert hub.deliver("t", b"x") == 1
    assert hub.topic_count() == 0 and only.topics == {}
    assert hub.deliver("t", b"y") == 0


def test_a_delivery_inside_a_delivery_of_the_same_topic(loop):
    hub = Hub()
    hub.bind(loop)
    b = Inbox()
    a = Reacting(lambda: hub.deliver("t", b"inner"))
    hub.subscribe(a, "t")
    hub.subscribe(b, "t")
    hub.deliver("t", b"outer")
    assert a.frames == [b"outer", b"inner"]
    assert b.frames == [b"inner", b"outer"]
    hub.unsubscribe(b, "t")  # no delivery under way any more: changed in place
    assert hub.deliver("t", b"after") == 1


def test_subscribing_replaces_an_empty_topics_default_with_a_dict_of_its_own(loop):
    from tether.core.hub import NO_ENTRIES

    hub = Hub()
    hub.bind(loop)
    one, two = Inbox(), Inbox()
    one.topics = two.topics = NO_ENTRIES  # what a new session starts with
    hub.subscribe(one, "a")
    hub.unsubscribe(two, "a")  # not subscribed: nothing to change
    assert one.topics == {"a": None} and one.topics is not NO_ENTRIES
    assert two.topics is NO_ENTRIES and len(NO_ENTRIES) == 0
