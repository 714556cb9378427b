"""The ``tether`` command, run as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
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


def _tether(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tether", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("declaration", "line", "words"),
    [
        (
            '@app.function(inputs=["textbox", "state"], outputs=["chatbot", "state"])\n'
            "def chat(message, history=[]):\n"
            "    return history, history\n",
            "myapp.py:5: chat: unknown component 'textbox'; expected one of text, number, "
            "checkbox, json, chatbot, state or a tether.State",
            None,
        ),
        (
            '@app.function(inputs=["text", "text"], outputs="text")\n'
            "def shout(text):\n"
            "    return text\n",
            "myapp.py:5: shout takes 1 positional parameter but has 2 inputs "
            "(one parameter per input, in order)",
            None,
        ),
        (
            '@app.function(inputs="text", outputs="text")\n'
            "def shout(text, volume):\n"
            "    return text\n",
            "myapp.py:5: shout: parameters ['volume'] have no input and no default",
            None,
        ),
        (
            '@app.function(inputs="text", outputs=["text", "state"])\n'
            "def shout(text):\n"
            "    return text\n",
            "myapp.py:5: shout: a 'state' output needs a matching 'state' input",
            None,
        ),
    ],
)
def test_a_mistake_in_the_app_file_is_one_line_naming_file_and_line(
    tmp_path, declaration, line, words
):
    (tmp_path / "myapp.py").write_text(
        'import tether\n\napp = tether.App("mine")\n\n' + declaration
    )
    result = _tether(["serve", "myapp:app"], tmp_path)
    assert result.returncode == 1
    assert result.stderr == line + "\n"
    assert "Traceback" not in result.stderr + result.stdout


COUNTER = 'import tether\n\napp = tether.App("counter")\nlimit = 3\n'


def test_a_missing_attribute_is_named_with_the_apps_the_module_has(tmp_path):
    (tmp_path / "counter.py").write_text(COUNTER)
    result = _tether(["serve", "counter:ap"], tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        "tether: module 'counter' has no attribute 'ap'; its tether.App: app "
        "(tether serve counter:app)\n"
    )
    (tmp_path / "plain.py").write_text("limit = 3\n")
    result = _tether(["serve", "plain:app"], tmp_path)
    assert result.stderr == "tether: module 'plain' has no attribute 'app'; it has no tether.App\n"


def test_an_attribute_that_is_not_an_app_says_what_it_is(tmp_path):
    (tmp_path / "counter.py").write_text(COUNTER)
    result = _tether(["serve", "counter:limit"], tmp_path)
    assert result.returncode == 1
    assert result.stderr == "tether: counter:limit is of type int, not a tether.App\n"


@pytest.mark.parametrize(
    ("spec", "hint"),
    [("counter.py:app", "tether serve counter:app"), ("counter.py", "tether serve counter:app")],
)
def test_a_file_name_for_the_module_hints_to_drop_dot_py(tmp_path, spec, hint):
    (tmp_path / "counter.py").write_text(COUNTER)
    result = _tether(["serve", spec], tmp_path)
    assert result.returncode == 1
    assert "without '.py'" in result.stderr
    assert result.stderr.rstrip().endswith(hint)
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stopping_prints_one_line_when_stopping_and_one_when_stopped(procs, sig):
    port = free_port()
    proc = Proc(["demo", "--port", str(port)])
    procs.append(proc)
    proc.wait_for_url()
    proc.p.send_signal(sig)
    out, _ = proc.p.communicate(timeout=60)
    assert proc.p.returncode == 0
    lines = out.splitlines()
    stopping = [line for line in lines if line.startswith("tether stopping")]
    stopped = [line for line in lines if line.startswith("tether stopped")]
    assert len(stopping) == 1 and len(stopped) == 1, out
    assert lines.index(stopping[0]) < lines.index(stopped[0])
    assert "0 session(s) open" in stopping[0]
    assert lines[-1] == stopped[0]


def _serve_demo_against_nothing(procs: list[Proc]) -> tuple[int, int, list[str]]:
    """Start the demo with a Redis store where nothing listens; return its port, the
    store's port and what it printed before "serving". The Redis client's refused
    connects churn local ports before the server binds, so a free port picked meanwhile
    may be taken: then it is tried again on new ports."""
    for _ in range(3):
        port, nothing = free_port(), free_port()
        proc = Proc(["demo", "--port", str(port), "--store", f"redis://127.0.0.1:{nothing}/0"])
        procs.append(proc)
        assert proc.p.stdout is not None
        before: list[str] = []
        for line in proc.p.stdout:
            if "serving on" in line:
                return port, nothing, before
            before.append(line)
        if "address already in use" not in "".join(before):
            break
    raise AssertionError("never served: " + "".join(before))


def test_an_unreachable_redis_is_said_at_once_and_readyz_reports_it(procs):
    pytest.importorskip("redis")
    port, nothing, before = _serve_demo_against_nothing(procs)
    proc = procs[-1]
    # Said before "serving", not after a wait: one warning naming the store and /readyz.
    warning = [line for line in before if "unreachable" in line]
    assert len(warning) == 1, before
    assert f"redis://127.0.0.1:{nothing}/0 is unreachable" in warning[0]
    assert "retrying" in warning[0] and "/readyz answers 503" in warning[0]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10)
    assert refused.value.code == 503
    body = json.loads(refused.value.read())
    assert body == {"status": "unavailable", "store": "unavailable", "topics": "reconnecting"}
    assert proc.interrupt() == 0
