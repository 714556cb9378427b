"""The server's own cost per submit, without sockets: is a change to the submit path
cheaper or dearer? Robust to a busy machine, unlike submits/s.

    python bench/submit_path.py [--base OTHER_TREE] [--rounds 7] [--fn sync|async]

A real ``Server`` (the demo's app for ``sync``, bench/servers.py's ``async_app``
for ``async``) is started in-process, without a listener; C sessions are made on
its services as the WebSocket handler makes them (``Session`` with a send callable,
held for a resume) and fed encoded submit frames in a closed loop: each result
frame that arrives schedules the session's next submit, and after ``--turns``
submits a session closes and a new one takes its place. What is left out is the
socket and aiohttp: the frame decoding, flood control, ordering, gates, executor
(journal, budget, thread hand-off), encoding, result log and metrics all run.

The figure is CPU time (the process, all its threads) per submit over a fixed
number of submits, after a warm-up. With ``--callgrind`` it is instead the
instructions executed per submit, counted by valgrind (the difference between a
run of ``--submits`` and one of twice as many, so start-up cancels out):
repeatable whatever else the machine is doing, though valgrind runs one thread
at a time, so the sync function's thread hand-offs batch differently than on a
real core. Each round runs every tree in its own
process, in alternating order; the report gives the median and the minimum over
rounds (the minimum is the least disturbed by other work on the machine) and,
with ``--base``, this tree's figures over the base's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


async def _measure(fn: str, users: int, turns: int, submits: int, warmup: int) -> float:
    from tether import Settings
    from tether.core.session import Session
    from tether.protocol import encode_submit
    from tether.server.server import Server
    from tether.server.tuning import freeze_startup_objects, tune_gc

    if fn == "sync":
        from tether.demo import create_app

        app = create_app()
    else:
        sys.path.insert(0, str(HERE))
        from servers import async_app as app
    settings = Settings(submit_rate=1e6, submit_burst=1e6)
    server = Server(app, settings)
    tune_gc(settings.gc_young_threshold)  # as serve() does
    await server._on_startup(server.web)
    if settings.gc_freeze:
        freeze_startup_objects()
    loop = asyncio.get_running_loop()
    name = "chat"
    done = asyncio.Event()
    closing: set[asyncio.Task[None]] = set()
    counted = 0
    start_cpu = 0.0
    total = warmup + submits

    class User:
        def __init__(self) -> None:
            self.turn = 0
            self.session = self.new_session()

        def new_session(self) -> Session:
            # The user is the session's peer (send, request_close); older trees take a
            # send callable, which it also is.
            session = Session(server.services, self, client="127.0.0.1")
            if settings.resume_grace > 0:
                server.parked.hold(session)
            return session

        def submit(self) -> None:
            self.turn += 1
            self.session.receive(encode_submit(str(self.turn), name, [f"hi {self.turn}"]))

        def request_close(self, code: int, reason: str) -> None:
            raise RuntimeError(f"the server closed a session: {code} {reason}")

        def __call__(self, frame: bytes) -> None:
            self.on_frame(frame)

        def send(self, frame: bytes) -> None:
            self.on_frame(frame)

        def on_frame(self, frame: bytes) -> None:
            nonlocal counted, start_cpu
            if b'"result"' not in frame[:24] and b'"error"' not in frame[:24]:
                return
            counted += 1
            if counted == warmup:
                start_cpu = time.process_time()
            if counted >= total:
                done.set()
            if done.is_set():
                return
            if self.turn >= turns:
                # A client that closes with 1000 ends its session (websocket.py's _end).
                old = self.session
                server.parked.release(old)
                closing.add(task := loop.create_task(old.close()))
                task.add_done_callback(closing.discard)
                self.turn = 0
                self.session = self.new_session()
            loop.call_soon(self.submit)

    people = [User() for _ in range(users)]
    for user in people:
        user.submit()
    await done.wait()
    spent = time.process_time() - start_cpu
    for user in people:  # (the submits still in flight end with their sessions)
        server.parked.release(user.session)
        await user.session.close()
    await asyncio.gather(*closing)
    server.runner.close()
    return spent * 1e6 / submits


def _child(args: argparse.Namespace) -> None:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        us = runner.run(_measure(args.fn, args.users, args.turns, args.submits, args.warmup))
    print(f"{us:.3f}")


def _instructions(tree: Path, args: argparse.Namespace, submits: int) -> int:
    env = {**os.environ, "PYTHONPATH": str(tree / "server")}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out",
            sys.executable, str(HERE / "submit_path.py"), "--child", "--fn", args.fn,
            "--users", str(args.users), "--turns", str(args.turns),
            "--submits", str(submits), "--warmup", str(args.warmup),
        ]  # fmt: skip
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
        if out.returncode != 0:
            raise RuntimeError(f"{tree}: {out.stderr.strip()[-2000:]}")
        for line in Path(f"{tmp}/out").read_text().splitlines():
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError("callgrind wrote no totals")


def _run_tree(tree: Path, args: argparse.Namespace) -> float:
    if args.callgrind:
        small = _instructions(tree, args, args.submits)
        large = _instructions(tree, args, 2 * args.submits)
        return (large - small) / args.submits
    env = {**os.environ, "PYTHONPATH": str(tree / "server")}
    cmd = [
        sys.executable, str(HERE / "submit_path.py"), "--child", "--fn", args.fn,
        "--users", str(args.users), "--turns", str(args.turns),
        "--submits", str(args.submits), "--warmup", str(args.warmup),
    ]  # fmt: skip
    if args.cpu is not None:
        cmd = ["taskset", "-c", str(args.cpu), *cmd]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{tree}: {out.stderr.strip()[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, help="another checkout to compare with")
    parser.add_argument("--new", type=Path, default=HERE.parent, help="default: this checkout")
    parser.add_argument("--fn", choices=["sync", "async"], default="sync")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--submits", type=int, default=40000)
    parser.add_argument("--warmup", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cpu", type=int, default=0, help="core to pin to (-1: none)")
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="count instructions per submit under valgrind (repeatable; slow: use "
        "--submits 2000 --rounds 1)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cpu is not None and args.cpu < 0:
        args.cpu = None
    if args.child:
        _child(args)
        return 0
    trees = {"new": args.new.resolve()}
    if args.base is not None:
        trees = {"base": args.base.resolve(), **trees}
    rounds: dict[str, list[float]] = {name: [] for name in trees}
    unit = "instructions" if args.callgrind else "µs CPU"
    for r in range(args.rounds):
        order = list(trees) if r % 2 == 0 else list(reversed(trees))
        for name in order:
            us = _run_tree(trees[name], args)
            rounds[name].append(us)
            print(f"round {r + 1} {name:4}: {us:7.2f} {unit} per submit", flush=True)
    summary: dict[str, Any] = {
        name: (statistics.median(values), min(values)) for name, values in rounds.items()
    }
    print(
        f"{args.fn} chat, C={args.users}, {args.turns} turns per session, "
        f"{args.submits} submits per round, {args.rounds} alternating rounds:"
    )
    for name, (med, low) in summary.items():
        print(f"  {name:4}: median {med:.2f}, min {low:.2f} {unit}  ({trees[name]})")
    if "base" in summary:
        (bm, bl), (nm, nl) = summary["base"], summary["new"]
        print(f"  new ÷ base: median {nm / bm:.3f}, min {nl / bl:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
