"""Training curves as TensorBoard runs: what `scalars_of` makes of a metrics row, and the
real TensorBoard server (`make tensorboard`'s command) serving a run written here."""

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from trainer.tensorboard import ScalarWriter, model_run, run_directory, scalars_of


def test_a_metrics_row_becomes_tags_with_evaluations_apart():
    row = {"update": 10, "loss": 1.5, "grad_norm": float("nan"), "ok": True,
           "task_loss": {"lbf/8x8-2p-2f": 0.5, "lbf/10x10-3p-3f": None},
           "eval_normalised_return": 0.7, "eval_task_normalised_return": {"lbf/8x8-2p-2f": 0.9}}
    assert scalars_of(row) == {
        "update": 10.0, "loss": 1.5, "task_loss/lbf/8x8-2p-2f": 0.5,
        "eval/normalised_return": 0.7, "eval/task_normalised_return/lbf/8x8-2p-2f": 0.9}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def test_the_tensorboard_server_shows_a_model_s_run_by_its_readable_name(tmp_path: Path):
    name = model_run("lbf-bc-0123456789ab", "bc", 3, 0)
    assert name == "bc · 3 tasks · seed 0 · lbf-bc-0123456789ab"
    writer = ScalarWriter(run_directory(tmp_path, name))
    for step, loss in ((1, 2.0), (2, 1.5), (3, 1.25)):
        writer.add(step, {"loss": loss})
    writer.close()
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("tensorboard")), "--logdir",
         str(tmp_path / "tensorboard"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 60
        while True:
            try:
                runs = _get(f"{base}/data/runs")
                if runs:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("tensorboard did not serve the run within 60 s")
            time.sleep(0.5)
        assert runs == [name]
        query = urllib.parse.urlencode({"run": name, "tag": "loss"})
        points = _get(f"{base}/data/plugin/scalars/scalars?{query}")
        assert [(step, value) for _, step, value in points] == [(1, 2.0), (2, 1.5), (3, 1.25)]
    finally:
        server.terminate()
        server.wait(timeout=30)
