"""The Redis names of ``cluster/channels.py``: topics round-trip through their channel,
namespaces never share a name, and the listener's pattern takes its own topics only."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.redis_server import RedisServer
from tether.cluster.channels import (
    app_namespace,
    board_key,
    channel_topic,
    check_namespace,
    list_key,
    session_key,
    topic_channel,
    topic_pattern,
    value_key,
)
from tether.errors import StoreError

TOPICS = ["scores", "room:lobby", "", "a:topic:b", "*", "x?y", "[ab]", "back\\slash", "日本", " "]
NAMESPACES = ["tether", "tether-demo", "a", "ab", "a*", "a?", "[a]", "a\\", "*", "日本", "t t"]
NAMERS = [value_key, list_key, board_key, session_key, topic_channel]


@pytest.mark.parametrize("topic", TOPICS, ids=repr)
def test_a_topic_comes_back_from_its_channel_as_text_or_bytes(topic: str) -> None:
    channel = topic_channel("ns", topic)
    assert channel_topic("ns", channel) == topic
    assert channel_topic("ns", channel.encode()) == topic


def test_a_channel_of_another_namespace_or_no_topic_carries_no_topic() -> None:
    assert channel_topic("ns", topic_channel("other", "t")) is None
    assert channel_topic("ns", topic_channel("ns2", "t")) is None
    assert channel_topic("ns", "ns:v:t") is None
    assert channel_topic("ns", "ns:topic") is None


def test_names_of_two_namespaces_never_coincide_nor_carry_each_others_topics() -> None:
    for first, second in itertools.permutations(NAMESPACES, 2):
        for namer, name in itertools.product(NAMERS, TOPICS):
            mine = namer(first, name)
            assert all(mine != other(second, n) for other in NAMERS for n in TOPICS)
            assert channel_topic(second, mine) is None, (first, second, mine)


def test_within_a_namespace_each_kind_of_name_has_its_own_prefix() -> None:
    names = {namer(ns, "k") for ns in NAMESPACES for namer in NAMERS}
    assert len(names) == len(NAMESPACES) * len(NAMERS)
    assert [namer("ns", "k") for namer in NAMERS] == [
        "ns:v:k",
        "ns:list:k",
        "ns:lb:k",
        "ns:session:k",
        "ns:topic:k",
    ]


@pytest.mark.parametrize("bad", ["", "a:b", ":", None, 3], ids=repr)
def test_a_namespace_that_is_empty_has_a_colon_or_is_not_text_is_refused(bad: Any) -> None:
    with pytest.raises(StoreError, match="namespace"):
        check_namespace(bad)


@pytest.mark.parametrize("namespace", NAMESPACES, ids=repr)
def test_every_other_namespace_is_accepted_as_it_is(namespace: str) -> None:
    assert check_namespace(namespace) == namespace


@pytest.mark.parametrize(
    ("title", "namespace"),
    [
        ("tether demo", "tether-demo"),
        ("Tether Demo", "tether-demo"),
        ("  My  App!  ", "my-app"),
        ("chat: rooms/v2", "chat-rooms-v2"),
        ("Ünïcode 日本", "n-code"),
        ("", "tether"),
        ("!!!", "tether"),
    ],
)
def test_app_namespace_makes_a_lowercase_slug_of_the_title(title: str, namespace: str) -> None:
    assert app_namespace(title) == namespace
    assert check_namespace(app_namespace(title)) == namespace


def test_the_topic_pattern_escapes_the_glob_characters_of_the_namespace() -> None:
    assert topic_pattern("tether") == "tether:topic:*"
    assert topic_pattern("a*?[b]\\") == "a\\*\\?\\[b\\]\\\\:topic:*"


@pytest.fixture
async def subscriber(redis_server: RedisServer) -> AsyncIterator[Any]:
    """A publisher, and one subscription at a time: ``(client, pubsub)``."""
    client = aioredis.Redis.from_url(redis_server.url)
    pubsub = client.pubsub()
    yield client, pubsub
    await pubsub.aclose()
    await client.aclose()


async def confirmed(pubsub: Any) -> None:
    """Wait until Redis has the subscription (PSUBSCRIBE's reply), so publishes see it."""
    async with asyncio.timeout(10):
        while (await pubsub.get_message(timeout=1)) is None:
            pass


@pytest.mark.parametrize("namespace", NAMESPACES, ids=repr)
async def test_the_pattern_matches_exactly_the_namespaces_topic_channels_on_redis(
    subscriber: Any, namespace: str
) -> None:
    client, pubsub = subscriber
    await pubsub.psubscribe(topic_pattern(namespace))
    await confirmed(pubsub)
    for other, topic in itertools.product(NAMESPACES, TOPICS):
        # PUBLISH answers how many subscribers received it: 1 if the pattern matched.
        for name in (namer(other, topic) for namer in NAMERS):
            expected = int(other == namespace and name == topic_channel(namespace, topic))
            assert await client.publish(name, b"x") == expected, (namespace, name)
