"""The online Sable asset materialises through Dagster's API (temporary instance and lake) at
a tiny budget, its checks pass, materialising again reuses the completed run, and
with resume off replaces its rows."""

import json
import os

import dagster as dg
import pydantic
import pytest

from lake_schema.cards import dataset_cards
from lake_schema.catalogue import get_task
from lake_schema.checks import (
    checkpoint_rows,
    files_valid,
    reference_present,
    returns_within_bounds,
    task_problems,
)
from lake_schema.delta import delete_where
from lake_schema.reader import Selection, list_files, read_table
from lake_schema.verify import verify
from pipelines.assets.online import REPLAYED_PER_CHECKPOINT, online_checks, online_sable
from pipelines.resources import default_resources
from tests.helpers.plots import assert_published

TASK = "lbf/8x8-2p-2f"
# The network/PPO settings of tests/trainer/test_online_training.py, so a session running both
# compiles the update once.
TINY = {
    "total_env_steps": 4 * 2048, "num_checkpoints": 2, "episodes_per_checkpoint": 16,
    "reference_episodes": 64, "num_envs": 32, "rollout_length": 64, "embed_dim": 32,
}


def _digits(x: float) -> int:
    """Significant digits of `x` as printed."""
    return len(f"{x!r}".split("e")[0].replace("-", "").replace(".", "").strip("0"))


def _materialise(lake, tmp_path, instance, **config):
    return dg.materialize(
        [online_sable, *online_checks],
        partition_key=TASK,
        resources=default_resources(lake.root),
        run_config={"ops": {"online_sable": {"config": {
            **TINY, "checkpoint_dir": str(tmp_path / "ck"), **config}}}},
        instance=instance,
    )


def test_online_asset_materialises_with_metadata_and_passing_checks(lake, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    result = _materialise(lake, tmp_path, instance)
    assert result.success
    first = result.asset_materializations_for_node("online_sable")[0].metadata
    assert not first["reused"].value and first["steps_per_s"].value > 0
    # floats are shown to 4 significant digits, not 16
    assert all(_digits(v.value) <= 4 for v in first.values() if isinstance(v.value, float))
    # the second materialisation of the same config reuses the completed run, showing what
    # its training measured; one with resume off replaces the run's rows, never duplicating
    result = _materialise(lake, tmp_path, instance)
    again = result.asset_materializations_for_node("online_sable")[0].metadata
    assert again["reused"].value
    for key in ("steps_per_s", "recording_fraction", "final_return", "learning_curve"):
        assert again[key] == first[key], key  # the same figure, training episodes included
    result = _materialise(lake, tmp_path, instance, resume=False)
    assert result.success
    eps = read_table(lake, "episodes", Selection(env="lbf"))
    assert eps.num_rows == 2 * 16 and set(eps["run"].to_pylist()) == {"sable-seed0"}
    assert read_table(lake, "references", Selection(env="lbf")).num_rows == 1

    meta = result.asset_materializations_for_node("online_sable")[0].metadata
    assert meta["episodes"].value == 32
    assert meta["steps"].value == eps["length"].to_numpy().sum()
    assert meta["bytes"].value > 0 and meta["steps_per_s"].value > 0
    assert meta["num_checkpoints"].value == 2 and meta["run"].value == "sable-seed0"
    assert 0.0 <= meta["final_return"].value <= 1.0
    assert 0.0 <= meta["random_return"].value <= 1.0
    assert_published(lake, meta["learning_curve"].value, "learning curve")
    assert [r.data["quality"] for r in meta["checkpoints"].records] == ["low", "high"]
    for link in ("steps_partition", "episodes_partition"):  # the run's folders in the lake
        assert "task=8x8-2p-2f/run=sable-seed0" in meta[link].value
        assert os.path.isdir(meta[link].value), meta[link].value
    # the dataset card names what produced the rows: this online config and the code
    (card,) = dataset_cards(lake, get_task(TASK))
    ((config, version),) = card.producers
    assert json.loads(config)["online_sable"]["total_env_steps"] == TINY["total_env_steps"]
    assert version.startswith("sable-lake ") and card.reference is not None

    checks = result.get_asset_check_evaluations()
    assert {c.check_name for c in checks} == {c.check_key.name for c in online_checks}
    assert all(c.passed for c in checks), [(c.check_name, c.metadata) for c in checks]
    (replay,) = [c for c in checks if c.check_name == "online_episodes_replay"]
    assert replay.metadata["replayed"].value == 2 * REPLAYED_PER_CHECKPOINT  # 2 checkpoints


def test_online_checks_fail_on_missing_rows_and_references(lake, tmp_path):
    """The check evaluations (the functions the asset checks call) catch a lake that lost
    a checkpoint's files or its references row behind Dagster's back."""
    task = get_task(TASK)
    assert _materialise(lake, tmp_path, dg.DagsterInstance.ephemeral(), seed=1).success
    assert checkpoint_rows(lake, task, "sable-seed1", 2).passed
    assert not checkpoint_rows(lake, task, "sable-seed1", 3).passed  # one more expected
    lost = "task = '8x8-2p-2f' AND run = 'sable-seed1'"  # rows lost behind Dagster's back
    delete_where(lake, "episodes", f"{lost} AND checkpoint = 0")
    delete_where(lake, "steps/lbf", f"{lost} AND checkpoint = 0")
    delete_where(lake, "cards", f"{lost} AND checkpoint = 0")
    result = checkpoint_rows(lake, task, "sable-seed1", 2)
    assert not result.passed and result.metadata["missing_or_mismatched"] == "[0]"
    assert reference_present(lake, task, "sable-seed1").passed
    delete_where(lake, "references", lost)
    assert not reference_present(lake, task, "sable-seed1").passed
    assert not returns_within_bounds(lake, task, "no-such-run").passed

    assert files_valid(lake, task).passed
    # A file outside the Delta log (a killed write's) is listed, never read: it blocks nothing.
    stray = "steps/lbf/task=8x8-2p-2f/run=sable-seed1/quality=low/checkpoint=0/stray.parquet"
    lake.fs.pipe_file(lake.path(stray), b"half a file")
    result = files_valid(lake, task)
    assert result.passed and stray in result.metadata["leftover_files"]
    report = verify(lake)  # `dataset_status` counts the same problems: not the leftover
    assert task_problems(report, task) == []
    assert [p.path for p in task_problems(report, task, leftovers=True)] == [stray]
    bad = list_files(lake, "episodes", Selection(env="lbf", tasks=["8x8-2p-2f"],
                                                 runs=["sable-seed1"], checkpoints=(1, 1)))[0]
    lake.fs.pipe_file(lake.path(bad), b"not parquet")
    result = files_valid(lake, task)
    assert not result.passed and bad in result.metadata["problems"]
    assert files_valid(lake, get_task("lbf/10x10-3p-3f")).passed  # another task's check


def test_bad_online_config_is_refused_before_any_compute(lake, tmp_path):
    with pytest.raises(pydantic.ValidationError, match="episodes_per_checkpoint"):
        _materialise(lake, tmp_path, dg.DagsterInstance.ephemeral(), episodes_per_checkpoint=0)
    result = dg.materialize(
        [online_sable], partition_key=TASK, resources=default_resources(lake.root),
        run_config={"ops": {"online_sable": {"config": {**TINY, "num_checkpoints": 5}}}},
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert "more than the 4 update(s)" in str(failure)
    assert lake.find("") == []
