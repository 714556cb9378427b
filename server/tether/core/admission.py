"""Admission and fairness, sans I/O: token buckets and flood control, origin checks,
connection counts.

Nothing here knows about sockets or the loop: callers pass the time in.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["AddressCounter", "FloodControl", "TokenBucket", "message_cost", "origin_allowed"]


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up. ``take(now, cost)`` spends
    ``cost`` (default one).

    A costly take is allowed once ``min(cost, burst)`` tokens are saved up and may run
    the bucket into debt, so that a cost above the burst is still possible, and paid for
    in full before the next take.
    """

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.last = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        tokens = self.tokens + (now - self.last) * self.rate
        self.last = now
        burst = self.burst
        if tokens > burst:
            tokens = burst
        if tokens >= (cost if cost < burst else burst):
            self.tokens = tokens - cost
            return True
        self.tokens = tokens
        return False

    def retry_after(self) -> float:
        """Seconds until the next token."""
        return max(0.0, (1.0 - self.tokens) / self.rate)


class FloodControl(TokenBucket):
    """One session's message rate: a token bucket for its messages, and a second one
    for the messages it sent while rate-limited.

    ``take(now)`` is False for a message over the rate (answer ``rate_limited``);
    ``strike(now)`` counts such a message and is False once the session keeps
    sending regardless (more than ``flood_limit`` of them, forgiven at ``rate``
    per second): close it. One object per session (the strikes bucket is made
    at the first strike; until then it would be full anyway).
    """

    __slots__ = ("flood_limit", "flooded", "strikes")

    def __init__(self, rate: float, burst: float, flood_limit: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.last = now
        self.flood_limit = flood_limit
        self.strikes: TokenBucket | None = None
        self.flooded = False

    def strike(self, now: float, cost: float = 1.0) -> bool:
        """Count a rate-limited message (``cost`` strikes for a costly one); False (and
        ``flooded``) when it is one too many."""
        if self.strikes is None:
            self.strikes = TokenBucket(self.rate, self.flood_limit, now)
        if self.strikes.take(now, cost):
            return True
        self.flooded = True
        return False


def message_cost(payload: str | bytes, unit: int) -> float:
    """The tokens a message costs: one, and one more per ``unit`` bytes (UTF-8)."""
    size = len(payload)
    if isinstance(payload, str) and not payload.isascii():
        size = len(payload.encode("utf-8", "surrogatepass"))
    return 1.0 + size // unit


def origin_allowed(origin: str, host: str, allowed: frozenset[str]) -> bool:
    """Is a browser handshake from ``origin`` to a server reached as ``host`` allowed?

    The server's own origin (same host and port as the Host header) always is;
    so is any origin listed in ``allowed`` (``*`` allows every origin).
    """
    if "*" in allowed:
        return True
    normalized = origin.strip().rstrip("/").lower()
    if normalized in allowed:
        return True
    try:
        netloc = urlsplit(normalized).netloc
    except ValueError:
        return False
    return bool(netloc) and netloc == host.strip().lower()


class AddressCounter:
    """Open connections in all and per client address, against two caps."""

    def __init__(self, max_total: int, max_per_address: int) -> None:
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.total = 0
        self.by_address: dict[str, int] = {}

    def refusal(self, address: str) -> str | None:
        """Why a new connection from ``address`` is refused, or None to accept it."""
        if self.total >= self.max_total:
            return f"the server is at its connection limit ({self.max_total})"
        if self.by_address.get(address, 0) >= self.max_per_address:
            return f"too many connections from your address (limit {self.max_per_address})"
        return None

    def add(self, address: str) -> None:
        self.total += 1
        self.by_address[address] = self.by_address.get(address, 0) + 1

    def remove(self, address: str) -> None:
        self.total -= 1
        left = self.by_address.get(address, 0) - 1
        if left > 0:
            self.by_address[address] = left
        else:
            self.by_address.pop(address, None)
