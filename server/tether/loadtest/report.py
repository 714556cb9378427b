"""``Result``: a finished load test's merged statistics, as a table and as JSON."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Final

from .config import Config
from .stats import Stats

__all__ = ["CPU_SATURATED", "Result"]

# Above this share of one core a generator process is the bottleneck, not the server.
CPU_SATURATED: Final = 0.90


class Result:
    """A finished load test: merged statistics and what to say about them."""

    def __init__(self, config: Config, stats: Stats, timeline: list[dict[str, float]]) -> None:
        self.config = config
        self.stats = stats
        self.timeline = timeline

    @property
    def elapsed(self) -> float:
        return max(self.stats.wall_seconds, 1e-9)

    @property
    def throughput(self) -> float:
        return self.stats.ok / self.elapsed

    @property
    def cpu_percent(self) -> list[float]:
        return [round(100 * cpu / self.elapsed, 1) for cpu in self.stats.cpu_seconds]

    @property
    def saturated(self) -> bool:
        return any(p > CPU_SATURATED * 100 for p in self.cpu_percent)

    @property
    def failed(self) -> bool:
        """True when the run was stopped (``stats.fatal``), when --check found violations,
        or when no submit succeeded at all (with or without --check)."""
        s = self.stats
        return s.fatal is not None or (self.config.check and s.violation_count > 0) or s.ok == 0

    def to_json(self) -> dict[str, Any]:
        s = self.stats
        return {
            "config": asdict(self.config),
            "mode": "open" if self.config.rate else "closed",
            # The client stack that generated the load (stacks: picows, aiohttp, websockets).
            "client": self.config.client,
            "elapsed_s": round(self.elapsed, 3),
            "submits_ok": s.ok,
            "calls": dict(s.calls),
            "partials": s.partials,
            "fatal": s.fatal,
            "throughput": round(self.throughput, 1),
            "latency_ms": s.latency.summary_ms(50, 90, 99),
            "errors": dict(s.errors),
            "error_count": sum(s.errors.values()),
            "connects": s.connect.count,
            "connect_ms": s.connect.summary_ms(50, 90, 99),
            "generator_cpu_percent": self.cpu_percent,
            "generator_saturated": self.saturated,
            "events": {
                "count": s.events,
                "per_s": round(s.events / self.elapsed, 1),
                # From a say's submit to its event at a receiver (rooms; the messages
                # of users in the same generator process).
                "timed": s.event_latency.count,
                "latency_ms": s.event_latency.summary_ms(50, 90, 99),
            },
            "check": {
                "enabled": self.config.check,
                "results_checked": s.checked,
                "violations": s.violation_count,
                "examples": s.violations,
            },
            "timeline": self.timeline,
            "latency_histogram_us": s.latency.to_dict(),
        }

    def table(self) -> str:
        c, s = self.config, self.stats
        lat = s.latency.summary_ms(50, 90, 99)
        con = s.connect.summary_ms(50, 90, 99)
        mode = f"open loop at {c.rate:g} submits/s" if c.rate else "closed loop"
        procs = f"{c.procs} process{'es' if c.procs > 1 else ''}"
        lines = [
            f"tether loadtest: {c.scenario}, {c.users} users, {c.duration:g} s, {mode}, {procs}, "
            f"client {c.client}",
            "",
            f"{'':10}{'count':>9}{'per s':>10}{'p50 ms':>10}{'p90 ms':>10}"
            f"{'p99 ms':>10}{'max ms':>10}",
            f"{'submits':10}{s.ok:>9}{self.throughput:>10.1f}{lat['p50']:>10.2f}"
            f"{lat['p90']:>10.2f}{lat['p99']:>10.2f}{lat['max']:>10.2f}",
            f"{'connects':10}{s.connect.count:>9}{s.connect.count / self.elapsed:>10.1f}"
            f"{con['p50']:>10.2f}{con['p90']:>10.2f}{con['p99']:>10.2f}{con['max']:>10.2f}",
        ]
        if s.events:
            ev = s.event_latency.summary_ms(50, 90, 99)
            timed = (
                f"{ev['p50']:>10.2f}{ev['p90']:>10.2f}{ev['p99']:>10.2f}{ev['max']:>10.2f}"
                if s.event_latency.count
                else ""
            )
            lines.append(f"{'events':10}{s.events:>9}{s.events / self.elapsed:>10.1f}{timed}")
        lines.append("")
        if s.calls:
            total = sum(s.calls.values())
            lines.append(
                "results by function: "
                + ", ".join(f"{fn} {n} ({n / total:.0%})" for fn, n in s.calls.most_common())
            )
        if s.partials:
            lines.append(f"partials: {s.partials} streamed before their results")
        if s.event_latency.count:
            lines.append(
                f"events: topic events received; latency from a say's submit to its event, "
                f"over {s.event_latency.count} timed"
            )
        if s.errors:
            detail = ", ".join(f"{code} {n}" for code, n in s.errors.most_common())
            lines.append(f"errors: {sum(s.errors.values())} ({detail})")
        else:
            lines.append("errors: none")
        cpu = ", ".join(f"{p:g}%" for p in self.cpu_percent)
        lines.append(f"generator CPU: {cpu} of a core per process")
        if self.saturated:
            lines.append(
                f"WARNING: a generator process used more than {CPU_SATURATED:.0%} of a core; "
                "the figures may measure the generator, not the server (try --procs)"
            )
        if c.check:
            if s.violation_count:
                lines.append(f"check FAILED: {s.violation_count} violation(s)")
                lines.extend(f"  - {v}" for v in s.violations)
                if s.violation_count > len(s.violations):
                    lines.append(f"  ... and {s.violation_count - len(s.violations)} more")
            else:
                lines.append(f"check passed: {s.checked} results checked, no violation")
        elif s.violation_count:
            lines.append(f"protocol violations: {s.violation_count}")
            lines.extend(f"  - {v}" for v in s.violations[:10])
        if s.fatal is not None:
            lines.append(f"stopped: {s.fatal}")
        elif s.ok == 0:
            lines.append("no submit succeeded")
        return "\n".join(lines)
