"""tether's benchmark: one command, figures as ratios against a bare baseline.

    python bench/run.py            # the full run (`make bench`), a few minutes
    python bench/run.py --quick    # tiny sizes, a few seconds (the smoke test)

Sections:

- throughput: a bare aiohttp + uvloop server (inline, and with
  ``run_in_executor``) against tether's demo ``chat`` (sync, session state)
  and an async variant, at C concurrent clients, in alternating rounds. Every
  row uses the same load generator (``tether loadtest --scenario chat``, one
  process) for the same duration. Servers run on one core, the generator on
  the other. Medians over rounds.
- memory: idle memory per session: RSS growth of the server process divided
  by the number of open, idle sessions.
- cold start: ``tether demo`` until ``/healthz`` answers; ``import tether``.

Not measured yet (they need protocol features still being built): topic
fan-out to many subscribers, and the bytes a delta update saves over a full
one. Each would be one more section function here.

Results go to ``bench/results/<date>.json``; ``--update-readme`` also
rewrites the summary in ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import servers  # noqa: E402

GENERATOR_CPU = 1 - servers.SERVER_CPU
BASELINES = ("baseline-inline", "baseline-executor")
TETHERS = ("tether-sync", "tether-async")
README = HERE / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {
            "rounds": 1,
            "seconds": 0.5,
            "concurrency": [10],
            "turns": 5,
            "sessions": [20, 100],
            "cold_repeats": 1,
            "settle": 0.1,
        }
    return {
        "rounds": 3,
        "seconds": 5.0,
        "concurrency": [1, 10, 100, 1000],
        "turns": 20,
        "sessions": [5000, 20000],
        "cold_repeats": 5,
        "settle": 1.0,
    }


def raise_open_files_limit() -> int:
    """Every session is a socket in the server and in the generator."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return int(resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- throughput ------------------------------------------------------------------


