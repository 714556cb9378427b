"""``tether loadtest`` on the command line, and what it costs the other commands."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import free_port
from tests.loadtest.conftest import loadtest
from tether.demo import create_app
from tether.loadtest import main


def test_the_command_line_runs_a_loadtest_and_prints_a_summary(serve_app, tmp_path):
    srv = serve_app(create_app())
    proc = subprocess.run(
        [sys.executable, "-m", "tether", "loadtest", srv.url, "--users", "2", "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "submits/s" in proc.stderr  # the progress line
    assert "p99 ms" in proc.stdout
    # The auto scenario calls every function of the demo (say before join_room is its
    # fn_error): the summary counts results per function.
    assert "results by function: " in proc.stdout and "track_score" in proc.stdout
    assert "errors: " in proc.stdout


def test_an_unknown_scenario_is_refused_with_a_clear_message(capsys):
    assert main(["ws://127.0.0.1:9/ws", "--scenario", "nope"]) == 2
    assert "use one of auto, chat, score, rooms" in capsys.readouterr().err


def test_plot_without_matplotlib_is_refused_before_the_run(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["ws://127.0.0.1:9/ws", "--plot", str(tmp_path / "x.png")]) == 2
    assert "--plot needs matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_plot_draws_throughput_and_latency_when_matplotlib_is_there(serve_app, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    srv = serve_app(create_app())
    png = tmp_path / "run.png"
    status, _ = loadtest(
        srv.url, "--users", "2", "--duration", "2.5", "--plot", str(png), tmp_path=tmp_path
    )
    assert status == 0
    out = capsys.readouterr().out
    assert f"plot written to {png.resolve()}" in out
    assert f"results written to {(tmp_path / 'result.json').resolve()}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_server_that_refuses_connections_gives_a_failing_status(tmp_path):
    status, result = loadtest(
        f"ws://127.0.0.1:{free_port()}/ws", "--users", "2", "--duration", "0.5", tmp_path=tmp_path
    )
    assert status == 1
    assert result["errors"]["connect_failed"] >= 2
    assert result["submits_ok"] == 0


def test_serve_and_demo_do_not_import_the_load_tester():
    # `tether serve` and `tether demo` import tether.cli; the load tester costs them
    # a quarter of a second at startup if that pulls it in.
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import tether.cli"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    modules = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()]
    assert "tether.cli" in modules
    assert not [m for m in modules if m.startswith("tether.loadtest")]


def test_tether_help_lists_the_loadtest_command():
    proc = subprocess.run(
        [sys.executable, "-m", "tether", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "loadtest" in proc.stdout
    assert "latency and throughput" in proc.stdout


def test_tether_loadtest_help_shows_all_of_its_options():
    proc = subprocess.run(
        [sys.executable, "-m", "tether", "loadtest", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: tether loadtest ")
    for option in ("--users", "--duration", "--scenario", "--rate", "--procs", "--check"):
        assert option in proc.stdout


def test_tether_loadtest_without_a_url_is_a_usage_error_of_its_own():
    proc = subprocess.run(
        [sys.executable, "-m", "tether", "loadtest", "--users", "3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "tether loadtest: error: the following arguments are required: url" in proc.stderr
