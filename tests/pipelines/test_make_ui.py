"""`make ui` as a newcomer runs it: the Dagster UI comes up on the project's instance and
code location, and its first screen (the terminal) carries no warning. Slow: `dagster dev`
takes a minute or more to serve on 2 cores."""

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_make_ui_serves_the_definitions_without_a_warning(tmp_path):
    home = tmp_path / "dagster"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    ui, reports = _free_port(), _free_port()
    env = {**os.environ, "SABLE_LAKE": str(tmp_path / "lake")}
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "ui", f"DAGSTER_HOME={home}", f"UI_PORT={ui}",
         f"REPORTS_PORT={reports}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ui}/server_info", timeout=5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"make ui did not serve: {proc.stdout.read()}")
                time.sleep(2)
        time.sleep(3)  # the code location's own log lines
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
    warnings = [line for line in out.splitlines()
                if "Warning" in line or "will not be used" in line]
    assert warnings == [], warnings
    assert not any((home / name).exists() for name in ("lake", "models", "checkpoints"))
