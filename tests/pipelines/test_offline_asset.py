"""The offline assets materialise through Dagster: a model is a partition keyed by its config
id (registered first), and its evaluations on train and test tasks are written to the lake
with tables and plots."""

import math
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pydantic
import pytest

from lake_schema.errors import LakeValueError
from lake_schema.reader import Selection, read_table
from lake_schema.testing import fill_lake, fill_trainable_lake
from lake_schema.writer import write_reference
from pipelines.assets.offline import (
    OfflineModelConfig,
    config_summary,
    model_tags,
    offline_eval_test,
    offline_eval_train,
    offline_model,
)
from pipelines.launch import add_models
from pipelines.resources import default_resources
from tests.helpers.plots import assert_published
from trainer.data.selection import DataSelection
from trainer.offline.config import OfflineConfig, config_id

TASKS = ["lbf/8x8-2p-2f", "lbf/10x10-3p-3f"]
MODEL = {"env": "lbf", "algorithm": "bc", "tasks": TASKS, "embed_dim": 16, "num_heads": 2,
         "num_updates": 2, "batch_size": 8, "seq_len": 5}


def _run(lake, models, model_config, eval_config=None, assets=None, instance=None):
    """Register the model, then materialise its partition of `assets` (default all three)."""
    instance = instance or dg.DagsterInstance.ephemeral()
    (cid,) = add_models(instance, [OfflineModelConfig(**model_config).build()], str(models))
    eval_config = {"episodes": 4, "models_dir": str(models), **(eval_config or {})}
    run_config = {"ops": {
        "offline_model": {"config": {"models_dir": str(models)}},
        "offline_eval_train": {"config": {**eval_config, "tasks": TASKS[:1]}},
        "offline_eval_test": {"config": {**eval_config, "tasks": ["lbf/12x12-4p-5f"]}},
    }}
    selected = assets or [offline_model, offline_eval_train, offline_eval_test]
    run_config["ops"] = {k: v for k, v in run_config["ops"].items()
                         if k in {a.key.path[-1] for a in selected}}
    result = dg.materialize(selected, resources=default_resources(lake.root),
                            run_config=run_config, instance=instance, partition_key=cid)
    return cid, result


