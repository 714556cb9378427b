"""bench/store_ops.py at tiny sizes, so that it cannot rot (no timing is checked)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.redis_server import redis_server_binary

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(redis_server_binary() is None, reason="redis-server is not on PATH")
def test_store_ops_bench_measures_every_operation_on_every_backend() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "server"))
    argv = [sys.executable, str(ROOT / "bench" / "store_ops.py"), "--sizes", "1000,100000"]
    argv += ["--rounds", "1", "--calls", "3", "--redis-max", "1000", "--base", str(ROOT)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "memory, base" in out and "\nmemory:" in out and "\nredis:" in out
    assert out.count("growth 1k->100k") == 2  # memory twice; Redis stopped at 1k
    assert out.count("lb_add") >= 3 and out.count("lb_score") >= 3
