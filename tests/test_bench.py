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

    memory = results["memory"]
    assert set(memory["servers"]) == {"baseline-inline", "tether-sync"}
    for data in memory["servers"].values():
        assert [lv["sessions"] for lv in data["levels"]] == memory["sessions"]

    cold = results["cold_start"]
    assert cold["import_tether_ms"] > 0 and cold["demo_healthz_ms"] > 0
    assert results["versions"]["tether"]
    # The summary printed is the table that `make bench` puts in bench/README.md.
    assert "| C | server | submits/s |" in proc.stdout
    assert "Idle memory per session" in proc.stdout
