"""What one generator process measures: its totals (``Stats``), the current progress
interval (``Tick``), and the ``Meter`` that counts into both."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from .histogram import Histogram

__all__ = ["MAX_VIOLATIONS_KEPT", "PROGRESS_INTERVAL", "Meter", "Stats", "Tick"]

# Seconds a Tick covers.
PROGRESS_INTERVAL: Final = 1.0
# Violations are all counted; only this many are kept to be shown.
MAX_VIOLATIONS_KEPT: Final = 50


@dataclass
class Stats:
    """What one generator process measured. Merged across processes in ``merge``."""

    latency: Histogram = field(default_factory=Histogram)
    connect: Histogram = field(default_factory=Histogram)
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    violation_count: int = 0
    checked: int = 0
    cpu_seconds: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0
    # Topic events received, and the latencies the scenario could time.
    events: int = 0
    event_latency: Histogram = field(default_factory=Histogram)
    # Partials received (streaming functions).
    partials: int = 0
    # Results per function, where the scenario counts them (auto).
    calls: Counter[str] = field(default_factory=Counter)
    # What stopped the run before its time (a function the server does not have).
    fatal: str | None = None

    def violation(self, text: str) -> None:
        self.violation_count += 1
        if len(self.violations) < MAX_VIOLATIONS_KEPT:
            self.violations.append(text)

    def merge(self, other: Stats) -> None:
        self.latency.merge(other.latency)
        self.connect.merge(other.connect)
        self.ok += other.ok
        self.errors.update(other.errors)
        self.violation_count += other.violation_count
        room = MAX_VIOLATIONS_KEPT - len(self.violations)
        self.violations.extend(other.violations[: max(room, 0)])
        self.checked += other.checked
        self.cpu_seconds.extend(other.cpu_seconds)
        self.wall_seconds = max(self.wall_seconds, other.wall_seconds)
        self.events += other.events
        self.event_latency.merge(other.event_latency)
        self.calls.update(other.calls)
        self.partials += other.partials
        if self.fatal is None:
            self.fatal = other.fatal

    def to_dict(self) -> dict[str, Any]:
        return {
            "latency": self.latency.to_dict(),
            "connect": self.connect.to_dict(),
            "ok": self.ok,
            "errors": dict(self.errors),
            "violations": self.violations,
            "violation_count": self.violation_count,
            "checked": self.checked,
            "cpu_seconds": self.cpu_seconds,
            "wall_seconds": self.wall_seconds,
            "events": self.events,
            "calls": dict(self.calls),
            "partials": self.partials,
            "fatal": self.fatal,
            "event_latency": self.event_latency.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stats:
        return cls(
            latency=Histogram.from_dict(data["latency"]),
            connect=Histogram.from_dict(data["connect"]),
            ok=data["ok"],
            errors=Counter(data["errors"]),
            violations=list(data["violations"]),
            violation_count=data["violation_count"],
            checked=data["checked"],
            cpu_seconds=list(data["cpu_seconds"]),
            wall_seconds=data["wall_seconds"],
            events=data["events"],
            calls=Counter(data["calls"]),
            partials=data["partials"],
            fatal=data["fatal"],
            event_latency=Histogram.from_dict(data["event_latency"]),
        )


@dataclass
class Tick:
    """One progress interval of one generator process."""

    ok: int = 0
    errors: int = 0
    violations: int = 0
    latency: Histogram = field(default_factory=Histogram)
    connected: int = 0


class Meter:
    """Counts what happens in one generator process, into the run's ``stats`` and
    the current progress interval's ``tick``: errors and violations into both at
    once, answered submits into the tick, which joins ``stats`` when it is taken."""

    __slots__ = ("stats", "tick")

    def __init__(self) -> None:
        self.stats = Stats()
        self.tick = Tick()

    def ok(self, latency: float) -> None:
        """A submit answered with its result, ``latency`` seconds after it was due.

        Counted into the tick only, the hot path's one histogram; ``take_tick`` adds
        each tick to the run's ``stats``."""
        tick = self.tick
        tick.latency.record(int(latency * 1_000_000))  # micros(), inlined
        tick.ok += 1

    def error(self, code: str) -> None:
        """A submit (or a connect) that failed, by protocol error code or a loadtest's own."""
        self.stats.errors[code] += 1
        self.tick.errors += 1

    def violation(self, text: str) -> None:
        self.stats.violation(text)
        self.tick.violations += 1

    def take_tick(self, connected: int) -> Tick:
        """The interval now ending (with the sessions open now); a new one begins.
        Its submits join the run's ``stats`` here (``ok`` counts only into the tick)."""
        tick, self.tick = self.tick, Tick()
        self.stats.latency.merge(tick.latency)
        self.stats.ok += tick.ok
        tick.connected = connected
        return tick
