"""The `reproduce` job: one launch trains and evaluates every model of a (narrowed, scaled-down)
preset with its seeds, the report groups the seeds, and a second launch finds everything done;
bad launches are refused before any compute."""

import json
import os
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lake_schema.catalogue import split_tasks
from lake_schema.duck import connect
from lake_schema.reader import Selection, read_table
from lake_schema.testing import fill_lake
from lake_schema.writer import write_reference
from pipelines.definitions import defs
from trainer.analysis import LATEST_EVALUATIONS
from trainer.offline.checkpoint import read_model_info

TRAIN = [t.name for t in split_tasks("lbf", "demo-train")]
TEST = [t.name for t in split_tasks("lbf", "demo-test")]
TINY = {"num_updates": 2, "batch_size": 6, "seq_len": 5, "embed_dim": 16, "num_heads": 2}


def _launch(config: dict, instance: dg.DagsterInstance):
    return defs.resolve_job_def("reproduce").execute_in_process(
        instance=instance, raise_on_error=False,
        run_config={"ops": {"reproduction": {"config": config}}})


@pytest.fixture
def home(tmp_path, monkeypatch):
    for var, sub in (("SABLE_LAKE", "lake"), ("SABLE_LAKE_MODELS", "models"),
                     ("SABLE_LAKE_CACHE", "cache")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    lake = defs.resources["lake"].lake()
    fill_lake(lake, TRAIN, checkpoints=3, episodes=3, lengths=(8, 30), seed=4)
    for task in TRAIN + TEST:
        write_reference(lake, task, "online", sable_returns=[0.6], random_returns=[0.1],
                        env_steps=1)
    return lake


def test_a_preset_in_one_launch_then_nothing_left_to_do(home):
    # the quality experiment (one compiled update: only the data differs), two seeds
    config = {"preset": "cpu-small", "envs": ["lbf"], "experiments": ["quality"],
              "seeds": [0, 1], "offline": TINY, "eval_episodes": 2}
    instance = dg.DagsterInstance.ephemeral()
    first = _launch(config, instance)
    assert first.success
    meta = first.asset_materializations_for_node("reproduction")[0].metadata
    assert meta["models"].value == 8  # all, high, low, high + 10% low; two seeds
    assert meta["task_evaluations_run"].value == 8 * (len(TRAIN) + len(TEST))
    rows = read_table(home, "evaluations", Selection(env="lbf")).to_pylist()
    assert len({r["model"] for r in rows}) == 8
    results = [r.data for r in meta["results"].value.records]
    assert {r["quality"] for r in results} == {"all", "high", "low", "high+low"}
    assert all(r["test"] is not None and r["train"] is not None for r in results)

    # the report groups the two seeds of each configuration: n = 2
    report = first.asset_materializations_for_node("report")[0].metadata
    assert report["configurations"].value == 4

    again = _launch(config, instance)  # resumes: every model finished, every task evaluated
    assert again.success
    meta = again.asset_materializations_for_node("reproduction")[0].metadata
    assert meta["models"].value == 8 and meta["task_evaluations_run"].value == 0
    assert len(read_table(home, "evaluations", Selection(env="lbf"))) == len(rows)

    # a model retrained from scratch under the same config id: its predecessor's evaluations
    # neither count as done nor show as its latest
    retrained = results[0]["model"]
    shutil.rmtree(Path(os.environ["SABLE_LAKE_MODELS"]) / retrained)
    third = _launch(config, instance)
    assert third.success
    meta = third.asset_materializations_for_node("reproduction")[0].metadata
    assert meta["task_evaluations_run"].value == len(TRAIN) + len(TEST)
    since = read_model_info(Path(os.environ["SABLE_LAKE_MODELS"]) / retrained)["trained_since"]
    latest = connect(home).sql(LATEST_EVALUATIONS).pl().filter(pl.col("model") == retrained)
    assert len(latest) == len(TRAIN) + len(TEST)
    assert {json.loads(c)["trained_since"] for c in latest["config"]} == {since}


@pytest.mark.parametrize("config, message", [
    ({"preset": "huge"}, "unknown preset 'huge'"),
    ({"experiments": ["model_size"]}, "experiments ['model_size'] not in preset 'cpu-small'"),
    ({"seeds": [7]}, "seeds [7] not in preset 'cpu-small'"),
    ({"offline": {"embed_dim": 0}}, "embed_dim"),
])
def test_a_bad_launch_is_refused_before_any_compute(home, config, message):
    result = _launch(config, dg.DagsterInstance.ephemeral())
    assert not result.success
    assert message in result.failure_data_for_node("reproduction").error.to_string()
    assert not read_table(home, "evaluations", Selection(env="lbf")).num_rows
