"""The paper's experiments in one launch: `reproduction` trains and evaluates every model of a
preset (`trainer.experiments`), skipping what is already done, and `report` compares them.

Wiring only: the presets and experiments are `trainer.experiments`, training and evaluation
`trainer.offline.runs`' `train_models` / `evaluate_model` (the seeds of a
configuration in one program). The task datasets come first:
`benchmarks/reproduce.py` materialises `online_sable` for every task the preset needs
with the preset's online config (a complete dataset of that config is reused) and then
launches the `reproduce` job. A second launch reuses finished models (their run directories,
keyed by config id) and evaluations (rows of the same model, training run and episode count),
so an interrupted reproduction resumes where it stopped.
"""

import json
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from lake_schema.duck import connect
from lake_schema.reader import Selection, read_table
from lake_schema.storage import Lake
from pipelines.assets.offline import OfflineEvalConfig
from pipelines.plots import table_metadata
from pipelines.resources import ComputeResource, LakeResource
from trainer.analysis import latest_evaluations
from trainer.experiments import EXPERIMENTS, PRESETS, Preset, get_preset, narrow, seed_groups
from trainer.offline.runs import evaluate_model, train_models


class ReproduceConfig(dg.Config):
    """A preset, optionally narrowed (experiments, seeds, envs) and scaled down (`offline`
    overrides every model's knobs except the one its experiment varies)."""

    preset: str = Field(default="cpu-small", description=f"one of {', '.join(PRESETS)}")
    experiments: list[str] = Field(default_factory=list, description=(
        f"a subset of the preset's experiments ({', '.join(EXPERIMENTS)}); empty: all"))
    seeds: list[int] = Field(default_factory=list, description="empty: the preset's seeds")
    envs: list[str] = Field(default_factory=list, description="empty: the preset's envs")
    offline: dict[str, Any] = Field(default_factory=dict, description=(
        "OfflineConfig overrides (a scale-down, e.g. num_updates), stated with the results"))
    eval_episodes: int | None = Field(default=None, ge=1, description=(
        "episodes per task of the final evaluation; null: the preset's"))
    models_dir: str = Field(default="", description="default $SABLE_LAKE_MODELS or ./models")

    def narrowed(self) -> Preset:
        """The preset with this launch's subsets (ValueError naming a value it lacks)."""
        return narrow(get_preset(self.preset), experiments=self.experiments, seeds=self.seeds,
                      envs=self.envs, eval_episodes=self.eval_episodes)


def _evaluated_tasks(lake: Lake, envs: tuple[str, ...], episodes: int
                     ) -> dict[tuple[str, str | None], set[str]]:
    """{(model, trained_since): tasks it has an evaluation of `episodes` episodes on}, read
    once per launch (each model is evaluated once within a launch). A model retrained from
    scratch has a new `trained_since`, so its predecessor's rows do not count."""
    done: dict[tuple[str, str | None], set[str]] = {}
    for env in envs:
        rows = read_table(lake, "evaluations", Selection(env=env),
                          ["task", "model", "episodes", "config"]).to_pylist()
        for r in rows:
            if r["episodes"] == episodes:
                since = json.loads(r["config"]).get("trained_since")
                done.setdefault((r["model"], since), set()).add(f"{env}/{r['task']}")
    return done


@dg.asset(group_name="offline", kinds={"jax", "parquet"}, deps=["online_sable"])
def reproduction(context: dg.AssetExecutionContext, config: ReproduceConfig,
                 lake: LakeResource, compute: ComputeResource) -> dg.MaterializeResult:
    """Every model of the preset's experiments, trained (or found finished) and evaluated on
    its training tasks and the held-out split (the paper's protocol: best checkpoint on the
    training tasks, `eval_episodes` per task). Every config is validated before any compute."""
    from trainer.offline.checkpoint import read_model_info  # JAX only in the run process

    preset = config.narrowed()
    groups = seed_groups(preset, config.offline)  # every config validated before any compute
    evaluation = OfflineEvalConfig(episodes=preset.eval_episodes)
    the_lake = lake.lake()
    done: list[tuple[str, str, dict]] = []  # (experiment, model id, knobs it varies)
    already = _evaluated_tasks(the_lake, preset.envs, preset.eval_episodes)
    evaluated = 0
    with compute.placed() as devices:
        for i, group in enumerate(groups, 1):
            spec, offline_config, selection = group[0]
            context.log.info(f"reproduction {preset.name}: configuration {i}/{len(groups)} "
                             f"({spec.experiment}), {len(group)} seed(s)")
            trained = train_models(the_lake, config.models_dir, offline_config, selection,
                                   [c.seed for _, c, _ in group], devices, context.log.info)
            for (spec, _, _), (ref, _) in zip(group, trained, strict=True):
                since = read_model_info(ref["run_dir"]).get("trained_since")
                skip = already.get((ref["config_id"], since), set())
                for role in ("train", "test"):
                    _, results = evaluate_model(
                        the_lake, Path(ref["run_dir"]), evaluation.eval_config(), role,
                        evaluation.tasks, evaluation.split, context.log.info, skip=skip)
                    evaluated += len(results)
                done.append((spec.experiment, ref["config_id"],
                             {**spec.offline, **spec.selection}))
    table = _results(the_lake, done)
    return dg.MaterializeResult(metadata={
        "preset": preset.name,
        "scale": preset.notes or "the paper's",
        "overrides": dg.MetadataValue.json(config.offline),
        "models": len(done),
        "task_evaluations_run": evaluated,  # 0 when a second launch found everything done
        "results": table_metadata(table),
    })


def _results(lake: Lake, done: list[tuple[str, str, dict]]) -> pl.DataFrame:
    """One row per model: its experiment, the knobs that place it there, and its latest mean
    normalised return on its training and held-out tasks (from the lake's evaluations)."""
    latest = latest_evaluations(connect(lake))
    rows = []
    for experiment, model, knobs in done:
        mine = latest.filter(pl.col("model") == model)
        row = {"experiment": experiment, "model": model,
               **{k: str(v) for k, v in knobs.items() if k not in ("env", "split")}}
        for split in ("train", "test"):
            values = mine.filter(pl.col("split") == split)["normalised_return"]
            row[split] = round(float(values.mean()), 4) if len(values) else None
        rows.append(row)
    return pl.DataFrame(rows, infer_schema_length=None)
