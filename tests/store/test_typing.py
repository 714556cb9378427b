"""User code sees every store operation with its declared signature (mypy --strict)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tether

pytest.importorskip("mypy")

USER_CODE = textwrap.dedent(
    """
    from tether import App

    app = App("typed")


    async def scores() -> list[tuple[str, float]]:
        n: int | float = await app.store.incr("hits")
        await app.store.update("p", lambda m: m, {}, topic="t", event=lambda m: m)
        return await app.store.lb_add("b", "ann", n, keep=10, top=3, topic="scores")


    def blocking() -> int | None:
        app.store.sync.list_append("log", {"n": 1}, maxlen=5)
        return app.store.sync.lb_rank("b", "ann")


    def misuse() -> None:
        app.store.sync.incr(1)
        app.store.lb_add("b", "ann", 3, tpo=3)
        rank: str = app.store.sync.lb_rank("b", "ann")
        app.store.incr_by("k")
    """
)


def test_store_operations_type_check_in_user_code_and_misuse_is_reported(tmp_path: Path) -> None:
    (tmp_path / "user.py").write_text(USER_CODE)
    server_dir = Path(tether.__file__).parent.parent
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", os.devnull, "user.py"],
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": str(server_dir)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    lines = USER_CODE.splitlines()
    flagged = sorted({lines[int(e.split(":")[1]) - 1].strip() for e in errors})
    assert flagged == sorted(
        [
            "app.store.sync.incr(1)",
            'app.store.lb_add("b", "ann", 3, tpo=3)',
            'rank: str = app.store.sync.lb_rank("b", "ann")',
            'app.store.incr_by("k")',
        ]
    ), result.stdout
