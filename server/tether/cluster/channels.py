"""Every name tether gives things in Redis, spelled once.

For a namespace ``ns`` (one per app, default ``tether``)::

    ns:v:<key>          a value (JSON text)                  value_key
    ns:list:<key>       a list (RPUSH/LRANGE of JSON texts)  list_key
    ns:lb:<board>       a leaderboard (sorted set)           board_key
    ns:session:<token>  a resumable session's record         session_key
    ns:topic:<topic>    a topic's pub/sub channel            topic_channel
    ns:current:<topic>  a topic's current value (hash)       current_key
    ns:marker:<node>    a node's marker channel              marker_channel
    ns:node:<node>      present while a node is alive        node_key

Each kind has its own prefix, so a value, a list and a board may share a
name and no user key can collide with another kind's key. A namespace may
not contain ``:`` (``check_namespace``): the namespace is then everything up
to the first colon, so two namespaces on one Redis never share a name, and
the listener's pattern (``topic_pattern``) matches its own topics only.

This module imports nothing of tether but its errors, so the store and the
node bridge can both use it.
"""

from __future__ import annotations

import re
from typing import Any, Final

from ..errors import StoreError

__all__ = [
    "app_namespace",
    "board_key",
    "channel_topic",
    "check_namespace",
    "current_key",
    "list_key",
    "marker_channel",
    "node_key",
    "session_key",
    "topic_channel",
    "topic_pattern",
    "value_key",
]

# Characters Redis' glob matching (PSUBSCRIBE, KEYS) treats specially.
_GLOB: Final = re.compile(r"([\\*?\[\]])")


def check_namespace(namespace: Any) -> str:
    """``namespace``, if it is one: a non-empty str without ``:``."""
    if not isinstance(namespace, str) or not namespace or ":" in namespace:
        raise StoreError(f"the namespace must be a non-empty str without ':', not {namespace!r}")
    return namespace


def app_namespace(title: str) -> str:
    """A namespace from an app title: "tether demo" -> "tether-demo"."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return slug or "tether"


def value_key(namespace: str, key: str) -> str:
    return f"{namespace}:v:{key}"


def list_key(namespace: str, key: str) -> str:
    return f"{namespace}:list:{key}"


def board_key(namespace: str, board: str) -> str:
    return f"{namespace}:lb:{board}"


def session_key(namespace: str, token: str) -> str:
    return f"{namespace}:session:{token}"


def node_key(namespace: str, node: str) -> str:
    """Present while ``node`` is alive (it renews it): its held sessions are held."""
    return f"{namespace}:node:{node}"


def topic_channel(namespace: str, topic: str) -> str:
    """The pub/sub channel a topic's events are published on (by every node)."""
    return f"{namespace}:topic:{topic}"


def current_key(namespace: str, topic: str) -> str:
    """A topic's current value (a hash: ``seq``, ``frame``), next to the data it describes."""
    return f"{namespace}:current:{topic}"


def marker_channel(namespace: str, node: str) -> str:
    """Where a node's current-value reads publish their markers (outside ``topic_pattern``)."""
    return f"{namespace}:marker:{node}"


def topic_pattern(namespace: str) -> str:
    """The PSUBSCRIBE pattern of every topic channel of ``namespace``, and no other.

    Glob characters in the namespace are escaped, so ``a*`` matches no ``ab:...``.
    """
    return _GLOB.sub(r"\\\1", namespace) + ":topic:*"


def channel_topic(namespace: str, channel: str | bytes) -> str | None:
    """The topic a channel carries, or None when it is not a topic of ``namespace``."""
    if isinstance(channel, bytes):
        channel = channel.decode()
    prefix = f"{namespace}:topic:"
    return channel[len(prefix) :] if channel.startswith(prefix) else None
