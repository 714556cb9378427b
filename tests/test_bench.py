"""The benchmark at tiny sizes, so that `make bench` cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

BENCH = Path(__file__).resolve().parents[1] / "bench"


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
        assert entry["vs_baseline-inline"] > 0

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

    cold = results["cold_start"]
    assert cold["import_tether_ms"] > 0 and cold["demo_healthz_ms"] > 0
    assert results["versions"]["tether"]
    # The summary printed is the table that `make bench` puts in bench/README.md.
    assert "| C | server | submits/s |" in proc.stdout
    assert "| submits/s | server | carried/s | p50 ms | p99 ms |" in proc.stdout
    assert "Idle memory per session" in proc.stdout
    assert "| server | subscribers | first ms | median ms | last ms |" in proc.stdout
    assert "| turn | full bytes | delta bytes | delta ÷ full |" in proc.stdout


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
