"""What one chat turn costs as the conversation grows (issue 14's turn-length row).

    python bench/turn_cost.py            # turns 10, 100, 1000; 5 alternating rounds
    python bench/turn_cost.py --quick    # a smoke test (turns 5 and 50, 2 rounds)

One session at a time on an idle ``tether`` server (the demo's sync ``chat``, and
the same chat as ``async def``: bench/servers.py's ``tether-sync`` and
``tether-async``), through the Python client, with output deltas on and off. For
every (server, deltas, turn) a round opens a fresh session, fills its history to
``turn`` unmeasured, then measures ``batch`` more submits one at a time: the
client's round-trip time of each (median) and the server's CPU per submit (the
process's CPU time over the batch, from ``/proc/<pid>/task/*/schedstat``, in
nanoseconds; ``/proc/<pid>/stat``'s ticks when schedstat is missing). Rounds
alternate the turns and the delta modes, so a noisy neighbour hits them alike;
the figures are medians over rounds. The ratio printed is turn ``max`` ÷ turn
``min``: how much more the last turn costs than an early one (goal: ≤ 1.5).

``run(quick)`` returns the results as a dict (for bench/run.py to embed as a
section); ``main`` prints them as a table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import servers  # noqa: E402

import tether  # noqa: E402

KINDS = ("tether-sync", "tether-async")
# Sequential submits from one session run well above the default rate limit.
UNLIMITED = ["--submit-rate", "1000000", "--submit-burst", "1000000", "--resume-grace", "0"]
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {"turns": [5, 50], "batch": 20, "rounds": 2}
    return {"turns": [10, 100, 1000], "batch": 40, "rounds": 5}


def server_cpu_ns(pid: int) -> int:
    """CPU time used by every thread of process ``pid`` so far, in nanoseconds."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                continue  # a thread that just ended
        return total
    except (FileNotFoundError, PermissionError):
        pass
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // _TICK


def start(kind: str) -> servers.Running:
    return servers.start(kind, UNLIMITED)


async def measure(url: str, pid: int, deltas: bool, turn: int, batch: int) -> tuple[float, float]:
    """One fresh session filled to ``turn``; (median round trip, server CPU) per submit
    of the next ``batch`` turns, in microseconds."""
    async with tether.connect(url, deltas=deltas) as client:
        for i in range(turn):
            await client.submit("chat", f"fill message {i}")
        times = []
        cpu0 = server_cpu_ns(pid)
        for i in range(batch):
            t0 = time.perf_counter()
            await client.submit("chat", f"measured message {i}")
            times.append(time.perf_counter() - t0)
        cpu = server_cpu_ns(pid) - cpu0
    return statistics.median(times) * 1e6, cpu / batch / 1e3


async def _measure_server(running: servers.Running, size: dict[str, Any]) -> dict[str, Any]:
    samples: dict[tuple[bool, int], list[tuple[float, float]]] = {}
    modes = [True, False]
    for r in range(size["rounds"]):
        order = [(d, t) for d in modes for t in size["turns"]]
        if r % 2:
            order.reverse()  # alternate, so that drift hits every cell alike
        for deltas, turn in order:
            sample = await measure(running.url, running.pid, deltas, turn, size["batch"])
            samples.setdefault((deltas, turn), []).append(sample)
    out: dict[str, Any] = {}
    first, last = size["turns"][0], size["turns"][-1]
    for deltas in modes:
        rows = {}
        for turn in size["turns"]:
            cells = samples[(deltas, turn)]
            rows[str(turn)] = {
                "round_trip_us": round(statistics.median(c[0] for c in cells), 1),
                "server_cpu_us": round(statistics.median(c[1] for c in cells), 1),
            }
        out["deltas" if deltas else "no_deltas"] = {
            "turns": rows,
            "round_trip_ratio": round(
                rows[str(last)]["round_trip_us"] / rows[str(first)]["round_trip_us"], 2
            ),
            "server_cpu_ratio": round(
                rows[str(last)]["server_cpu_us"] / rows[str(first)]["server_cpu_us"], 2
            ),
        }
    return out


def run(quick: bool) -> dict[str, Any]:
    """Measure every server; the results as a JSON-able dict."""
    size = sizes(quick)
    results: dict[str, Any] = {"sizes": size, "servers": {}}
    for kind in KINDS:
        running = start(kind)
        try:
            results["servers"][kind] = asyncio.run(_measure_server(running, size))
        finally:
            running.stop()
    return results


def table(results: dict[str, Any]) -> str:
    turns = results["sizes"]["turns"]
    head = f"{'server':<13} {'deltas':<6} " + " ".join(
        f"{'rt@' + str(t) + ' us':>11} {'cpu@' + str(t) + ' us':>12}" for t in turns
    )
    lines = [head + f" {'rt ratio':>8} {'cpu ratio':>9}"]
    for kind, modes in results["servers"].items():
        for mode, row in modes.items():
            cells = " ".join(
                f"{row['turns'][str(t)]['round_trip_us']:>11.1f} "
                f"{row['turns'][str(t)]['server_cpu_us']:>12.1f}"
                for t in turns
            )
            lines.append(
                f"{kind:<13} {'on' if mode == 'deltas' else 'off':<6} {cells} "
                f"{row['round_trip_ratio']:>8.2f} {row['server_cpu_ratio']:>9.2f}"
            )
    lines.append(f"ratios: turn {turns[-1]} ÷ turn {turns[0]} (medians of alternating rounds)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    args = parser.parse_args()
    print(table(run(args.quick)))


if __name__ == "__main__":
    main()
