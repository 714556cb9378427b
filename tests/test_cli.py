"""The ``tether`` command, run as a real subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import tether
from tests.conftest import free_port


class Proc:
    def __init__(self, args: list[str], cwd: Path | None = None) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.p = subprocess.Popen(
            [sys.executable, "-m", "tether", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
            env=env,
        )
        self.first_line = ""

    def wait_for_url(self, timeout: float = 20) -> str:
        assert self.p.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.p.stdout.readline()
            if not line:
                break
            if "serving on" in line:
                self.first_line = line
                return line.split("serving on", 1)[1].split()[0]
        self.p.kill()
        raise AssertionError(f"no URL printed; output: {self.p.communicate()[0]}")

    def interrupt(self) -> int:
        self.p.send_signal(signal.SIGINT)
        try:
            return self.p.wait(timeout=30)
        finally:
            if self.p.poll() is None:
                self.p.kill()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in started:
        if proc.p.poll() is None:
            proc.p.kill()
            proc.p.wait(10)


def test_tether_demo_prints_its_url_serves_both_examples_and_stops_cleanly_on_ctrl_c(procs):
    port = free_port()
    proc = Proc(["demo", "--port", str(port)])
    procs.append(proc)
    url = proc.wait_for_url()
    assert url == f"http://127.0.0.1:{port}/"
    with urllib.request.urlopen(url + "healthz", timeout=10) as resp:
        assert resp.status == 200
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert b"<html" in resp.read().lower()

    with tether.connect_sync(f"ws://127.0.0.1:{port}/ws") as c:
        assert c.submit("chat", "hello") == [
            ["hello", "Hello! I remember everything you say in this session."]
        ]
        assert len(c.submit("chat", "again")) == 2
        c.submit("track_score", 5)
        assert c.submit("track_score", 7) == [7, 5]
    with tether.connect_sync(f"ws://127.0.0.1:{port}/ws") as other:
        assert other.submit("track_score", 6) == [7, 6, 5]
        assert len(other.submit("chat", "fresh")) == 1

    assert proc.interrupt() == 0


def test_tether_serve_loads_module_colon_app_from_the_working_directory(tmp_path, procs):
    (tmp_path / "myapp.py").write_text(
        textwrap.dedent(
            """
            import tether

            shop = tether.App("shop")

            @shop.function(inputs="text", outputs="text")
            def shout(text):
                return text.upper()
            """
        )
    )
    port = free_port()
    proc = Proc(["serve", "myapp:shop", "--port", str(port)], cwd=tmp_path)
    procs.append(proc)
    proc.wait_for_url()
    with tether.connect_sync(f"ws://127.0.0.1:{port}/ws") as c:
        assert c.submit("shout", "hey") == "HEY"
    assert proc.interrupt() == 0


def test_tether_serve_explains_an_app_that_cannot_be_imported(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tether", "serve", "no_such_module:app"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
    )
    assert result.returncode != 0
    assert "cannot import 'no_such_module'" in result.stderr


def test_a_bad_setting_on_the_command_line_is_a_usage_error():
    result = subprocess.run(
        [sys.executable, "-m", "tether", "demo", "--max-message-size", "lots"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "max_message_size" in result.stderr or "max-message-size" in result.stderr


def test_a_port_in_use_is_reported_plainly(procs):
    port = free_port()
    first = Proc(["demo", "--port", str(port)])
    procs.append(first)
    first.wait_for_url()
    second = subprocess.run(
        [sys.executable, "-m", "tether", "demo", "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 1
    assert f"cannot serve on 127.0.0.1:{port}" in second.stderr
    assert first.interrupt() == 0
