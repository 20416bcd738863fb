"""A Dagster run of `online_sable` killed mid-way (SIGKILL: no clean-up code runs) leaves the
lake consistent; `dataset_status` and the asset checks say what is missing; materialising the
partition again resumes the run and completes it without duplicating rows."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from lake_schema.catalogue import get_task
from lake_schema.checks import missing_checkpoints
from lake_schema.reader import Selection, read_table
from lake_schema.verify import verify
from pipelines.assets.online import ASSET, recorded_run
from pipelines.definitions import defs

ROOT = Path(__file__).resolve().parents[2]
TASK = "lbf/8x8-2p-2f"
K, EPISODES = 4, 16
# The network/PPO settings of test_online_asset.py (one compilation per test session), and
# 16 updates between checkpoints: seconds of training in which to kill the run.
CONFIG = {
    "total_env_steps": K * 16 * 2048, "num_checkpoints": K, "episodes_per_checkpoint": EPISODES,
    "reference_episodes": 32, "num_envs": 32, "rollout_length": 64, "embed_dim": 32,
}
LAUNCH = """
import dagster as dg
from pipelines.definitions import defs
defs.resolve_job_def("build_datasets").execute_in_process(
    instance=dg.DagsterInstance.get(), partition_key={task!r},
    run_config={{"ops": {{"online_sable": {{"config": {config!r}}}}}}})
"""


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A persistent (SQLite) Dagster instance and lake shared by this process and the run's."""
    (tmp_path / "dagster").mkdir()
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster" / "dagster.yaml")
    env = {"DAGSTER_HOME": tmp_path / "dagster", "SABLE_LAKE": tmp_path / "lake",
           "SABLE_CHECKPOINTS": tmp_path / "checkpoints"}
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    return tmp_path


def _observed_checkpoints(instance: dg.DagsterInstance) -> int:
    records = instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(ASSET), asset_partitions=[TASK]), limit=10)
    return len(records.records)


def test_killed_run_is_reported_and_resumed(home):
    run = subprocess.Popen(
        [sys.executable, "-c", LAUNCH.format(task=TASK, config=CONFIG)], cwd=ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 300
    with dg.DagsterInstance.get() as instance:
        # Kill the run as soon as its first checkpoint is committed (observed): it is then
        # training towards checkpoint 2, so checkpoints 2 and 3 cannot be in the lake.
        while _observed_checkpoints(instance) == 0:
            if run.poll() is not None or time.time() > deadline:
                pytest.fail(f"the run ended early: {run.stderr.read().decode()[-3000:]}")
            time.sleep(0.1)
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)

        lake = defs.resources["lake"].lake()
        task = get_task(TASK)
        found = recorded_run(instance, TASK)
        assert found is not None and not found.finished and found.num_checkpoints == K
        missing, _ = missing_checkpoints(lake, task, found.run, K)
        assert {2, 3} <= set(missing) and 0 not in missing  # only whole checkpoints
        # Every file the log lists is whole and valid. A write the kill cut short may leave
        # files outside the log (named, for `vacuum`), and a kill between a checkpoint's two
        # commits leaves its steps without an episodes row (named; readers go through the
        # episodes index, and the resume rewrites that checkpoint); a kill between its index
        # and card commits leaves the checkpoint after the last observed one without its
        # card (named; the resume rewrites it too).
        unfinished = {f"checkpoint={c}/" for c in missing}
        cut = f"checkpoint={found.last_checkpoint + 1}"
        problems = [p for p in verify(lake).problems
                    if not p.leftover and not ("no episodes index row" in p.reason
                             and any(c in p.path for c in unfinished))
                    and not ("no dataset card" in p.reason and p.path.endswith(cut))]
        assert problems == []

        # The lake-wide status (the `check_datasets` job) names the task and what it lacks.
        status = defs.resolve_job_def("check_datasets").execute_in_process(instance=instance)
        assert status.success
        (check,) = status.get_asset_check_evaluations()
        assert not check.passed and TASK in check.metadata["incomplete"].value
        table = status.asset_materializations_for_node("dataset_status")[0].metadata
        assert "unfinished after checkpoint 0" in table["status"].value
        assert "missing" in table["status"].value  # the references row

        # Materialising again resumes from the last orbax checkpoint and completes the run;
        # the asset checks, run with it, pass.
        again = defs.resolve_job_def("build_datasets").execute_in_process(
            instance=instance, partition_key=TASK,
            run_config={"ops": {"online_sable": {"config": CONFIG}}})
        assert again.success
        meta = again.asset_materializations_for_node("online_sable")[0].metadata
        assert meta["resumed_from"].value in (0, 1)
        checks = again.get_asset_check_evaluations()
        assert len(checks) == 7 and all(c.passed for c in checks), [
            (c.check_name, c.metadata) for c in checks]
        eps = read_table(lake, "episodes", Selection(env="lbf", tasks=["8x8-2p-2f"]))
        assert eps.num_rows == K * EPISODES  # no checkpoint written twice
        assert [p for p in verify(lake).problems if not p.leftover] == []

        status = defs.resolve_job_def("check_datasets").execute_in_process(instance=instance)
        assert status.get_asset_check_evaluations()[0].passed
