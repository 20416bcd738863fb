"""Multi-process data-parallel offline training: two processes joined by `jax.distributed`
(CPU collectives over 127.0.0.1), each loading its own half of every global batch, train the
same model as one process with the whole batch; the CLI's `--processes 2` starts them, and
bad multi-process flags are refused in one line."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lake_schema.storage import Lake
from lake_schema.testing import fill_lake
from trainer.data import DataSelection
from trainer.offline import OfflineConfig, config_id, train
from trainer.offline import checkpoint as ckpt

ROOT = Path(__file__).resolve().parents[2]
TASKS = ("lbf/8x8-2p-2f", "lbf/10x10-3p-3f")
# test_offline_train.py's tiny model; oryx exercises every loss term and the target network.
KNOBS = dict(algorithm="oryx", embed_dim=16, num_heads=2, batch_size=8, seq_len=5,
             pad_agents=4, log_every=1, checkpoint_every=2, num_updates=4)


def _cli(*args: str, cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", "trainer.offline", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _train_args(lake: Lake, models: Path) -> list[str]:
    return ["train", "--lake", str(lake.root), "--env", "lbf", "--tasks", *TASKS,
            "--algorithm", KNOBS["algorithm"], "--models", str(models), "--set",
            *(f"{k}={v}" for k, v in KNOBS.items() if k != "algorithm")]


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / ckpt.METRICS).read_text().splitlines()]


@pytest.mark.slow  # about 100 s on 2 loaded CPU cores: three JAX processes compile and train
@pytest.mark.cluster
def test_two_processes_train_like_one_with_the_same_global_batch(tmp_path, monkeypatch):
    lake = Lake(tmp_path / "lake")
    fill_lake(lake, TASKS, checkpoints=2, episodes=4, lengths=(8, 30), seed=5)
    monkeypatch.setenv("SABLE_LAKE_CACHE", str(tmp_path / "cache"))
    selection = DataSelection(env="lbf", tasks=TASKS)
    config = OfflineConfig(**{k: v for k, v in KNOBS.items()})
    one = train(lake, selection, config, tmp_path / "one" / config_id(config, selection))

    proc = _cli(*_train_args(lake, tmp_path / "two"), "--processes", "2")
    assert proc.returncode == 0, "\n".join(  # (less XLA's native stack frames)
        x for x in proc.stderr.splitlines() if not x.lstrip().startswith("@"))[-4000:]
    run_dir = tmp_path / "two" / one.config_id
    assert proc.stdout.splitlines().count(str(run_dir)) == 1  # printed by process 0 only
    # process 0 reports the run's progress, once: the last update's line with its ETA
    assert len(re.findall(r"4/4 updates \(100.0%\).*ETA 0s", proc.stderr)) == 1, proc.stderr
    two = _metrics(run_dir)
    assert [r["update"] for r in two] == [1, 2, 3, 4]
    for key in ("loss", "policy_loss", "critic_loss", "grad_norm"):
        np.testing.assert_allclose([r[key] for r in two], [r[key] for r in one.history],
                                   rtol=1e-4, atol=1e-6, err_msg=key)
    # one model: both runs end at the same parameters, saved once by orbax
    from trainer.offline.checkpoint import load_params

    info = ckpt.read_model_info(run_dir)
    a, _ = load_params(run_dir, info)
    b, _ = load_params(one.run_dir, ckpt.read_model_info(one.run_dir))
    import jax

    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("flags, message", [
    (["--coordinator", "127.0.0.1:1234"], "go together"),
    (["--coordinator", "nohost", "--num-processes", "2", "--process-id", "0"], "not HOST:PORT"),
    (["--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "2"],
     "must be in 0..1"),
    (["--processes", "2", "--coordinator", "127.0.0.1:1234", "--num-processes", "2",
      "--process-id", "0"], "without --coordinator"),
    (["--processes", "0"], "must be >= 1"),
])
def test_bad_multiprocess_flags_are_refused_in_one_line(tmp_path, flags, message):
    proc = _cli("train", "--lake", str(tmp_path / "lake"), "--tasks", *TASKS, *flags,
                timeout=120)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "lake").exists()
