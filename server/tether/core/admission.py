"""Admission and fairness, sans I/O: token buckets and flood control, origin checks,
connection counts.

Nothing here knows about sockets or the loop: callers pass the time in.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = [
    "AddressCounter",
    "FloodControl",
    "TokenBucket",
    "message_cost",
    "normalize_origin",
    "origin_allowed",
]


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


_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(origin: str) -> str | None:
    """``scheme://host:port`` (lowercase, the port always written) of an http(s)
    origin, or None for anything else: another scheme, a path, a query, a
    fragment, user info, a bad port. (A lone trailing ``/`` is tolerated.)"""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme
    if scheme not in _DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in origin:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{scheme}://{host}:{port or _DEFAULT_PORTS[scheme]}"


def origin_allowed(origin: str, host: str, allowed: frozenset[str]) -> bool:
    """Is a browser handshake from ``origin`` to a server reached as ``host`` allowed?

    The whole origin is compared: scheme, host and port. The server's own
    origin (http or https, with the host and port of the Host header; no port
    there means the scheme's default) always is allowed; so is any origin
    listed in ``allowed``, compared as ``scheme://host:port`` (``*`` allows
    every origin). Any other origin, one with a path, or one that is not
    http(s) is refused (a non-http entry of ``allowed`` matches only itself).
    """
    if "*" in allowed:
        return True
    normalized = normalize_origin(origin)
    if normalized is None:
        return origin.strip().lower() in allowed
    if normalized in {normalize_origin(a) or a for a in allowed}:
        return True
    try:
        own = urlsplit("//" + host.strip().lower())
        own_port = own.port
    except ValueError:
        return False
    if not own.hostname or own.path or "@" in own.netloc:
        return False
    scheme = normalized.partition("://")[0]
    own_host = f"[{own.hostname}]" if ":" in own.hostname else own.hostname
    return normalized == f"{scheme}://{own_host}:{own_port or _DEFAULT_PORTS[scheme]}"


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