def loadtest(url: str, users: int, seconds: float, turns: int) -> dict[str, Any]:
    """One row: the real `tether loadtest` in its own process, on the generator core."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [
            sys.executable, "-m", "tether", "loadtest", url,
            "--users", str(users), "--duration", str(seconds), "--scenario", "chat",
            "--turns", str(turns), "--quiet", "--json", str(out),
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        servers.pin(proc.pid, GENERATOR_CPU)
        try:
            proc.wait(timeout=seconds + 120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        if not out.exists():
            raise RuntimeError(f"loadtest exited with {proc.returncode} and wrote no result")
        result: dict[str, Any] = orjson.loads(out.read_bytes())
    return {
        "throughput": result["throughput"],
        "p50_ms": result["latency_ms"]["p50"],
        "p99_ms": result["latency_ms"]["p99"],
        "errors": result["error_count"],
        "error_codes": result["errors"],
        "generator_cpu_percent": result["generator_cpu_percent"][0],
        "generator_saturated": result["generator_saturated"],
    }


def throughput(size: dict[str, Any], kinds: list[str]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for r in range(size["rounds"]):
        running = {kind: servers.start(kind) for kind in kinds}
        try:
            for ci, c in enumerate(size["concurrency"]):
                shift = (r + ci) % len(kinds)
                for kind in kinds[shift:] + kinds[:shift]:
                    row = loadtest(running[kind].url, c, size["seconds"], size["turns"])
                    row.update(round=r, server=kind, clients=c)
                    rows.append(row)
                    log(
                        f"round {r + 1}/{size['rounds']}  C={c:<5} {kind:18} "
                        f"{row['throughput']:9.0f} submits/s  p50 {row['p50_ms']:7.2f} ms  "
                        f"p99 {row['p99_ms']:7.2f} ms  generator CPU "
                        f"{row['generator_cpu_percent']:.0f}%"
                    )
        finally:
            for server in running.values():
                server.stop()
    return {"rows": rows, "summary": summarize(rows, kinds, size["concurrency"])}


def summarize(rows: list[dict[str, Any]], kinds: list[str], levels: list[int]) -> list[Any]:
    """Medians over rounds per (clients, server), and the throughput ratios to the baselines."""
    out = []
    for c in levels:
        medians: dict[str, dict[str, Any]] = {}
        for kind in kinds:
            mine = [r for r in rows if r["server"] == kind and r["clients"] == c]
            if not mine:
                continue
            medians[kind] = {
                "clients": c,
                "server": kind,
                "throughput": round(statistics.median(r["throughput"] for r in mine), 1),
                "throughput_range": [
                    min(r["throughput"] for r in mine),
                    max(r["throughput"] for r in mine),
                ],
                "p50_ms": round(statistics.median(r["p50_ms"] for r in mine), 3),
                "p99_ms": round(statistics.median(r["p99_ms"] for r in mine), 3),
                "errors": sum(r["errors"] for r in mine),
                "error_codes": dict(
                    sum((Counter(r.get("error_codes", {})) for r in mine), Counter())
                ),
                "generator_saturated": any(r["generator_saturated"] for r in mine),
            }
        for entry in medians.values():
            for base in BASELINES:
                if base in medians and medians[base]["throughput"] > 0:
                    ratio = entry["throughput"] / medians[base]["throughput"]
                    entry[f"vs_{base}"] = round(ratio, 3)
            out.append(entry)
    return out


# -- memory ------------------------------------------------------------------------


async def _hold(url: str, count: int) -> None:
    """Open ``count`` idle sessions, say so on stdout, and keep them until stdin closes."""
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        sockets: list[Any] = []
        batch = 200
        for start in range(0, count, batch):
            opened = await asyncio.gather(
                *(http.ws_connect(url) for _ in range(min(batch, count - start)))
            )
            for ws in opened:
                await ws.receive()  # the welcome: the session exists
            sockets.extend(opened)
        print(f"ready {len(sockets)}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for ws in sockets:
            await ws.close()


def hold_sessions(url: str, count: int, procs: int) -> list[subprocess.Popen[str]]:
    holders = []
    shares = [count // procs + (1 if k < count % procs else 0) for k in range(procs)]
    for share in shares:
        holder = subprocess.Popen(
            [sys.executable, __file__, "--hold", url, str(share)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        servers.pin(holder.pid, GENERATOR_CPU)
        holders.append(holder)
    for holder in holders:
        assert holder.stdout is not None
        line = holder.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"a session holder failed: {line!r}")
    return holders


def release(holders: list[subprocess.Popen[str]]) -> None:
    for holder in holders:
        with contextlib.suppress(OSError):
            assert holder.stdin is not None
            holder.stdin.close()
    for holder in holders:
        try:
            holder.wait(timeout=60)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()


def settled_rss(pid: int, settle: float) -> int:
    time.sleep(settle)
    return servers.rss_bytes(pid)


def memory(size: dict[str, Any], kinds: list[str], fd_limit: int) -> dict[str, Any]:
    # The server needs a descriptor per session plus a few of its own.
    levels = [min(n, fd_limit - 100) for n in size["sessions"]]
    out: dict[str, Any] = {"requested": size["sessions"], "sessions": levels, "servers": {}}
    for kind in kinds:
        server = servers.start(kind)
        holders: list[subprocess.Popen[str]] = []
        try:
            release(hold_sessions(server.url, 10, 1))  # warm up the code paths once
            before = settled_rss(server.pid, size["settle"])
            results = []
            opened = 0
            for n in levels:
                holders += hold_sessions(server.url, n - opened, 2 if n - opened > 1000 else 1)
                opened = n
                rss = settled_rss(server.pid, size["settle"])
                per = (rss - before) / n
                results.append({"sessions": n, "rss_bytes": rss, "bytes_per_session": round(per)})
                log(f"memory  {kind:18} {n:>6} idle sessions: {per / 1024:7.1f} KiB each")
            out["servers"][kind] = {"rss_before_bytes": before, "levels": results}
        finally:
            release(holders)
            server.stop()
    return out


# -- cold start ------------------------------------------------------------------------


def cold_start(size: dict[str, Any]) -> dict[str, Any]:
    def timed(cmd: list[str]) -> float:
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)
        return time.perf_counter() - t0

    def demo_until_healthy() -> float:
        port = servers.free_port()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            servers.command("tether-sync", port),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        try:
            servers.wait_healthy(port, proc=proc)
            return time.perf_counter() - t0
        finally:
            proc.terminate()
            proc.wait(timeout=15)

    samples: dict[str, list[float]] = {"python_pass": [], "import_tether": [], "demo_healthz": []}
    for _ in range(size["cold_repeats"]):
        samples["python_pass"].append(timed([sys.executable, "-c", "pass"]))
        samples["import_tether"].append(timed([sys.executable, "-c", "import tether"]))
        samples["demo_healthz"].append(demo_until_healthy())
    out = {f"{k}_ms": round(1000 * statistics.median(v), 1) for k, v in samples.items()}
    log(f"cold start: {out}")
    return out


# -- reporting ------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem / (1 << 30), 1),
        "kernel": platform.release(),
        "system": platform.system(),
    }


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("tether", "aiohttp", "uvloop", "websockets", "orjson"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        out["git"] = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    return out


def markdown(results: dict[str, Any]) -> str:
    m, v, size = results["machine"], results["versions"], results["sizes"]
    lines = [
        f"Run of {results['date']} ({'quick' if results['quick'] else 'full'}): "
        f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['system']} {m['kernel']}; "
        + ", ".join(f"{k} {val}" for k, val in v.items())
        + ".",
        "",
        f"Throughput: `tether loadtest --scenario chat --turns {size['turns']}` (closed loop, "
        f"one generator process), {size['seconds']:g} s per row, median of "
        f"{size['rounds']} alternating round(s). Ratios are submits/s of the row divided by "
        "the baseline's at the same C.",
        "",
        "| C | server | submits/s | rounds: min..max | p50 ms | p99 ms "
        "| ÷ baseline-inline | ÷ baseline-executor |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = results["throughput"]["rows"]
    kinds = list(dict.fromkeys(r["server"] for r in rows))
    for e in summarize(rows, kinds, size["concurrency"]):
        low, high = e["throughput_range"]
        mark = " (generator saturated)" if e["generator_saturated"] else ""
        codes = ", ".join(f"{k} {n}" for k, n in e.get("error_codes", {}).items())
        err = f", {e['errors']} errors over the rounds" if e["errors"] else ""
        err += f" ({codes})" if codes else ""
        lines.append(
            f"| {e['clients']} | {e['server']}{mark}{err} | {e['throughput']:.0f} | "
            f"{low:.0f}..{high:.0f} | {e['p50_ms']:.2f} | {e['p99_ms']:.2f} | "
            f"{e.get('vs_baseline-inline', '')} | {e.get('vs_baseline-executor', '')} |"
        )
    mem = results["memory"]
    lines += ["", "Idle memory per session (server RSS growth / sessions):", ""]
    lines += ["| server | " + " | ".join(f"{n} sessions" for n in mem["sessions"]) + " |"]
    lines += ["|---|" + "---:|" * len(mem["sessions"])]
    for kind, data in mem["servers"].items():
        cells = " | ".join(f"{lv['bytes_per_session'] / 1024:.1f} KiB" for lv in data["levels"])
        lines.append(f"| {kind} | {cells} |")
    if mem["sessions"] != mem["requested"]:
        lines += [
            "",
            f"(Asked for {mem['requested']} sessions; the open-files limit of this machine "
            f"allowed {mem['sessions']}.)",
        ]
    c = results["cold_start"]
    lines += [
        "",
        f"Cold start (median): `tether demo` until /healthz answers {c['demo_healthz_ms']:.0f} ms; "
        f"`python -c 'import tether'` {c['import_tether_ms']:.0f} ms "
        f"(`python -c pass` {c['python_pass_ms']:.0f} ms).",
    ]
    return "\n".join(lines)


def update_readme(text: str) -> None:
    readme = README.read_text()
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    README.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def main() -> int:
    parser = argparse.ArgumentParser(description="tether's benchmark")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="results directory")
    parser.add_argument("--update-readme", action="store_true", help="rewrite bench/README.md")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS.json",
        help="only print (and with --update-readme, write) the summary of an earlier run",
    )
    parser.add_argument("--hold", nargs=2, metavar=("URL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    fd_limit = raise_open_files_limit()
    if args.hold:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_hold(args.hold[0], int(args.hold[1])))
        return 0

    if args.render:
        text = markdown(orjson.loads(args.render.read_bytes()))
        print(text)
        if args.update_readme:
            update_readme(text)
        return 0

    size = sizes(args.quick)
    date = dt.datetime.now(dt.UTC)
    results: dict[str, Any] = {
        "date": date.strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "machine": machine(),
        "versions": versions(),
        "sizes": size,
        "open_files_limit": fd_limit,
        "notes": [
            "The machine is shared with other work; figures are noisy.",
            "Server pinned to one core, the load generator to the other.",
            "Not yet measured: topic fan-out, delta-update bytes.",
        ],
    }
    kinds = [*BASELINES, *TETHERS]
    results["throughput"] = throughput(size, kinds)
    results["memory"] = memory(size, ["baseline-inline", "tether-sync"], fd_limit)
    results["cold_start"] = cold_start(size)

    args.out.mkdir(parents=True, exist_ok=True)
    name = date.strftime("%Y-%m-%d") + ("-quick" if args.quick else "")
    path = args.out / f"{name}.json"
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    text = markdown(results)
    print(text)
    log(f"results written to {path}")
    if args.update_readme:
        update_readme(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
