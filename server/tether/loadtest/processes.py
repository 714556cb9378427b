"""Running a load test: in this process, or in ``--procs`` generator processes that start
together and send their ticks and statistics back over a queue."""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import signal
import sys
import time
from dataclasses import replace
from typing import Any

from ..server.tuning import loop_factory
from .config import Config
from .driver import LoadTest, Report
from .histogram import Histogram
from .progress import Progress
from .report import Result
from .scenarios import SCENARIOS
from .stacks import CUSTOM_STACK, resolve_client
from .stats import Stats, Tick

__all__ = ["execute", "run_process"]


def run_process(config: Config, proc: int, start_at: float, report: Report) -> Stats:
    """Run this process's share of the users to the end; return what they measured."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(LoadTest(config, proc, start_at, report).run())


def _worker_main(config: Config, proc: int, start_at: float, out: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # until the loop installs its own handler

    def report(kind: str, payload: Any) -> None:
        if kind == "tick":
            payload = (
                payload.ok,
                payload.errors,
                payload.violations,
                payload.latency.to_dict(),
                payload.connected,
            )
        out.put((proc, kind, payload))

    try:
        stats = run_process(config, proc, start_at, report)
    except BaseException as exc:
        out.put((proc, "failed", f"{type(exc).__name__}: {exc}"))
        raise
    out.put((proc, "done", stats.to_dict()))


def execute(config: Config, stream: Any = None) -> Result:
    """Run a load test as configured; return the merged result. ``ValueError`` when
    ``config.client`` cannot run here (``stacks.resolve_client``)."""
    stack = resolve_client(config.client) if config.scenario in SCENARIOS else CUSTOM_STACK
    config = replace(config, client=stack)
    progress = Progress(config, stream if stream is not None else sys.stderr)
    if config.procs == 1:

        def report(kind: str, payload: Any) -> None:
            progress.add(0, payload)
            progress.flush()

        stats = run_process(config, 0, time.time(), report)
    else:
        stats = _execute_processes(config, progress)
    progress.close()
    return Result(config, stats, progress.timeline)


def _execute_processes(config: Config, progress: Progress) -> Stats:
    ctx = multiprocessing.get_context("spawn")
    out: Any = ctx.Queue()
    # Give every process time to start, so that they begin together.
    start_at = time.time() + 1.0 + 0.25 * config.procs
    procs = [
        ctx.Process(
            target=_worker_main, args=(config, k, start_at, out), name=f"tether-loadtest-{k}"
        )
        for k in range(config.procs)
    ]
    for p in procs:
        p.start()
    merged = Stats()
    finished: set[int] = set()
    failures: list[str] = []
    give_up = (
        time.monotonic()
        + (start_at - time.time())
        + config.duration
        + config.drain_timeout
        + config.connect_timeout
        + 30
    )
    try:
        while len(finished) < config.procs and time.monotonic() < give_up:
            try:
                proc, kind, payload = out.get(timeout=0.2)
            except queue.Empty:
                for k, p in enumerate(procs):
                    if k not in finished and not p.is_alive() and p.exitcode not in (0, None):
                        finished.add(k)
                        failures.append(f"generator process {k} died (exit {p.exitcode})")
                progress.flush()
                continue
            except KeyboardInterrupt:
                continue  # the workers got the signal too and are stopping early
            if kind == "tick":
                ok, errors, violations, hist, connected = payload
                progress.add(
                    proc, Tick(ok, errors, violations, Histogram.from_dict(hist), connected)
                )
            elif kind == "done":
                merged.merge(Stats.from_dict(payload))
                finished.add(proc)
            elif kind == "failed":
                failures.append(f"generator process {proc} failed: {payload}")
                finished.add(proc)
            progress.flush()
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
    if len(finished) < config.procs:
        failures.append("generator processes did not finish in time")
    for text in failures:
        merged.errors["generator_failed"] += 1
        merged.violation(text)
    return merged
