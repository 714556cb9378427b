"""Every Python block of README.md runs as written against ``tether demo``.

The demo is started as a real subprocess on a free port; each ```python block runs
as its own script with the README's URL (``ws://127.0.0.1:8000/ws``) replaced by the
demo's; a block that defines an ``app`` must leave a ``tether.App`` with functions.
Blocks that are shell or configuration (```sh and the like) are not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.test_cli import Proc

README = Path(__file__).resolve().parent.parent / "README.md"
README_URL = "ws://127.0.0.1:8000/ws"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[tuple[int, str]]:
    """(line, code) of each fenced block of ``language`` in the README."""
    text = README.read_text()
    return [
        (text.count("\n", 0, m.start()) + 1, m.group(2))
        for m in FENCE.finditer(text)
        if m.group(1) == language
    ]


PYTHON = blocks("python")


def test_the_readme_has_python_blocks_and_only_known_other_kinds():
    assert len(PYTHON) >= 6
    kinds = {m.group(1) for m in FENCE.finditer(README.read_text())}
    assert kinds <= {"python", "sh"}, kinds


@pytest.fixture(scope="module")
def demo() -> Iterator[str]:
    port = free_port()
    proc = Proc(["demo", "--port", str(port)])
    try:
        proc.wait_for_url()
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        assert proc.interrupt() == 0


@pytest.mark.parametrize(("line", "code"), PYTHON, ids=[f"README.md:{n}" for n, _ in PYTHON])
def test_a_readme_python_block_runs_as_written_against_the_demo(demo, tmp_path, line, code):
    script = tmp_path / "block.py"
    code = code.replace(README_URL, demo)
    if re.search(r"^app = tether\.App\(", code, re.MULTILINE):
        # An app's definition: it runs, and what it registered is a servable App.
        code += "\nassert isinstance(app, tether.App) and app.functions, app\n"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        timeout=120,
    )
    assert result.returncode == 0, f"README.md:{line} failed:\n{result.stdout}{result.stderr}"
    assert "Traceback" not in result.stderr