def test_model_and_evaluations_materialise(lake, tmp_path, monkeypatch):
    monkeypatch.setenv("SABLE_LAKE_CACHE", str(tmp_path / "cache"))  # the loader's cache
    fill_trainable_lake(lake, TASKS, referenced=["lbf/12x12-4p-5f"])
    models = tmp_path / "models"
    cid, result = _run(lake, models, MODEL)
    assert result.success
    assert (models / cid / "model.json").exists()
    meta = result.asset_materializations_for_node("offline_model")[0].metadata
    assert meta["config_id"].value == cid and meta["updates"].value == 2
    assert meta["train_tasks"].value == ", ".join(TASKS)
    # the first screen: what the model is in a few short entries; the full config last
    assert list(meta)[:7] == ["model", "config_id", "algorithm", "train_tasks", "seed", "knobs",
                              "data"]
    assert meta["model"].value == f"bc · {len(TASKS)} tasks · seed 0"
    assert list(meta)[-1] == "config" and meta["seed"].value == 0
    profile, changed = meta["knobs"].value.split(" with ")
    assert profile == "profile demo" and set(changed.split(", ")) == {
        "embed_dim=16", "num_heads=2", "num_updates=2", "batch_size=8", "seq_len=5"}
    assert meta["data"].value == "every episode of the tasks"
    assert meta["config"].value["config"]["embed_dim"] == 16  # the whole config is kept
    assert all(len(repr(v.value).replace("-", "").replace(".", "").strip("0")) <= 4
               for v in meta.values() if isinstance(v.value, float) and math.isfinite(v.value))
    assert_published(lake, meta["training_curves"].value, "training curves")
    # its curves as a TensorBoard run named by the model, linked from the page
    run = meta["tensorboard_run"].value
    assert run == f"bc · {len(TASKS)} tasks · seed 0 · {cid}"
    assert any((models / "tensorboard" / run).glob("events.out.tfevents.*"))
    assert meta["tensorboard"].value.startswith("http://")
    train_meta = result.asset_materializations_for_node("offline_eval_train")[0].metadata
    assert [r.data["task"] for r in train_meta["per_task"].value.records] == ["8x8-2p-2f"]
    assert_published(lake, train_meta["per_task_plot"].value, "per-task normalised return")
    assert train_meta["bc_mean_normalised_return"].value == train_meta[
        "mean_normalised_return"].value
    test_meta = result.asset_materializations_for_node("offline_eval_test")[0].metadata
    assert [r.data["task"] for r in test_meta["per_task"].value.records] == ["12x12-4p-5f"]
    assert [r.data["model"] for r in test_meta["all_models_test"].value.records] == [cid]
    rows = read_table(lake, "evaluations", Selection(env="lbf")).to_pylist()
    assert {(r["task"], r["split"], r["model"]) for r in rows} == {
        ("8x8-2p-2f", "train", cid), ("12x12-4p-5f", "test", cid)}

    # a held-out evaluation in a run of its own is tagged with what it evaluates
    instance = dg.DagsterInstance.ephemeral()
    _, alone = _run(lake, models, MODEL, assets=[offline_eval_test], instance=instance)
    config, selection = OfflineModelConfig(**MODEL).build()
    assert model_tags(config, selection).items() <= instance.get_run_by_id(
        alone.run_id).tags.items()

    # another config (the HL-Gauss/MSE switch does nothing to BC, so change the seed) is
    # another model: both directories and both sets of rows coexist
    cid2, other = _run(lake, models, {**MODEL, "seed": 1},
                       assets=[offline_model, offline_eval_test])
    assert cid2 != cid and (models / cid / "model.json").exists()
    models_in_lake = {r["model"] for r in read_table(lake, "evaluations",
                                                     Selection(env="lbf")).to_pylist()}
    assert models_in_lake == {cid, cid2}
    # the evaluation page keeps every model's results, not only the latest model's
    test_meta = other.asset_materializations_for_node("offline_eval_test")[0].metadata
    assert {r.data["model"] for r in test_meta["all_models_test"].value.records} == {cid, cid2}


def test_a_model_s_run_is_tagged_with_what_it_trains():
    config = OfflineConfig.profile("demo", algorithm="cql", seed=2)
    selection = DataSelection(env="lbf", tasks=tuple(TASKS), seed=2)
    assert model_tags(config, selection) == {
        "sable-lake/model": config_id(config, selection), "sable-lake/algorithm": "cql",
        "sable-lake/tasks": str(len(TASKS)), "sable-lake/seed": "2"}


def test_config_summary_names_what_differs_from_the_profile():
    selection = DataSelection(env="lbf", split="demo-train", first_k=2, quality="high")
    assert config_summary(OfflineConfig.profile("demo", env="lbf", seed=3),
                          selection) == {"knobs": "profile demo",
                                         "data": "split=demo-train, first_k=2, quality=high"}
    paper = OfflineConfig.profile("paper", env="lbf", algorithm="bc", num_updates=10)
    assert config_summary(paper, selection)["knobs"] == "profile paper with num_updates=10"


