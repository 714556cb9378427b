"""Global state against session state: the demo's ``track_score`` ÷ its ``chat`` (issue 13).

    python bench/global_state.py [--quick]

The demo (``tether demo``) on one core, ``tether loadtest`` on the other, at C
concurrent sessions in a closed loop, alternating rounds: ``--scenario chat``
(session state only) and ``--scenario score`` (each submit adds a score to the
shared leaderboard with one atomic ``lb_add`` from a sync function, and publishes
the new top 3 as the topic's current value), on the memory store and on Redis
(a ``redis-server`` of its own on a free loopback port, no persistence). The
ratio is score ÷ chat on the same store in the same run (goal: ≥ 0.5 on memory);
every row records its generator's CPU, and a ratio whose rows had a saturated
generator is not printed.

``run(quick)`` returns the results (``bench/run.py``'s ``global_state`` section).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import servers  # noqa: E402

GENERATOR_CPU = 1 - servers.SERVER_CPU
SATURATED = 90.0
SCENARIOS = ("chat", "score")


def sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {"users": 10, "seconds": 0.5, "rounds": 1, "turns": 5}
    return {"users": 100, "seconds": 5.0, "rounds": 3, "turns": 20}


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    port = servers.free_port()
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--dir", tmp]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)


def start_demo(store: str, namespace: str) -> servers.Running:
    return servers.start("tether-sync", ["--store", store, "--namespace", namespace])


def loadtest(url: str, scenario: str, size: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [
            sys.executable, "-m", "tether", "loadtest", url, "--scenario", scenario,
            "--users", str(size["users"]), "--duration", str(size["seconds"]),
            "--turns", str(size["turns"]), "--quiet", "--json", str(out),
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        servers.pin(proc.pid, GENERATOR_CPU)
        proc.wait(timeout=size["seconds"] + 120)
        result: dict[str, Any] = orjson.loads(out.read_bytes())
    return {
        "throughput": result["throughput"],
        "p50_ms": result["latency_ms"]["p50"],
        "p99_ms": result["latency_ms"]["p99"],
        "errors": result["error_count"],
        "generator_cpu_percent": result["generator_cpu_percent"][0],
        "client": result.get("client"),
    }


def run(quick: bool, log: Any = print) -> dict[str, Any]:
    size = sizes(quick)
    rows: list[dict[str, Any]] = []
    with redis_server() as redis_url:
        for r in range(size["rounds"]):
            for store in ("memory", "redis"):
                url = "memory://" if store == "memory" else redis_url
                demo = start_demo(url, f"bench{r}")
                try:
                    order = SCENARIOS if r % 2 == 0 else SCENARIOS[::-1]
                    for scenario in order:
                        row = loadtest(demo.url, scenario, size)
                        row.update({"round": r, "store": store, "scenario": scenario})
                        rows.append(row)
                        log(
                            f"round {r + 1}/{size['rounds']}  {store:6} {scenario:5} "
                            f"{row['throughput']:8.0f} submits/s  "
                            f"generator CPU {row['generator_cpu_percent']:.0f}%"
                        )
                finally:
                    demo.stop()
    return {"sizes": size, "rows": rows, "summary": summarize(rows)}


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for store in ("memory", "redis"):
        cells = {}
        for scenario in SCENARIOS:
            mine = [r for r in rows if r["store"] == store and r["scenario"] == scenario]
            if not mine:
                continue
            cells[scenario] = {
                "store": store,
                "scenario": scenario,
                "throughput": round(statistics.median(r["throughput"] for r in mine), 1),
                "p99_ms": round(statistics.median(r["p99_ms"] for r in mine), 2),
                "errors": sum(r["errors"] for r in mine),
                "generator_cpu_percent": round(
                    statistics.median(r["generator_cpu_percent"] for r in mine), 1
                ),
                "generator_saturated": any(r["generator_cpu_percent"] > SATURATED for r in mine),
            }
        if "score" in cells and "chat" in cells:
            score, chat = cells["score"], cells["chat"]
            valid = not (score["generator_saturated"] or chat["generator_saturated"])
            score["score_per_chat"] = (
                round(score["throughput"] / chat["throughput"], 3)
                if valid and chat["throughput"]
                else None
            )
        out.extend(cells.values())
    return out


def markdown(results: dict[str, Any]) -> list[str]:
    size = results["sizes"]
    lines = [
        f"Global state (issue 13): the demo's `track_score` (`--scenario score`: one atomic "
        f"`lb_add` from a sync function per submit, its top 3 published as the topic's "
        f"current value) against its `chat` (session state only), C={size['users']}, "
        f"{size['seconds']:g} s per row, median of {size['rounds']} alternating round(s), "
        "on each store. The ratio is score ÷ chat on the same store; it is left out when "
        f"either row's generator passed {SATURATED:.0f}% of its core.",
        "",
        "| store | scenario | submits/s | p99 ms | generator CPU | score ÷ chat |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for e in results["summary"]:
        ratio = str(e.get("score_per_chat", ""))
        if "score_per_chat" in e and e["score_per_chat"] is None:
            ratio = "generator saturated"
        err = f" ({e['errors']} errors)" if e["errors"] else ""
        lines.append(
            f"| {e['store']} | {e['scenario']}{err} | {e['throughput']:.0f} | {e['p99_ms']:.2f} "
            f"| {e['generator_cpu_percent']:.0f}% | {ratio} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print("\n".join(markdown(run(args.quick))))


if __name__ == "__main__":
    main()
