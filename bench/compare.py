"""Two source trees of tether, side by side in one run: is a change faster or slower?

    python bench/compare.py --base /path/to/old/checkout [--rounds 5] [--users 100]

Each round serves ``tether demo`` from each tree in turn (alternating, so a
slow phase of a shared machine hits both), pinned to the server core, and
drives it with the *same* generator (this tree's ``tether loadtest``, the
``chat`` scenario, pinned to the other core), or, with ``--own-generators``
(needed when the trees speak different protocol versions), each tree's own. It also
times each tree's cold start (process start until ``/healthz`` answers).
Prints medians and the ratio new ÷ base; ``--json`` writes every round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import servers

HERE = Path(__file__).resolve().parent
GENERATOR_CPU = 1 - servers.SERVER_CPU


def tree_env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree / "server")}


def serve(tree: Path, port: int) -> tuple[subprocess.Popen[bytes], float]:
    """``tether demo`` from ``tree``; returns it and its seconds to healthy."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tether", "demo", "--port", str(port), "--log-level", "warning"],
        env=tree_env(tree),
        stdout=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    servers.pin(proc.pid, servers.SERVER_CPU)
    servers.wait_healthy(port, proc=proc)
    return proc, time.perf_counter() - start


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its threads so far (``/proc/<pid>/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive(
    port: int,
    users: int,
    seconds: float,
    turns: int,
    tree: Path | None = None,
    server_pid: int | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [
            sys.executable, "-m", "tether", "loadtest", f"ws://127.0.0.1:{port}/ws",
            "--users", str(users), "--duration", str(seconds), "--scenario", "chat",
            "--turns", str(turns), "--quiet", "--json", str(out),
        ]  # fmt: skip
        env = tree_env(tree) if tree is not None else None
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env)
        servers.pin(proc.pid, GENERATOR_CPU)
        cpu_before = cpu_seconds(server_pid) if server_pid else 0.0
        proc.wait(timeout=seconds + 120)
        cpu_after = cpu_seconds(server_pid) if server_pid else 0.0
        if not out.exists() or proc.returncode not in (0, 1):
            raise RuntimeError(f"the load test exited with {proc.returncode}")
        result: dict[str, Any] = orjson.loads(out.read_bytes())
        if not result["throughput"]:
            raise RuntimeError("no submit succeeded (do the trees speak the same protocol?)")
    return {
        "throughput": result["throughput"],
        "p50_ms": result["latency_ms"]["p50"],
        "p99_ms": result["latency_ms"]["p99"],
        # A generator process above ~90% of its core measures itself, not the server.
        "generator_cpu": max(result.get("generator_cpu_percent") or [0.0]),
        # The server's CPU per submit (all its threads, connects and closes included):
        # less sensitive to a noisy neighbour than submits/s.
        "server_cpu_us": (cpu_after - cpu_before)
        * 1e6
        / (result["throughput"] * result["elapsed_s"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="the other checkout's root")
    parser.add_argument("--new", type=Path, default=HERE.parent, help="default: this checkout")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--own-generators",
        action="store_true",
        help="drive each tree with its own tether loadtest (for different protocol versions)",
    )
    args = parser.parse_args()
    trees = {"base": args.base.resolve(), "new": args.new.resolve()}
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    for r in range(args.rounds):
        order = list(trees) if r % 2 == 0 else list(reversed(trees))
        for name in order:
            port = servers.free_port()
            proc, ready = serve(trees[name], port)
            try:
                generator = trees[name] if args.own_generators else None
                row = drive(port, args.users, args.seconds, args.turns, generator, proc.pid)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            row["ready_s"] = ready
            rounds[name].append(row)
            print(
                f"round {r + 1} {name:4}: {row['throughput']:8.0f} submits/s  "
                f"p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms  "
                f"ready {ready * 1000:.0f} ms  generator {row['generator_cpu']:.0f}% CPU  "
                f"server {row['server_cpu_us']:.1f} µs CPU/submit",
                flush=True,
            )
    summary = {
        name: {
            key: statistics.median(row[key] for row in rows)
            for key in ("throughput", "p50_ms", "p99_ms", "ready_s", "server_cpu_us")
        }
        for name, rows in rounds.items()
    }
    base, new = summary["base"], summary["new"]
    print(
        f"medians of {args.rounds} alternating rounds, chat C={args.users}:\n"
        f"  base {base['throughput']:.0f} submits/s, new {new['throughput']:.0f} submits/s: "
        f"new/base = {new['throughput'] / base['throughput']:.3f}\n"
        f"  server CPU per submit: base {base['server_cpu_us']:.1f} µs, "
        f"new {new['server_cpu_us']:.1f} µs: new/base = "
        f"{new['server_cpu_us'] / base['server_cpu_us']:.3f}\n"
        f"  p99 base {base['p99_ms']:.2f} ms, new {new['p99_ms']:.2f} ms\n"
        f"  ready base {base['ready_s'] * 1000:.0f} ms, new {new['ready_s'] * 1000:.0f} ms"
    )
    if args.json:
        args.json.write_bytes(
            orjson.dumps({"rounds": rounds, "summary": summary}, option=orjson.OPT_INDENT_2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
