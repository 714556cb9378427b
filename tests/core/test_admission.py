"""Admission and fairness without a socket: the token bucket, flood control, the origin
check and the connection caps."""

from __future__ import annotations

import pytest

from tether.core.admission import (
    AddressCounter,
    FloodControl,
    TokenBucket,
    normalize_origin,
    origin_allowed,
)


def test_a_full_bucket_allows_a_burst_then_refuses() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]


def test_tokens_come_back_at_the_rate() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    for _ in range(3):
        bucket.take(0.0)
    assert not bucket.take(0.05)  # half a token
    assert bucket.take(0.1)  # a whole one by now
    assert not bucket.take(0.1)


def test_an_idle_bucket_saves_up_no_more_than_its_burst() -> None:
    bucket = TokenBucket(rate=100, burst=2, now=0.0)
    assert [bucket.take(1000.0) for _ in range(3)] == [True, True, False]


def test_retry_after_is_the_time_to_the_next_token() -> None:
    bucket = TokenBucket(rate=4, burst=1, now=0.0)
    assert bucket.take(0.0)
    assert not bucket.take(0.0)
    assert bucket.retry_after() == pytest.approx(0.25)
    assert TokenBucket(rate=4, burst=1, now=0.0).retry_after() == 0.0


def test_flood_control_closes_a_session_only_after_its_strikes_run_out() -> None:
    flood = FloodControl(rate=1, burst=1, flood_limit=3, now=0.0)
    assert flood.take(0.0)
    assert not flood.take(0.0)
    assert [flood.strike(0.0) for _ in range(4)] == [True, True, True, False]
    assert flood.flooded


def test_strikes_are_forgiven_at_the_rate() -> None:
    flood = FloodControl(rate=10, burst=1, flood_limit=1, now=0.0)
    assert flood.strike(0.0)
    assert flood.strike(0.2)  # two strikes forgiven by now, one spent
    assert not flood.flooded


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "ok"),
    [
        ("http://example.com:8000", "example.com:8000", frozenset(), True),
        ("HTTP://Example.COM:8000/", "example.com:8000", frozenset(), True),
        ("http://example.com:9000", "example.com:8000", frozenset(), False),
        ("http://evil.test", "example.com:8000", frozenset(), False),
        ("http://evil.test", "example.com", frozenset({"http://evil.test"}), True),
        ("https://anything", "example.com", frozenset({"*"}), True),
        ("null", "example.com", frozenset(), False),
        ("http://[::1", "example.com", frozenset(), False),
        ("", "example.com", frozenset(), False),
        # The whole origin counts: scheme, host, port; no path, no other scheme.
        ("ftp://example.com:8000", "example.com:8000", frozenset(), False),
        ("ws://example.com:8000", "example.com:8000", frozenset(), False),
        ("http://example.com:8000/x", "example.com:8000", frozenset(), False),
        ("http://example.com:8000/?a", "example.com:8000", frozenset(), False),
        ("http://example.com:8000#f", "example.com:8000", frozenset(), False),
        ("http://u@example.com:8000", "example.com:8000", frozenset(), False),
        ("https://example.com:8000", "example.com:8000", frozenset(), True),
        ("http://example.com", "example.com", frozenset(), True),
        ("http://example.com:80", "example.com", frozenset(), True),
        ("https://example.com", "example.com", frozenset(), True),
        ("https://example.com:80", "example.com", frozenset(), False),
        ("http://example.com:8000", "example.com", frozenset(), False),
        ("http://[::1]:8000", "[::1]:8000", frozenset(), True),
        # Listed origins compare as scheme://host:port.
        ("https://app.test", "x", frozenset({"https://app.test:443"}), True),
        ("https://app.test:443", "x", frozenset({"https://app.test"}), True),
        ("http://app.test", "x", frozenset({"https://app.test"}), False),
        ("https://app.test:8443", "x", frozenset({"https://app.test"}), False),
        ("https://app.test/x", "x", frozenset({"https://app.test"}), False),
        ("ftp://app.test", "x", frozenset({"http://app.test"}), False),
        ("chrome-extension://abc", "x", frozenset({"chrome-extension://abc"}), True),
    ],
)
def test_a_handshake_origin_is_allowed_only_for_the_same_host_or_a_listed_origin(
    origin: str, host: str, allowed: frozenset[str], ok: bool
) -> None:
    assert origin_allowed(origin, host, allowed) is ok


@pytest.mark.parametrize(
    ("origin", "normalized"),
    [
        ("HTTPS://App.Test", "https://app.test:443"),
        ("http://app.test:8080/", "http://app.test:8080"),
        ("http://[::1]", "http://[::1]:80"),
        ("http://app.test:99999", None),
        ("http://app.test/path", None),
        ("file:///etc", None),
        ("null", None),
    ],
)
def test_an_origin_normalizes_to_scheme_host_and_port_or_nothing(
    origin: str, normalized: str | None
) -> None:
    assert normalize_origin(origin) == normalized


def test_the_address_counter_refuses_beyond_either_cap_and_frees_on_remove() -> None:
    counter = AddressCounter(max_total=3, max_per_address=2)
    counter.add("a")
    counter.add("a")
    assert "your address" in (counter.refusal("a") or "")
    assert counter.refusal("b") is None
    counter.add("b")
    assert "connection limit" in (counter.refusal("c") or "")
    counter.remove("a")
    assert counter.refusal("a") is None and counter.refusal("c") is None
    counter.remove("a")
    counter.remove("b")
    assert counter.total == 0 and counter.by_address == {}


def test_a_costly_take_spends_its_cost_and_may_run_a_full_bucket_into_debt() -> None:
    bucket = TokenBucket(rate=10, burst=20, now=0.0)
    assert bucket.take(0.0, 8) and bucket.take(0.0, 8)  # 4 left
    assert not bucket.take(0.0, 8)
    assert bucket.take(0.0, 4) and not bucket.take(0.0)
    assert bucket.take(2.0, 50)  # full again: a cost beyond the burst is allowed once...
    assert not bucket.take(4.0)  # ...and paid for in full: -30 + 20 is still in debt
    assert bucket.retry_after() == pytest.approx(1.1)
    assert bucket.take(5.2)


def test_flood_control_counts_costly_strikes() -> None:
    flood = FloodControl(rate=1, burst=1, flood_limit=10, now=0.0)
    assert flood.strike(0.0, 6)
    assert not flood.strike(0.0, 6)
    assert flood.flooded