def test_bad_model_configs_are_refused_before_any_compute(lake, tmp_path, monkeypatch):
    os.makedirs(lake.root)  # an empty lake (a root that does not exist is an error of its own)
    monkeypatch.setenv("SABLE_LAKE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(pydantic.ValidationError, match="algorithm"):
        _run(lake, tmp_path / "models", {**MODEL, "algorithm": "dqn"}, assets=[offline_model])
    for bad, match in (({"batch_size": 1}, "smaller than the 2 selected tasks"),
                       ({"embed_dim": 30, "num_heads": 4}, "not divisible"),
                       ({"tasks": ["rware/tiny-2ag"]}, "environments")):
        with pytest.raises(ValueError, match=match):  # refused when the model is registered
            _run(lake, tmp_path / "models", {**MODEL, **bad}, assets=[offline_model])
    assert not (tmp_path / "models").exists()
    # what only the lake can say (no episodes match) fails the model's run, before training
    with pytest.raises(ValueError, match="only 0 episodes match"):
        _run(lake, tmp_path / "models", {**MODEL, "env": "rware", "tasks": None,
                                         "split": "demo-train", "episodes_per_task": 1},
             assets=[offline_model])
    # a partition that was never registered names the file it looked for
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("model", ["lbf-bc-000000000000"])
    with pytest.raises(ValueError, match=r"lbf-bc-000000000000 is not registered: no .*specs"):
        dg.materialize([offline_model], resources=default_resources(lake.root),
                       instance=instance, partition_key="lbf-bc-000000000000",
                       run_config={"ops": {"offline_model": {"config": {
                           "models_dir": str(tmp_path / "models")}}}})
    assert not (tmp_path / "cache").exists() and not list((tmp_path / "models").glob("lbf-*"))
    assert lake.find("") == []


def test_assets_load_into_definitions_without_importing_jax():
    defs = dg.Definitions(assets=[offline_model, offline_eval_train, offline_eval_test],
                          resources=default_resources())
    defs.resolve_all_job_defs()
    code = ("import sys, pipelines.assets.offline; "
            "assert 'jax' not in sys.modules, 'pipelines.assets.offline imports JAX'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr


def test_a_sweep_is_a_grid_of_registered_models_each_validated():
    from pipelines.assets.offline import AblationSweepConfig, OfflineEvalConfig
    from pipelines.experiments import sweep_experiment

    base = {**MODEL, "tasks": None, "split": "demo-train"}
    sweep = AblationSweepConfig(base=OfflineModelConfig(**base), algorithms=["bc", "oryx"],
                                first_k=[1, 2])
    experiment = sweep_experiment(sweep, OfflineEvalConfig(episodes=2))
    assert [(c.algorithm, s.first_k) for c, s in experiment.models] == [
        ("bc", 1), ("bc", 2), ("oryx", 1), ("oryx", 2)]
    assert experiment.datasets == ()  # a sweep trains on what the lake holds
    config = experiment.run_config("/m")["ops"]
    assert config["offline_eval_test"]["config"] == {"episodes": 2, "models_dir": "/m"}
    assert config["offline_model"]["config"] == {"models_dir": "/m"}
    with pytest.raises(pydantic.ValidationError, match="algorithm"):  # grid() validates it
        AblationSweepConfig(algorithms=["dqn"]).grid()


def test_offline_checks_catch_missing_and_unusable_references(lake):
    from lake_schema.checks import references_cover

    fill_lake(lake, TASKS[:1], checkpoints=1, episodes=2, lengths=(8, 12), seed=1)
    write_reference(lake, TASKS[0], "online", sable_returns=[0.5], random_returns=[0.1],
                    env_steps=1)
    assert references_cover(lake, "lbf", TASKS[:1]).passed
    result = references_cover(lake, "lbf", TASKS)
    assert not result.passed and "10x10-3p-3f" in result.metadata["missing"]
    # a NaN reference never reaches the lake (refused at the write, naming the field) ...
    with pytest.raises(LakeValueError, match="sable_return"):
        write_reference(lake, TASKS[0], "online2", sable_returns=[float("nan")],
                        random_returns=[0.1], env_steps=1)
    assert references_cover(lake, "lbf", TASKS[:1]).passed
    # ... and the latest reference counts: a zero one is no reference (as evaluation says)
    write_reference(lake, TASKS[0], "online2", sable_returns=[0.0], random_returns=[0.1],
                    env_steps=1)
    result = references_cover(lake, "lbf", TASKS[:1])
    assert not result.passed and "zero" in result.metadata["problems"]
