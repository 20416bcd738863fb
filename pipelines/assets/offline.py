"""Offline multi-task models (BC-Sable, CQL-Sable, Oryx) trained on the lake, and their
zero-shot evaluations on the train and test tasks.

Wiring only: training is `trainer.offline.train`, evaluation `trainer.offline.evaluate`.
Every model lives in `<models_dir>/<config id>`, the config id a hash of the model's config
and dataset selection, so models of different configs (ablations, seeds, sizes) coexist and
never overwrite each other; materialising the same config again resumes (or finds finished)
its run. Evaluations are rows of the lake's `evaluations` table keyed by the config id, so
any two models can be compared with a query.
"""

import math
import os
from pathlib import Path
from typing import Literal

import dagster as dg
import polars as pl
from pydantic import Field

from lake_schema.catalogue import split_tasks
from lake_schema.reader import Selection, read_table
from lake_schema.report import markdown_table
from lake_schema.storage import Lake
from pipelines.plots import png_markdown, task_bars_png, training_curves_png
from pipelines.resources import ComputeResource, LakeResource

MODELS_ENV = "SABLE_LAKE_MODELS"
TEST_SPLIT_OF = {"train": "test", "demo-train": "demo-test"}


def models_root(models_dir: str) -> Path:
    """Where models live: the config's `models_dir`, else $SABLE_LAKE_MODELS, else ./models."""
    return Path(models_dir or os.environ.get(MODELS_ENV) or "models")


class OfflineModelConfig(dg.Config):
    """One offline model: environment, algorithm, data, size, the three switches, budget.
    Unset (null) fields take the profile's value."""

    env: Literal["lbf", "rware", "connector"] = "lbf"
    algorithm: Literal["bc", "cql", "oryx"] = "oryx"
    split: str | None = Field(default="demo-train", description="training split of the env")
    tasks: list[str] | None = Field(default=None, description="explicit tasks instead of split")
    first_k: int | None = Field(default=None, ge=1, description="the first k tasks of split")
    quality: Literal["all", "high", "low", "high+low"] = "all"
    low_fraction: float | None = Field(default=None, gt=0, le=1,
                                       description="share of low episodes with high+low")
    episodes_per_task: int | None = Field(default=None, ge=1, description="dataset size")
    fraction: float | None = Field(default=None, gt=0, le=1,
                                   description="dataset size as a fraction of each task's")
    runs: list[str] | None = Field(default=None, description="lake runs to train on (all)")
    profile: Literal["demo", "paper"] = "demo"
    embed_dim: int | None = Field(default=None, ge=1, description="model size")
    num_heads: int | None = Field(default=None, ge=1)
    num_blocks: int | None = Field(default=None, ge=1)
    value_loss: Literal["hl_gauss", "mse"] = Field(default="hl_gauss",
                                                   description="switch: HL-Gauss or MSE")
    batch_mode: Literal["balanced", "single_task", "proportional"] = Field(
        default="balanced", description="switch: task-balanced batches or the ablation")
    agent_masking: bool = Field(default=True, description="switch: agent masking + shuffling")
    task_weighting: Literal["equal", "agent_steps"] = Field(
        default="equal", description="switch: tasks weigh equally (Eq. 1) or by agent-steps")
    num_updates: int | None = Field(default=None, ge=1)
    batch_size: int | None = Field(default=None, ge=1)
    seq_len: int | None = Field(default=None, ge=1, description="sequence length T")
    eval_every: int | None = Field(default=None, ge=0,
                                   description="periodic evaluation on the train tasks (0 off)")
    seed: int = Field(default=0, ge=0)
    models_dir: str = Field(default="", description=f"default ${MODELS_ENV} or ./models")

    def build(self):
        """(OfflineConfig, DataSelection), validated (ValueError) before any compute."""
        from trainer.data import DataSelection  # JAX only in the run process
        from trainer.offline import OfflineConfig

        knobs = ("embed_dim", "num_heads", "num_blocks", "num_updates", "batch_size", "seq_len",
                 "eval_every")
        overrides = {k: getattr(self, k) for k in knobs if getattr(self, k) is not None}
        config = OfflineConfig.profile(
            self.profile, env=self.env, algorithm=self.algorithm, value_loss=self.value_loss,
            batch_mode=self.batch_mode, agent_masking=self.agent_masking,
            task_weighting=self.task_weighting, seed=self.seed,
            **overrides)
        selection = DataSelection(
            env=self.env, tasks=tuple(self.tasks) if self.tasks else None,
            split=None if self.tasks else self.split, first_k=self.first_k,
            quality=self.quality, low_fraction=self.low_fraction,
            episodes_per_task=self.episodes_per_task, fraction=self.fraction,
            runs=tuple(self.runs) if self.runs else None, seed=self.seed)
        config.check_selection(selection)
        return config, selection


