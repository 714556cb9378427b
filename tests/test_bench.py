"""The benchmark at tiny sizes, so that `make bench` cannot rot."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture
def run_py(monkeypatch):
    """bench/run.py as a module (it puts bench/ on the path for its siblings)."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("run")


def test_the_quick_benchmark_measures_every_server_and_writes_its_results(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    [path] = tmp_path.glob("*-quick.json")
    results = orjson.loads(path.read_bytes())

    summary = {(e["server"], e["clients"]): e for e in results["throughput"]["summary"]}
    servers = ["baseline-inline", "baseline-executor", "tether-sync", "tether-async"]
    assert set(summary) == {(s, c) for s in servers for c in results["sizes"]["concurrency"]}
    for entry in summary.values():
        assert entry["throughput"] > 0
        assert entry["errors"] == 0
        assert entry["p50_ms"] <= entry["p99_ms"]
        assert 0 < entry["generator_cpu_percent"] <= 200
        if (
            entry["generator_saturated"]
            or summary[("baseline-inline", entry["clients"])]["generator_saturated"]
        ):
            assert entry["vs_baseline-inline"] is None  # a saturated generator: no ratio
        else:
            assert entry["vs_baseline-inline"] > 0
    for row in results["throughput"]["rows"]:
        assert row["generator_cpu_percent"] > 0  # every row records its generator's CPU
        assert row["server_cpu_us"] > 0  # ... and its server's CPU per submit
    for entry in summary.values():
        # Capacity (the baseline's CPU per submit over the row's) needs no headroom.
        base = summary[("baseline-inline", entry["clients"])]
        assert entry["capacity_vs_baseline-inline"] == pytest.approx(
            base["server_cpu_us"] / entry["server_cpu_us"], abs=1e-3
        )

    gen = results["generator"]
    by_generator = {e["generator"]: e for e in gen["summary"]}
    assert set(by_generator) == {"loadtest-picows", "loadtest-aiohttp", "picows-reference"}
    assert {e["client"] for e in gen["summary"]} == {"picows", "aiohttp"}
    assert by_generator["picows-reference"]["vs_reference"] == 1.0
    for entry in gen["summary"]:
        assert entry["throughput"] > 0 and entry["errors"] == 0
        assert entry["generator_cpu_percent"] > 0
    assert gen["ratio"] == by_generator["loadtest-picows"]["vs_reference"] > 0
    assert len(gen["rows"]) == 3 * results["sizes"]["generator_rounds"]

    latency = {(e["server"], e["rate"]): e for e in results["latency"]["summary"]}
    assert set(latency) == {(s, r) for s in servers for r in results["sizes"]["latency_rates"]}
    for entry in latency.values():
        assert entry["carried"] > 0 and entry["errors"] == 0
        assert entry["p50_ms"] <= entry["p99_ms"] <= entry["max_ms"]

    memory = results["memory"]
    assert set(memory["servers"]) == {"baseline-inline", "tether-sync"}
    for data in memory["servers"].values():
        assert [lv["sessions"] for lv in data["levels"]] == memory["sessions"]

    fanout = results["fanout"]
    assert fanout["subscribers"] == results["sizes"]["subscribers"]
    rows = fanout["rows"]
    assert {r["server"] for r in rows} == {"baseline-fanout", "tether-fanout"}
    assert len(rows) == 2 * results["sizes"]["fanout_rounds"]
    for row in rows:
        assert row["received"] == fanout["subscribers"]  # every subscriber got every event
        assert 0 <= row["first_ms"] <= row["median_ms"] <= row["last_ms"]
    assert [e["server"] for e in fanout["summary"]] == ["baseline-fanout", "tether-fanout"]
    assert all(e["vs_baseline"] > 0 and e["missed"] == 0 for e in fanout["summary"])

    wire = results["wire"]["rows"]
    assert [r["turn"] for r in wire] == results["sizes"]["wire_turns"]
    # A full reply carries the whole conversation; a delta only the new pair.
    assert wire[-1]["full_bytes"] > wire[0]["full_bytes"]
    assert wire[-1]["delta_bytes"] < wire[-1]["full_bytes"]

    turns = results["turn_cost"]
    assert set(turns["servers"]) == {"tether-sync", "tether-async"}
    for modes in turns["servers"].values():
        assert set(modes) == {"deltas", "no_deltas"}
        for row in modes.values():
            assert row["round_trip_ratio"] > 0 and row["server_cpu_ratio"] > 0

    global_rows = {(e["store"], e["scenario"]): e for e in results["global_state"]["summary"]}
    assert set(global_rows) == {(s, n) for s in ("memory", "redis") for n in ("chat", "score")}
    for entry in global_rows.values():
        assert entry["throughput"] > 0 and entry["errors"] == 0
        assert entry["generator_cpu_percent"] > 0
    for store in ("memory", "redis"):
        score = global_rows[(store, "score")]
        assert score["score_per_chat"] is None or score["score_per_chat"] > 0

    cold = results["cold_start"]
    assert cold["import_tether_ms"] > 0 and cold["demo_healthz_ms"] > 0
    assert results["versions"]["tether"]
    # The summary printed is the table that `make bench` puts in bench/README.md.
    assert "| generator | client | submits/s |" in proc.stdout
    assert "| C | server | submits/s |" in proc.stdout
    assert "| submits/s | server | carried/s | p50 ms | p99 ms |" in proc.stdout
    assert "Idle memory per session" in proc.stdout
    assert "| server | subscribers | first ms | median ms | last ms |" in proc.stdout
    assert "| turn | full bytes | delta bytes | delta ÷ full |" in proc.stdout
    assert "Turn cost (`bench/turn_cost.py`)" in proc.stdout
    assert "| store | scenario | submits/s | p99 ms | generator CPU | score ÷ chat |" in proc.stdout


def test_only_runs_the_sections_named(tmp_path):
    cmd = [sys.executable, str(BENCH / "run.py"), "--quick", "--only", "wire"]
    proc = subprocess.run(
        [*cmd, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    [path] = tmp_path.glob("*-quick-only-wire.json")
    results = orjson.loads(path.read_bytes())
    assert results["sections"] == ["wire"]
    assert "wire" in results and "throughput" not in results and "fanout" not in results
    assert "| turn | full bytes |" in proc.stdout and "| C | server |" not in proc.stdout


def _row(server, throughput, cpu, server_cpu_us=50.0):
    return {
        "server": server, "clients": 100, "throughput": throughput, "p50_ms": 1.0,
        "p99_ms": 2.0, "errors": 0, "error_codes": {}, "generator_cpu_percent": cpu,
        "generator_saturated": cpu > 90, "server_cpu_us": server_cpu_us,
    }  # fmt: skip


def test_a_row_whose_generator_was_saturated_gets_no_ratio(run_py):
    kinds = ["baseline-inline", "baseline-executor", "tether-sync"]
    rows = [
        # saturated: a floor, not the server's ceiling
        _row("baseline-inline", 20000, 95.0, server_cpu_us=30.0),
        _row("baseline-executor", 14000, 70.0, server_cpu_us=60.0),
        _row("tether-sync", 10000, 60.0, server_cpu_us=90.0),
    ]
    summary = {e["server"]: e for e in run_py.summarize(rows, kinds, [100])}
    assert summary["baseline-inline"]["generator_saturated"]
    assert summary["baseline-inline"]["generator_cpu_percent"] == 95.0
    # Nothing is divided by the saturated baseline, and it is divided by nothing.
    assert all(e["vs_baseline-inline"] is None for e in summary.values())
    assert summary["baseline-inline"]["vs_baseline-executor"] is None
    assert summary["tether-sync"]["vs_baseline-executor"] == round(10000 / 14000, 3)
    table = "\n".join(
        run_py._throughput_md(
            {"sizes": {"turns": 20, "seconds": 5, "rounds": 1, "concurrency": [100]},
             "throughput": {"rows": [dict(r, round=0) for r in rows]}}
        )
    )  # fmt: skip
    [inline] = [line for line in table.splitlines() if "| baseline-inline" in line]
    assert "(generator saturated)" in inline and "95%" in inline
    # Capacity comes from the servers' CPU per submit: it stands with a saturated generator.
    assert inline.endswith("| generator saturated | generator saturated | 30.0 | 1.0 | 2.0 |")
    [sync] = [line for line in table.splitlines() if "| tether-sync" in line]
    assert sync.endswith(
        f"| 60% | generator saturated | {round(10000 / 14000, 3)} | 90.0 | 0.333 | 0.667 |"
    )
    assert summary["tether-sync"]["capacity_vs_baseline-inline"] == 0.333


def test_the_submit_path_bench_compares_two_trees_by_cpu_per_submit():
    root = BENCH.parent
    args = [
        sys.executable, str(BENCH / "submit_path.py"), "--base", str(root),
        "--rounds", "1", "--users", "5", "--turns", "3", "--submits", "200",
        "--warmup", "20", "--cpu", "-1",
    ]  # fmt: skip
    proc = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "new ÷ base: median" in proc.stdout
    rounds = [line for line in proc.stdout.splitlines() if line.startswith("round 1")]
    assert len(rounds) == 2
    assert all(float(line.split(":")[1].split()[0]) > 0 for line in rounds)
