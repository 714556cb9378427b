"""Every limit and timeout of a tether server, in one place.

Each field has a safe default, a ``TETHER_<NAME>`` environment variable and a
``--<name>`` command-line flag (both derived from the field name), and a
one-line description that the CLI help and ``docs/settings.md`` share.
Precedence: explicit argument > command line > environment > default.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import SettingsError

__all__ = ["Settings", "SettingsError"]

ENV_PREFIX = "TETHER_"


def _doc(text: str, default: Any) -> Any:
    return field(default=default, metadata={"doc": text})


@dataclass(frozen=True, slots=True)
class Settings:
    """Limits and timeouts. Sizes are in bytes, durations in seconds."""

    store: str = _doc(
        "Where global state lives: `memory://` (this process only) or "
        "`redis://host:port/db` (shared by every process and node; also carries topics "
        "and resumable sessions across nodes).",
        "memory://",
    )
    namespace: str = _doc(
        "Prefix of every Redis key and channel of this app (default: from the app title).",
        "",
    )
    store_max_keys: int = _doc(
        "Keys (values, lists and leaderboards) the memory store holds at most; a write that "
        "would create one more is a `StoreError` (expired keys do not count). With Redis, "
        "its `maxmemory` is the bound.",
        1_000_000,
    )
    max_message_size: int = _doc(
        "Largest incoming WebSocket message; a bigger one closes the connection with 1009.",
        1 << 20,
    )
    thread_pool_size: int = _doc(
        "Worker threads that run synchronous functions (and synchronous hooks).", 16
    )
    max_pending_per_session: int = _doc(
        "Submits one session may have queued or running at once; more get `too_many_pending`.",
        256,
    )
    send_queue_messages: int = _doc(
        "Messages waiting to be written to one connection before it is closed "
        "as a slow consumer (close 4008).",
        1024,
    )
    send_queue_bytes: int = _doc(
        "Bytes waiting to be written to one connection before it is closed "
        "as a slow consumer (close 4008).",
        16 << 20,
    )
    publish_backlog_bytes: int = _doc(
        "Bytes of events published from worker threads (sync functions) that may wait for "
        "the event loop to hand them out; a thread publishing beyond it waits.",
        4 << 20,
    )
    max_retained_topics: int = _doc(
        "Topics whose current value (a retained publish, `store.update`/`lb_add` with a "
        "topic) one process keeps when the store is in memory; past it the least recently "
        "changed is forgotten.",
        10_000,
    )
    max_retained_bytes: int = _doc(
        "Bytes of current values one process keeps when the store is in memory; past it "
        "the least recently changed are forgotten.",
        64 << 20,
    )
    retained_ttl: float = _doc(
        "Seconds a topic's current value is kept in Redis after its last change.",
        24 * 3600.0,
    )
    max_id_length: int = _doc("Longest string accepted as a submit id.", 128)
    max_queue: int = _doc(
        "Submits that may wait for a function's concurrency limit (per function, unless "
        "the function sets `max_queue`); more get `queue_full`.",
        1000,
    )
    queue_update_interval: float = _doc(
        "Shortest time between two `queued` position updates of one function's queue.",
        0.25,
    )
    queue_notice_delay: float = _doc(
        "A queued submit that starts within this many seconds gets no `queued`/`started` "
        "messages (0: always tell).",
        0.05,
    )
    max_subscriptions: int = _doc("Topics one session may be subscribed to at once.", 100)
    max_topic_length: int = _doc("Longest topic name accepted from a client.", 128)
    debug: bool = _doc(
        "Include the traceback of a failing user function in its `fn_error` message.", False
    )
    max_connections: int = _doc(
        "Open WebSocket connections the server accepts in all; more are refused with HTTP 503.",
        20000,
    )
    max_connections_per_address: int = _doc(
        "Open WebSocket connections from one client address; more are refused with HTTP 503.",
        2000,
    )
    max_sessions: int = _doc(
        "Sessions the server holds at once; a handshake beyond it is refused with HTTP 503.",
        20000,
    )
    submit_rate: float = _doc(
        "Messages per second one session may send, sustained (a token bucket); "
        "beyond it they get `rate_limited`.",
        1000.0,
    )
    submit_burst: int = _doc(
        "Messages one session may send at once above the sustained rate (the bucket's size).",
        500,
    )
    flood_limit: int = _doc(
        "Rate-limited messages a session may send (forgiven at `submit_rate` per second) "
        "before it is closed with 1008.",
        1000,
    )
    message_cost_bytes: int = _doc(
        "Bytes of a message, WebSocket ping or binary frame that cost one more token of "
        "`submit_rate` (a frame costs 1 + size // this; 0: every frame costs one).",
        1024,
    )
    max_message_depth: int = _doc(
        "Deepest nesting of arrays and objects in a client message (the message object is "
        "level 1); a deeper one gets `bad_message`.",
        32,
    )
    max_state_bytes: int = _doc(
        "Bytes of session state (all its slots, measured as JSON) one session may hold; a "
        "submit that would grow it beyond gets `state_too_large`, its state unchanged "
        "(0: no limit).",
        4 << 20,
    )
    max_running_per_session: int = _doc(
        "Submits of one session that may hold slots of one function's concurrency limit at "
        "once; waiting sessions are served round robin (0: no per-session cap).",
        4,
    )
    handshake_timeout: float = _doc(
        "Seconds the authentication hook may take, and that an idle HTTP keep-alive "
        "connection stays open.",
        10.0,
    )
    idle_timeout: float = _doc(
        "Seconds a session may send no message at all before it is closed with 4001 (0: never).",
        600.0,
    )
    ping_interval: float = _doc(
        "Seconds a client may be silent before the server pings it (WebSocket ping; any "
        "message from the client counts as an answer; 0: no pings).",
        20.0,
    )
    pong_timeout: float = _doc(
        "Seconds a client has to answer a ping before its connection is dropped (checked "
        "every quarter of the shorter of this and `ping_interval`).",
        10.0,
    )
    compression: bool = _doc(
        "Offer permessage-deflate (costs CPU and memory per connection; off by default).",
        False,
    )
    check_origin: bool = _doc(
        "Refuse browser handshakes whose Origin is neither this server nor in `allow_origin`.",
        True,
    )
    allow_origin: str = _doc(
        "Extra origins allowed to open WebSockets, comma-separated "
        "(`https://app.example.com,http://localhost:3000`), or `*` for any.",
        "",
    )
    resume_grace: float = _doc(
        "Seconds a session whose connection dropped is kept for its client to resume it "
        "(0: no resume; sessions end with their connection).",
        30.0,
    )
    resume_results: int = _doc(
        "Recent results a session keeps, so that a submit re-sent after a resume is "
        "answered without running twice.",
        64,
    )
    resume_result_bytes: int = _doc(
        "Bytes of recent results a session keeps for resumes (oldest dropped first).",
        1 << 20,
    )
    max_parked_sessions: int = _doc(
        "Dropped sessions kept for a resume in all; parking one more ends the oldest "
        "parked session (its end hooks run).",
        5000,
    )
    max_parked_per_address: int = _doc(
        "Dropped sessions kept for a resume per client address; parking one more ends "
        "that address's oldest parked session.",
        32,
    )
    resume_node_lease: float = _doc(
        "Seconds a node's hold on its connected sessions outlives the node (Redis store): "
        "a resume of a session held by a node that died waits this long.",
        5.0,
    )
    resume_save_after_result: bool = _doc(
        "Send a result before its session's record is saved (Redis store): faster, but a "
        "result sent just before its node dies can be lost to a resume elsewhere.",
        False,
    )
    close_timeout: float = _doc(
        "How long the server waits for a client to answer its close frame before it drops "
        "the TCP connection.",
        5.0,
    )
    message_timeout: float = _doc(
        "Seconds a WebSocket message may take from its first byte to its last (fragments "
        "included) before the connection is closed with 1008 (0: no limit).",
        30.0,
    )
    incomplete_message_bytes: int = _doc(
        "Bytes of WebSocket messages still being received, over all connections; the "
        "connection that would pass it is closed with 1009 (one message is already bounded "
        "by `max_message_size`).",
        64 << 20,
    )
    max_handshakes: int = _doc(
        "TCP connections not upgraded to a WebSocket (handshakes in progress, HTTP "
        "keep-alive), in all; more are answered 503 and closed at once.",
        2048,
    )
    max_handshakes_per_address: int = _doc(
        "TCP connections from one client address not upgraded to a WebSocket; more are "
        "answered 503 and closed at once.",
        256,
    )
    metrics: bool = _doc(
        "Serve Prometheus metrics at `/metrics` (submits by function and outcome, their "
        "durations, refusals, sessions, queues; needs prometheus-client: "
        "`pip install 'tether[metrics]'`, else `/metrics` answers 501).",
        True,
    )
    listen_backlog: int = _doc(
        "Connections the kernel queues before the server accepts them (capped by "
        "`net.core.somaxconn`); too small, and a burst of connects is refused or retried.",
        2048,
    )
    gc_young_threshold: int = _doc(
        "Allocations between collections of the cyclic garbage collector's youngest "
        "generation (Python's default is 700; each submit allocates dozens of objects). "
        "0 leaves the interpreter's setting alone.",
        10000,
    )
    gc_freeze: bool = _doc(
        "Once started, move every object that exists then out of the cyclic garbage "
        "collector's reach (`gc.freeze()`), so that full collections walk only what "
        "serving creates.",
        True,
    )
    shutdown_timeout: float = _doc(
        "On shutdown, how long running submits may take to finish before they are cancelled.",
        10.0,
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise SettingsError(f"{f.name} must not be negative (got {value})")
        if self.max_message_size < 1024:
            raise SettingsError("max_message_size must be at least 1024 bytes")
        if self.listen_backlog < 1:
            raise SettingsError("listen_backlog must be at least 1")
        if self.thread_pool_size < 1:
            raise SettingsError("thread_pool_size must be at least 1")
        if self.send_queue_messages < 1 or self.send_queue_bytes < 1:
            raise SettingsError("the send queue bounds must be at least 1")
        if not (self.store == "memory://" or self.store.startswith(("redis://", "rediss://"))):
            raise SettingsError(
                f"store must be memory:// or redis://host:port/db, not {self.store!r}"
            )
        if ":" in self.namespace:
            raise SettingsError("namespace must not contain ':'")
        if self.publish_backlog_bytes < 1:
            raise SettingsError("publish_backlog_bytes must be at least 1")
        if self.max_retained_topics < 1 or self.max_retained_bytes < 1:
            raise SettingsError("max_retained_topics and max_retained_bytes must be at least 1")
        if not self.retained_ttl > 0:
            raise SettingsError("retained_ttl must be positive")
        if self.submit_rate <= 0 or self.submit_burst < 1:
            raise SettingsError("submit_rate must be positive and submit_burst at least 1")
        if self.max_message_depth < 2:
            raise SettingsError("max_message_depth must be at least 2")
        if self.ping_interval and self.pong_timeout <= 0:
            raise SettingsError("pong_timeout must be positive when pings are on")
        if self.resume_node_lease <= 0:
            raise SettingsError("resume_node_lease must be positive")

    @property
    def allowed_origins(self) -> frozenset[str]:
        return frozenset(
            o.strip().rstrip("/").lower() for o in self.allow_origin.split(",") if o.strip()
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``TETHER_*`` variables, then apply ``overrides``."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = parse_value(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return cls(**values)


def parse_value(f: dataclasses.Field[Any], raw: str) -> Any:
    """Parse the text form of a setting (environment or command line)."""
    kind: type = type(f.default)
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind is int:
            return int(raw, 0)
        if kind is float:
            return float(raw)
        return raw
    except ValueError:
        raise SettingsError(
            f"{ENV_PREFIX}{f.name.upper()} / --{f.name.replace('_', '-')}: "
            f"cannot read {raw!r} as {kind.__name__}"
        ) from None


def describe() -> list[tuple[str, str, Any, str]]:
    """(name, environment variable, default, description) for every setting."""
    return [
        (f.name, ENV_PREFIX + f.name.upper(), f.default, f.metadata["doc"])
        for f in dataclasses.fields(Settings)
    ]


def markdown_table() -> str:
    """The settings table of ``docs/settings.md`` (a test keeps that file in sync)."""
    lines = [
        "| Setting | Flag | Environment | Default | What it bounds |",
        "|---|---|---|---|---|",
    ]
    for name, env, default, doc in describe():
        flag = "--" + name.replace("_", "-")
        lines.append(f"| `{name}` | `{flag}` | `{env}` | `{default}` | {doc} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m tether.settings > table
    print(markdown_table(), end="")
