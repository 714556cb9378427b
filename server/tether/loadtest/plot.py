"""``--plot``: throughput and latency over time, as a PNG (needs matplotlib)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .report import Result

__all__ = ["plot"]


def plot(result: Result, path: str) -> None:
    """Throughput and latency over time, as a PNG (needs matplotlib)."""
    importlib.import_module("matplotlib").use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")

    t = [p["t"] for p in result.timeline]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8, 6))
    top.plot(t, [p["rate"] for p in result.timeline])
    top.set_ylabel("submits/s")
    top.set_title(f"tether loadtest: {result.config.scenario}, {result.config.users} users")
    bottom.plot(t, [p["p50_ms"] for p in result.timeline], label="p50")
    bottom.plot(t, [p["p99_ms"] for p in result.timeline], label="p99")
    bottom.set_ylabel("latency (ms)")
    bottom.set_xlabel("seconds")
    bottom.legend()
    for axes in (top, bottom):
        axes.set_ylim(bottom=0)  # from zero: a wiggle should look like one
        axes.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