@dg.asset(group_name="offline", kinds={"jax"}, deps=["online_sable"])
def offline_model(context: dg.AssetExecutionContext, config: OfflineModelConfig,
                  lake: LakeResource, compute: ComputeResource) -> dg.Output[dict]:
    """Train (or resume) one offline model on the lake's datasets; the value is a reference
    to its run directory (`<models_dir>/<config id>`)."""
    from trainer.offline import config_id, train

    offline_config, selection = config.build()
    cid = config_id(offline_config, selection)
    run_dir = models_root(config.models_dir) / cid
    context.log.info(f"model {cid} ({offline_config.algorithm}) on "
                     f"{', '.join(selection.task_names)} -> {run_dir}")
    with compute.placed() as devices:
        result = train(lake.lake(), selection, offline_config, run_dir, devices=devices)
    history = result.history
    rates = [r["updates_per_s"] for r in history if "updates_per_s" in r]
    last = history[-1] if history else {}
    ref = {"config_id": cid, "run_dir": str(run_dir.absolute()), "env": offline_config.env,
           "algorithm": offline_config.algorithm, "train_tasks": list(selection.task_names),
           "split": selection.split, "update": result.update}
    metadata = {
        "config_id": cid,
        "algorithm": offline_config.algorithm,
        "run_dir": dg.MetadataValue.path(ref["run_dir"]),
        "train_tasks": ", ".join(selection.task_names),
        "updates": result.update,
        "final_loss": float(last.get("loss", float("nan"))),
        "updates_per_s": float(sorted(rates)[len(rates) // 2]) if rates else float("nan"),
        "config": dg.MetadataValue.json({"config": offline_config.to_json(),
                                         "selection": selection.to_json()}),
    }
    if history:
        metadata["training_curves"] = png_markdown(
            training_curves_png(history, f"{offline_config.algorithm} {cid}"), "training curves")
    if result.best is not None:
        metadata["best_update"] = int(result.best["update"])
        metadata["best_train_normalised_return"] = float(result.best["score"])
    return dg.Output(ref, metadata=metadata)


class OfflineEvalConfig(dg.Config):
    """How to evaluate; by default the model `offline_model` last materialised."""

    episodes: int = Field(default=32, ge=1, description="episodes per task (final: 320)")
    checkpoint: str = Field(default="latest", description="'latest', 'best' or an update")
    greedy: bool = Field(default=False, description="argmax actions (BC/Oryx; CQL always is)")
    seed: int = Field(default=0, ge=0)
    split: str | None = Field(default=None, description="tasks to evaluate: a split of the env")
    tasks: list[str] | None = Field(default=None, description="... or explicit tasks")
    model: str = Field(default="", description="evaluate this config id instead")
    models_dir: str = Field(default="", description=f"default ${MODELS_ENV} or ./models")

    def eval_config(self):
        from trainer.offline import EvalConfig

        ck = int(self.checkpoint) if self.checkpoint.isdigit() else self.checkpoint
        return EvalConfig(episodes=self.episodes, seed=self.seed, greedy=self.greedy,
                          checkpoint=ck)


def eval_targets(info: dict, config: OfflineEvalConfig, role: str
                 ) -> tuple[list[str] | None, str | None]:
    """(tasks, split) to evaluate a model on: as configured, else its own training tasks
    (`train`) or the test split paired with its training split (`test`)."""
    tasks, split = config.tasks, config.split
    if not tasks and split is None:
        if role == "train":
            tasks = info["tasks"]
        else:
            split = TEST_SPLIT_OF.get(info["selection"].get("split") or "")
            if split is None:
                raise ValueError(f"model {info['config_id']} was not trained on a named train "
                                 "split: give the test split or tasks in the config")
    return tasks or None, split


def _evaluate(context: dg.AssetExecutionContext, config: OfflineEvalConfig, lake: LakeResource,
              compute: ComputeResource, model: dict, role: str) -> dg.MaterializeResult:
    from trainer.offline import evaluate
    from trainer.offline.checkpoint import read_model_info

    run_dir = (models_root(config.models_dir) / config.model) if config.model else Path(
        model["run_dir"])
    info = read_model_info(run_dir)
    tasks, split = eval_targets(info, config, role)
    with compute.placed():
        results = evaluate(lake.lake(), run_dir, tasks=tasks, split=split,
                           eval_config=config.eval_config())
    mean_norm = sum(r.normalised_return for r in results) / len(results)
    table = dg.MetadataValue.table(
        records=[dg.TableRecord({"task": r.task, "split": r.split, "episodes": r.episodes,
                                 "mean_return": round(r.mean_return, 4),
                                 "std_return": round(r.std_return, 4),
                                 "reference_return": round(r.reference_return, 4),
                                 "normalised_return": round(r.normalised_return, 4)})
                 for r in results],
        schema=dg.TableSchema(columns=[
            dg.TableColumn("task", "string"), dg.TableColumn("split", "string"),
            dg.TableColumn("episodes", "int"), dg.TableColumn("mean_return", "float"),
            dg.TableColumn("std_return", "float"), dg.TableColumn("reference_return", "float"),
            dg.TableColumn("normalised_return", "float")]),
    )
    title = f"{info['algorithm']} {info['config_id']} ({role} tasks, update {results[0].update})"
    return dg.MaterializeResult(metadata={
        "config_id": info["config_id"],
        "algorithm": info["algorithm"],
        "update": results[0].update,
        "episodes": config.episodes,
        "mean_normalised_return": float(mean_norm),
        "per_task": table,
        "per_task_plot": png_markdown(task_bars_png(results, title), "per-task normalised return"),
    })


@dg.asset(group_name="offline", kinds={"jax", "parquet"})
def offline_eval_train(context: dg.AssetExecutionContext, config: OfflineEvalConfig,
                       lake: LakeResource, compute: ComputeResource,
                       offline_model: dict) -> dg.MaterializeResult:
    """The model on its own training tasks (raw and normalised returns) -> `evaluations`."""
    return _evaluate(context, config, lake, compute, offline_model, "train")


@dg.asset(group_name="offline", kinds={"jax", "parquet"})
def offline_eval_test(context: dg.AssetExecutionContext, config: OfflineEvalConfig,
                       lake: LakeResource, compute: ComputeResource,
                       offline_model: dict) -> dg.MaterializeResult:
    """Zero-shot on held-out tasks (the test split paired with the training split, or as
    configured) -> `evaluations`."""
    return _evaluate(context, config, lake, compute, offline_model, "test")


class AblationSweepConfig(dg.Config):
    """A grid of offline models in one launch: `base` with each combination of the lists
    (an empty list keeps the base value), each trained, then evaluated on its training tasks
    and the paired held-out split. Results accumulate in `evaluations`; `report` compares."""

    base: OfflineModelConfig = Field(default_factory=OfflineModelConfig)
    algorithms: list[str] = Field(default_factory=lambda: ["bc", "oryx"],
                                  description="bc, cql, oryx")
    first_k: list[int] = Field(default_factory=list, description="task counts (task scaling)")
    quality: list[str] = Field(default_factory=list, description="all, high, low, high+low")
    evaluation: OfflineEvalConfig = Field(default_factory=OfflineEvalConfig)

    def grid(self) -> list[OfflineModelConfig]:
        """Every combination, each a validated OfflineModelConfig (bad values name the field)."""
        axes = {"algorithm": self.algorithms, "first_k": self.first_k, "quality": self.quality}
        combos = [{}]
        for name, values in axes.items():
            if values:
                combos = [{**c, name: v} for c in combos for v in values]
        base = self.base.model_dump()
        return [OfflineModelConfig(**{**base, **c}) for c in combos]


@dg.asset(group_name="offline", kinds={"jax", "parquet"}, deps=["online_sable"])
def ablation_sweep(context: dg.AssetExecutionContext, config: AblationSweepConfig,
                   lake: LakeResource, compute: ComputeResource) -> dg.MaterializeResult:
    """Train and evaluate every model of the sweep's grid (validated before any compute)."""
    from trainer.offline import config_id, evaluate, train
    from trainer.offline.checkpoint import read_model_info

    models = [(m, *m.build()) for m in config.grid()]  # every config checked up front
    rows = []
    with compute.placed() as devices:
        for model_config, offline_config, selection in models:
            cid = config_id(offline_config, selection)
            run_dir = models_root(model_config.models_dir) / cid
            context.log.info(f"sweep: {offline_config.algorithm} {cid} on "
                             f"{', '.join(selection.task_names)}")
            train(lake.lake(), selection, offline_config, run_dir, devices=devices)
            info = read_model_info(run_dir)
            row = {"model": cid, "algorithm": offline_config.algorithm,
                   "train_tasks": len(selection.task_names), "quality": selection.quality}
            for role in ("train", "test"):
                tasks, split = eval_targets(info, config.evaluation, role)
                results = evaluate(lake.lake(), run_dir, tasks=tasks, split=split,
                                   eval_config=config.evaluation.eval_config())
                row[f"{role}_normalised"] = round(
                    sum(r.normalised_return for r in results) / len(results), 4)
            rows.append(row)
    return dg.MaterializeResult(metadata={
        "models": len(rows), "results": dg.MetadataValue.md(markdown_table(pl.DataFrame(rows)))})


def _scenarios(names: list[str]) -> list[str]:
    return [n.split("/", 1)[1] for n in names]


def references_cover(lake: Lake, env: str, task_names: list[str]) -> dg.AssetCheckResult:
    """Every task an evaluation needs has a finite, non-zero online Sable reference."""
    refs = read_table(lake, "references", Selection(env=env, tasks=_scenarios(task_names)),
                      ["task", "sable_return"]).to_pylist()
    good = {r["task"] for r in refs if r["sable_return"] and math.isfinite(r["sable_return"])}
    missing = [n for n in task_names if n.split("/", 1)[1] not in good]
    return dg.AssetCheckResult(passed=not missing,
                               metadata={"tasks": len(task_names), "missing": str(missing)})


def selection_non_empty(lake: Lake, env: str, task_names: list[str]) -> dg.AssetCheckResult:
    """Every training task of the model has episodes in the lake."""
    eps = read_table(lake, "episodes", Selection(env=env, tasks=_scenarios(task_names)),
                     ["task"])["task"].to_pylist()
    empty = [n for n in task_names if n.split("/", 1)[1] not in set(eps)]
    return dg.AssetCheckResult(passed=not empty,
                               metadata={"episodes": len(eps), "empty_tasks": str(empty)})


@dg.asset_check(asset=offline_model, blocking=True)
def offline_references_present(lake: LakeResource, offline_model: dict) -> dg.AssetCheckResult:
    """References for the model's training tasks and its paired held-out split (evaluation
    normalises by them; blocking, so evaluations never run without them)."""
    env = offline_model["env"]
    names = list(offline_model["train_tasks"])
    test_split = TEST_SPLIT_OF.get(offline_model.get("split") or "")
    if test_split:
        names += [t.name for t in split_tasks(env, test_split)]
    return references_cover(lake.lake(), env, names)


@dg.asset_check(asset=offline_model, blocking=True)
def offline_dataset_non_empty(lake: LakeResource, offline_model: dict) -> dg.AssetCheckResult:
    """The model's dataset selection found episodes for every training task."""
    return selection_non_empty(lake.lake(), offline_model["env"],
                               list(offline_model["train_tasks"]))


offline_checks = [offline_references_present, offline_dataset_non_empty]
