"""``Progress``: the generator processes' ticks, merged into a progress line and a timeline."""

from __future__ import annotations

import time
from typing import Any

from .config import Config
from .stats import PROGRESS_INTERVAL, Tick

__all__ = ["Progress"]


class Progress:
    """Merges ticks from the generator processes into a progress line and a timeline."""

    def __init__(self, config: Config, stream: Any) -> None:
        self.config = config
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.begin = time.monotonic()
        self.last = self.begin
        self.pending = Tick()
        self.connected: dict[int, int] = {}
        self.errors = 0
        self.violations = 0
        self.timeline: list[dict[str, float]] = []
        self.dirty = False

    def add(self, proc: int, tick: Tick) -> None:
        self.pending.ok += tick.ok
        self.pending.errors += tick.errors
        self.pending.violations += tick.violations
        self.pending.latency.merge(tick.latency)
        self.connected[proc] = tick.connected
        self.dirty = True

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        span = now - self.last
        if not self.dirty or span < PROGRESS_INTERVAL * (0.5 if force else 0.9):
            # The counts still reach the totals; a sliver of an interval makes no rate.
            if force:
                self.errors += self.pending.errors
                self.violations += self.pending.violations
            return
        tick, self.pending, self.last, self.dirty = self.pending, Tick(), now, False
        self.errors += tick.errors
        self.violations += tick.violations
        rate = tick.ok / span
        p50 = tick.latency.percentile(50) / 1000
        p99 = tick.latency.percentile(99) / 1000
        elapsed = now - self.begin
        self.timeline.append(
            {"t": round(elapsed, 2), "rate": round(rate, 1), "p50_ms": p50, "p99_ms": p99}
        )
        if not self.config.progress:
            return
        line = (
            f"[{elapsed:6.1f}s/{self.config.duration:g}s] "
            f"sessions {sum(self.connected.values()):>5}  {rate:9.1f} submits/s  "
            f"p50 {p50:8.2f} ms  p99 {p99:8.2f} ms  errors {self.errors}"
        )
        if self.config.check:
            line += f"  violations {self.violations}"
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.flush(force=True)
        if self.tty and self.config.progress:
            self.stream.write("\n")
            self.stream.flush()
