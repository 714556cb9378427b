"""Does the load generator out-run what it measures? ``tether loadtest`` against a picows
reference client, both driving the bare inline baseline server.

    python bench/generator.py [--users 100] [--seconds 5] [--rounds 5] [--turns 20] [--json OUT]

One server, ``baseline-inline`` (``servers.py``: bare aiohttp + uvloop, the
cheapest server there is), pinned to the server core; one generator process at
a time, pinned to the other core:

- ``loadtest-picows``: ``tether loadtest --scenario chat --client picows``;
- ``loadtest-aiohttp``: the same with ``--client aiohttp``;
- ``picows-reference``: ``generator_reference.py``, a picows client that does
  only what the chat scenario does to the server, as cheaply as it can.

Every round starts the server afresh and runs the three in a rotated order; the
summary is medians over rounds, and each row's submits/s divided by the
reference's (the goal: ``loadtest-picows`` at 0.8 or more). Each row records its
generator's CPU (% of one core) as the bench sees it in ``/proc/<pid>/stat``,
over the middle of the run, next to the generator's own figure over its
measured time, and the server's (from ``/proc`` too): a generator near 100%
measures itself; a server near 100% is what the row measured.
``bench/run.py`` runs this as its ``generator`` section.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import servers  # noqa: E402

GENERATOR_CPU = 1 - servers.SERVER_CPU
SERVER = "baseline-inline"
REFERENCE = "picows-reference"
KINDS = ("loadtest-picows", "loadtest-aiohttp", REFERENCE)
SATURATED = 90.0  # % of one core
# The bench reads a generator's CPU from ``/proc`` from this long after it started
# (its imports are over) until its run is over.
STARTUP = 1.0
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process so far (Linux ``/proc/<pid>/stat``), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def command(kind: str, url: str, users: int, seconds: float, turns: int, out: Path) -> list[str]:
    if kind == REFERENCE:
        return [
            sys.executable, str(HERE / "generator_reference.py"), url, "--users", str(users),
            "--seconds", str(seconds), "--turns", str(turns),
        ]  # fmt: skip
    return [
        sys.executable, "-m", "tether", "loadtest", url, "--users", str(users),
        "--duration", str(seconds), "--scenario", "chat", "--turns", str(turns),
        "--client", kind.removeprefix("loadtest-"), "--quiet", "--json", str(out),
    ]  # fmt: skip


def measure(
    kind: str, url: str, server_pid: int, users: int, seconds: float, turns: int
) -> dict[str, Any]:
    """One row: one generator process against the running server."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        started = time.monotonic()
        proc = subprocess.Popen(
            command(kind, url, users, seconds, turns, out),
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        servers.pin(proc.pid, GENERATOR_CPU)
        window: dict[str, float | None] = {}
        if seconds > STARTUP + 0.5:
            time.sleep(max(0.0, started + STARTUP - time.monotonic()))
            t0, g0, s0 = time.monotonic(), cpu_seconds(proc.pid), cpu_seconds(server_pid)
            time.sleep(max(0.0, started + seconds - time.monotonic()))
            t1, g1, s1 = time.monotonic(), cpu_seconds(proc.pid), cpu_seconds(server_pid)
            if None not in (g0, g1, s0, s1):
                window["generator"] = round(100 * (g1 - g0) / (t1 - t0), 1)  # type: ignore[operator]
                window["server"] = round(100 * (s1 - s0) / (t1 - t0), 1)  # type: ignore[operator]
        try:
            stdout, _ = proc.communicate(timeout=seconds + 120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        if kind == REFERENCE:
            if proc.returncode != 0:
                raise RuntimeError(f"the reference client exited with {proc.returncode}")
            result = orjson.loads(stdout.strip().splitlines()[-1])
            own_cpu, throughput, errors = (
                result["generator_cpu_percent"], result["throughput"], result["errors"],
            )  # fmt: skip
            client = "picows"
        else:
            if not out.exists():
                raise RuntimeError(f"loadtest exited with {proc.returncode} and wrote no result")
            result = orjson.loads(out.read_bytes())
            own_cpu = result["generator_cpu_percent"][0]
            throughput, errors = result["throughput"], result["error_count"]
            client = result["client"]
    cpu = window.get("generator")
    return {
        "generator": kind,
        "client": client,
        "throughput": throughput,
        "errors": errors,
        # What the bench read in /proc over the run's middle (None for runs too short),
        # and what the generator says it used over its measured time.
        "generator_cpu_percent": cpu if cpu is not None else own_cpu,
        "generator_cpu_proc_percent": cpu,
        "generator_cpu_own_percent": own_cpu,
        "server_cpu_percent": window.get("server"),
    }


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians over rounds per generator, and submits/s divided by the reference's."""
    out = []
    for kind in KINDS:
        mine = [r for r in rows if r["generator"] == kind]
        if not mine:
            continue
        server_cpu = [r["server_cpu_percent"] for r in mine if r["server_cpu_percent"] is not None]
        cpu = statistics.median(r["generator_cpu_percent"] for r in mine)
        throughput = statistics.median(r["throughput"] for r in mine)
        out.append(
            {
                "generator": kind,
                "client": mine[0]["client"],
                "throughput": round(throughput, 1),
                "throughput_range": [
                    min(r["throughput"] for r in mine),
                    max(r["throughput"] for r in mine),
                ],
                "generator_cpu_percent": round(cpu, 1),
                "generator_cpu_range": [
                    min(r["generator_cpu_percent"] for r in mine),
                    max(r["generator_cpu_percent"] for r in mine),
                ],
                "generator_us_per_submit": round(1e4 * cpu / throughput, 1) if throughput else None,
                "server_cpu_percent": round(statistics.median(server_cpu), 1)
                if server_cpu
                else None,
                "generator_saturated": any(r["generator_cpu_percent"] > SATURATED for r in mine),
                "errors": sum(r["errors"] for r in mine),
            }
        )
    reference = next((e for e in out if e["generator"] == REFERENCE), None)
    for entry in out:
        if reference and reference["throughput"] > 0:
            entry["vs_reference"] = round(entry["throughput"] / reference["throughput"], 3)
        # What the ratio would be with both generators saturated: the reference's CPU per
        # submit over this one's (less at the mercy of a shared machine than submits/s).
        ours, theirs = (
            entry["generator_us_per_submit"],
            reference and reference["generator_us_per_submit"],
        )
        if ours and theirs:
            entry["cpu_vs_reference"] = round(theirs / ours, 3)
    return out


def run(users: int, seconds: float, rounds: int, turns: int, log: Any = print) -> dict[str, Any]:
    rows = []
    for r in range(rounds):
        server = servers.start(SERVER)
        try:
            shift = r % len(KINDS)
            for kind in KINDS[shift:] + KINDS[:shift]:
                row = measure(kind, server.url, server.pid, users, seconds, turns)
                row["round"] = r
                rows.append(row)
                server_cpu = row["server_cpu_percent"]
                log(
                    f"round {r + 1}/{rounds}  generator {kind:17} {row['throughput']:9.0f} "
                    f"submits/s  generator CPU {row['generator_cpu_percent']:5.1f}%  server CPU "
                    + (f"{server_cpu:5.1f}%" if server_cpu is not None else "  n/a")
                )
        finally:
            server.stop()
    summary = summarize(rows)
    picows = next((e for e in summary if e["generator"] == "loadtest-picows"), {})
    return {
        "server": SERVER,
        "users": users,
        "seconds": seconds,
        "rounds": rounds,
        "turns": turns,
        "rows": rows,
        "summary": summary,
        "ratio": picows.get("vs_reference"),
    }


def markdown(gen: dict[str, Any]) -> list[str]:
    lines = [
        f"Generator: one generator process on one core against `{gen['server']}` (on the other), "
        f"chat conversations of {gen['turns']} turns, C={gen['users']} closed loop, "
        f"{gen['seconds']:g} s per row, median of {gen['rounds']} alternating round(s). "
        "`loadtest-*` is `tether loadtest --scenario chat --client *`, `picows-reference` "
        "the fastest client we could write (`bench/generator_reference.py`). Generator CPU "
        "is % of one core (`/proc/<pid>/stat`, mid-run); above 90% the generator, not the "
        "server, set the pace. The last column is the reference's CPU per submit over the "
        "row's: the ratio two saturated generators would show.",
        "",
        "| generator | client | submits/s | rounds: min..max | generator CPU | "
        "CPU µs/submit | server CPU | ÷ picows-reference | CPU/submit: reference ÷ row |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in gen["summary"]:
        mark = " (generator saturated)" if e["generator_saturated"] else ""
        err = f", {e['errors']} errors" if e["errors"] else ""
        low, high = e["throughput_range"]
        server = f"{e['server_cpu_percent']:.0f}%" if e["server_cpu_percent"] is not None else ""
        us = e["generator_us_per_submit"]
        lines.append(
            f"| {e['generator']}{mark}{err} | {e['client']} | {e['throughput']:.0f} | "
            f"{low:.0f}..{high:.0f} | {e['generator_cpu_percent']:.0f}% | "
            f"{us if us is not None else ''} | {server} | {e.get('vs_reference', '')} | "
            f"{e.get('cpu_vs_reference', '')} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--json", type=Path, help="write every row and the summary here")
    args = parser.parse_args()
    gen = run(args.users, args.seconds, args.rounds, args.turns, log=print)
    print("\n".join(markdown(gen)))
    if args.json:
        args.json.write_bytes(orjson.dumps(gen, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
