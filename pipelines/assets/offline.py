"""Offline multi-task models (BC-Sable, CQL-Sable, Oryx) trained on the lake, and their
zero-shot evaluations on the train and test tasks: one partition per model.

Wiring only: training is `trainer.offline.training`, evaluation `trainer.offline.evaluation`.
Each model is a partition of `offline_model`, `offline_eval_train` and `offline_eval_test`,
keyed by its config id (a hash of the model's config and dataset selection), so every model
has its own page, runs, logs and lineage in the UI, and one run trains and evaluates one
model. A model is registered (`trainer.offline.runs.register_model`, which
`pipelines.launch` calls when it plans an experiment) before its partition runs: the key says
what to train. Its run directory is `<models_dir>/<config id>`; materialising the partition
again resumes (or finds finished) its run. Evaluations are rows of the lake's `evaluations`
table keyed by the config id, so any two models can be compared with a query.

A partition is one seed, not a configuration's seeds in one program: on CPU a program of 3
seeds trains 0.95-1.02x the seeds per hour of one seed alone (benchmarks/RESULTS.md, the
seeds-in-one-program table), while two runs side by side finish 1.5x sooner than one after the
other; on a cluster, each seed's run takes a GPU of its own. A model is then a page.
"""

from typing import Literal

import dagster as dg
import polars as pl
from pydantic import Field

from lake_schema import checks
from lake_schema.duck import connect
from lake_schema.storage import Lake
from pipelines.checks import check_result
from pipelines.configs import derive, knob_values, plain_fields
from pipelines.episode_media import evaluation_episode_metadata
from pipelines.metadata import rounded
from pipelines.partitions import (
    DATASETS_FOR_HELD_OUT,
    DATASETS_FOR_TRAINING,
    model_partitions,
)
from pipelines.plots import publish_png, table_metadata, task_bars_png, training_curves_png
from pipelines.resources import ComputeResource, LakeResource
from trainer.analysis import latest_evaluations, model_table
from trainer.data.selection import DataSelection
from trainer.offline.config import PROFILES as OFFLINE_PROFILES
from trainer.offline.config import EvalConfig, OfflineConfig, config_id, model_name
from trainer.offline.runs import (
    MODELS_ENV,
    evaluate_model,
    mean_normalised,
    models_root,
    registered_model,
    train_models,
)
from trainer.replay import RenderConfig
from trainer.tensorboard import model_run, tensorboard_url


class _OfflineModel(dg.Config):
    """One offline model: every knob of `trainer.offline.OfflineConfig` (environment,
    algorithm, size, the three switches, budget) and of its `DataSelection`; unset (null)
    fields take the profile's value."""

    profile: Literal[tuple(OFFLINE_PROFILES)] = Field(
        default="demo", description="'demo' (CPU; what `make demo` trains) or 'paper'")
    split: str | None = Field(default="demo-train", description="training split of the env")

    def build(self) -> tuple[OfflineConfig, DataSelection]:
        """(OfflineConfig, DataSelection), validated (ValueError) before any compute."""
        config = OfflineConfig.profile(self.profile, **knob_values(self, OfflineConfig))
        chosen = {name: getattr(self, name) for name in SELECTION_FIELDS}
        chosen = {k: tuple(v) if isinstance(v, list) else v for k, v in chosen.items()}
        if chosen["tasks"]:
            chosen["split"] = None
        selection = DataSelection(env=config.env, seed=config.seed, **chosen)
        config.check_selection(selection)
        return config, selection


SELECTION_FIELDS = tuple(plain_fields(DataSelection, exclude=("env", "seed")))
OfflineModelConfig = derive("OfflineModelConfig", _OfflineModel, OfflineConfig,
                            extra=plain_fields(DataSelection, exclude=("env", "seed")))


def config_summary(config: OfflineConfig, selection: DataSelection) -> dict[str, str]:
    """A model in two short lines: `knobs`, those that differ from the profile it is closest
    to (the algorithm and the seed have entries of their own), and `data`, how its episodes
    were chosen beyond the tasks."""
    own = ("env", "algorithm", "seed")
    mine = config.to_json()

    def differing(profile: str) -> list[str]:
        base = OfflineConfig.profile(profile, env=config.env).to_json()
        return [f"{k}={v}" for k, v in mine.items() if k not in own and v != base[k]]

    profile = min(OFFLINE_PROFILES, key=lambda name: len(differing(name)))
    knobs = differing(profile)
    data = [f"{k}={v}" for k, v in selection.to_json().items()
            if k not in ("env", "tasks", "seed", "as_of") and v not in (None, "all")]
    return {"knobs": f"profile {profile}" + (f" with {', '.join(knobs)}" if knobs else ""),
            "data": ", ".join(data) or "every episode of the tasks"}


def model_tags(config: OfflineConfig, selection: DataSelection) -> dict[str, str]:
    """The tags of a model's run, so the UI's Runs page filters runs by what they trained
    (`sable-lake/model`, `algorithm`, `tasks` (their count), `seed`); an experiment adds
    `sable-lake/experiment` when it launches the run."""
    return {"sable-lake/model": config_id(config, selection),
            "sable-lake/algorithm": config.algorithm,
            "sable-lake/tasks": str(len(selection.task_names)),
            "sable-lake/seed": str(config.seed)}


class ModelRunConfig(dg.Config):
    """Where the partition's model lives; what it is was registered under its key."""

    models_dir: str = Field(default="", description=f"default ${MODELS_ENV} or ./models")


# The datasets it waits for in a backfill: those of every task a split trains on
# (`pipelines.partitions`); its selection decides which of them it reads.
@dg.asset(group_name="offline", kinds={"jax"}, partitions_def=model_partitions,
          deps=[DATASETS_FOR_TRAINING])
def offline_model(context: dg.AssetExecutionContext, config: ModelRunConfig,
                  lake: LakeResource, compute: ComputeResource) -> dg.MaterializeResult:
    """Train (or resume) the partition's model on the lake's datasets, in its run directory
    (`<models_dir>/<config id>`)."""
    offline_config, selection = registered_model(config.models_dir, context.partition_key)
    context.instance.add_run_tags(context.run.run_id, model_tags(offline_config, selection))
    with compute.placed() as devices:
        ((ref, result),) = train_models(lake.lake(), config.models_dir, offline_config,
                                        selection, [offline_config.seed], devices,
                                        context.log.info)
    cid, history = ref["config_id"], result.history
    rates = [r["updates_per_s"] for r in history if "updates_per_s" in r]
    last = history[-1] if history else {}
    name = model_name(offline_config.algorithm, len(selection.task_names), offline_config.seed)
    # The first screen says what the model is in a few lines; the full config (60 lines of
    # JSON, shown inline by the UI) comes last.
    metadata = {
        "model": name,
        "config_id": cid,
        "algorithm": offline_config.algorithm,
        "train_tasks": ", ".join(selection.task_names),
        "seed": offline_config.seed,
        **config_summary(offline_config, selection),
        "updates": result.update,
        "final_loss": float(last.get("loss", float("nan"))),
        "updates_per_s": float(sorted(rates)[len(rates) // 2]) if rates else float("nan"),
    }
    if result.best is not None:
        metadata["best_update"] = int(result.best["update"])
        metadata["best_train_normalised_return"] = float(result.best["score"])
        # per algorithm too: the UI's Plots tab then draws one line per algorithm
        metadata[f"{offline_config.algorithm}_best_train_normalised_return"] = float(
            result.best["score"])
    if history:
        metadata["training_curves"] = publish_png(
            lake.lake(), training_curves_png(history, f"{name} ({cid})"), "training curves")
    metadata["tensorboard"] = dg.MetadataValue.url(tensorboard_url())
    metadata["tensorboard_run"] = model_run(cid, offline_config.algorithm,
                                            len(selection.task_names), offline_config.seed)
    metadata["run_dir"] = dg.MetadataValue.path(ref["run_dir"])
    metadata["config"] = dg.MetadataValue.json({"config": offline_config.to_json(),
                                                "selection": selection.to_json()})
    return dg.MaterializeResult(metadata=rounded(metadata))


class _OfflineEval(dg.Config):
    """How to evaluate the partition's model (every knob of `trainer.offline.EvalConfig`)."""

    split: str | None = Field(default=None, description="tasks to evaluate: a split of the env")
    tasks: list[str] | None = Field(default=None, description="... or explicit tasks")
    models_dir: str = Field(default="", description=f"default ${MODELS_ENV} or ./models")

    def eval_config(self) -> EvalConfig:
        return EvalConfig(**knob_values(self, EvalConfig))


OfflineEvalConfig = derive("OfflineEvalConfig", _OfflineEval, EvalConfig, RenderConfig)


def _evaluate(context: dg.AssetExecutionContext, config: OfflineEvalConfig, lake: LakeResource,
              compute: ComputeResource, role: str) -> dg.MaterializeResult:
    run_dir = models_root(config.models_dir) / context.partition_key
    from trainer.offline.checkpoint import read_best  # JAX: only where a model runs

    # a held-out evaluation can have a run of its own (pipelines.partitions): tagged as the
    # model's run is, so the Runs page finds it by what it evaluates
    context.instance.add_run_tags(context.run.run_id, model_tags(
        *registered_model(config.models_dir, context.partition_key)))

    with compute.placed():
        info, results = evaluate_model(lake.lake(), run_dir, config.eval_config(), role,
                                       config.tasks, config.split, context.log.info)
    context.log.info(f"{info['config_id']}: mean normalised return {mean_normalised(results):.3f}"
                     f" on {len(results)} {role} tasks")
    metadata = evaluation_metadata(lake.lake(), info["config_id"], {r.split for r in results},
                                   read_best(run_dir))
    # what the numbers look like: each task's best and worst episode, drawn
    metadata |= evaluation_episode_metadata(lake.lake(), results,
                                            RenderConfig(**knob_values(config, RenderConfig)))
    return dg.MaterializeResult(metadata=metadata)


# The per-task table's columns, the normalised return first and short names (read at
# 1600 px): column -> shown as.
PER_TASK_COLUMNS = {"task": "task", "normalised_return": "normalised", "mean_return": "return",
                    "std_return": "std", "reference_return": "reference",
                    "episodes": "episodes", "update": "update"}


def evaluation_metadata(the_lake: Lake, model: str, splits: set[str],
                        best: dict | None = None) -> dict[str, object]:
    """The evaluation asset's page, read back from the lake's `evaluations` (what was written
    is what is shown): this model's latest result per task (table, numbers, bar plot with
    error bars) and one table of every model's latest evaluation on the same split(s), so
    earlier models stay visible on the page.

    `best` (the run's `best.json`: the periodic evaluation that chose the checkpoint) puts
    that evaluation's score per training task beside the final one, with both episode
    counts: the periodic score is the best of several noisy evaluations, so it runs high,
    and the reader sees by how much."""
    latest = latest_evaluations(connect(the_lake))
    mine = latest.filter((pl.col("model") == model) & pl.col("split").is_in(sorted(splits)))
    if mine.is_empty():
        raise ValueError(f"model {model}: no evaluations in the lake's `evaluations` table")
    mine = mine.sort("task")
    columns = dict(PER_TASK_COLUMNS)
    chose = best is not None and int(mine["update"].max()) == best["update"]
    if chose:
        periodic = {name.split("/", 1)[-1]: score for name, score in best["tasks"].items()}
        mine = mine.with_columns(
            pl.col("task").replace_strict(periodic, default=None, return_dtype=pl.Float64)
            .alias("periodic"), pl.lit(best["episodes"]).alias("periodic_episodes"))
        columns |= {"periodic": "periodic", "periodic_episodes": "periodic episodes"}
    algorithm, update = mine["algorithm"][0], int(mine["update"].max())
    mean_norm = float(mine["normalised_return"].mean())
    title = f"{algorithm} {model} ({'/'.join(sorted(splits))} tasks, update {update})"
    metadata: dict[str, object] = {
        "config_id": model,
        "algorithm": algorithm,
        "update": update,
        "episodes": int(mine["episodes"].max()),
        "mean_normalised_return": mean_norm,
        f"{algorithm}_mean_normalised_return": mean_norm,  # a line per algorithm in Plots
        "per_task": table_metadata(mine.select(list(columns)).rename(columns)),
        "per_task_plot": publish_png(the_lake, task_bars_png(mine.to_dicts(), title),
                                     "per-task normalised return"),
    }
    if chose:
        metadata["checkpoint_choice"] = dg.MetadataValue.md(
            f"The checkpoint of update {best['update']} was chosen by a periodic evaluation on "
            f"the training tasks ({best['episodes']} episodes per task: mean normalised "
            f"{best['score']:.3f}, column `periodic`); the final evaluation "
            f"({int(mine['episodes'].max())} episodes per task, column `normalised`) is the "
            "number to quote: the choice picks the luckiest of several noisy evaluations.")
    for split in sorted(splits):
        models = model_table(latest, split)
        if not models.is_empty():
            metadata[f"all_models_{split}"] = table_metadata(models, floats=2)
    return rounded(metadata)


@dg.asset(group_name="offline", kinds={"jax", "parquet"}, partitions_def=model_partitions,
          deps=["offline_model", DATASETS_FOR_TRAINING])
def offline_eval_train(context: dg.AssetExecutionContext, config: OfflineEvalConfig,
                       lake: LakeResource, compute: ComputeResource) -> dg.MaterializeResult:
    """The model on its own training tasks (raw and normalised returns) -> `evaluations`."""
    return _evaluate(context, config, lake, compute, "train")


@dg.asset(group_name="offline", kinds={"jax", "parquet"}, partitions_def=model_partitions,
          deps=["offline_model", DATASETS_FOR_HELD_OUT])
def offline_eval_test(context: dg.AssetExecutionContext, config: OfflineEvalConfig,
                      lake: LakeResource, compute: ComputeResource) -> dg.MaterializeResult:
    """Zero-shot on held-out tasks (the test split paired with the training split, or as
    configured) -> `evaluations`."""
    return _evaluate(context, config, lake, compute, "test")


class AblationSweepConfig(dg.Config):
    """A grid of offline models: `base` with each combination of the lists (an empty list
    keeps the base value). `pipelines.launch` registers each as a model partition."""

    base: OfflineModelConfig = Field(default_factory=OfflineModelConfig)
    algorithms: list[str] = Field(default_factory=lambda: ["bc", "oryx"],
                                  description="bc, cql, oryx")
    first_k: list[int] = Field(default_factory=list, description="task counts (task scaling)")
    quality: list[str] = Field(default_factory=list, description="all, high, low, high+low")

    def grid(self) -> list[OfflineModelConfig]:
        """Every combination, each a validated OfflineModelConfig (bad values name the field)."""
        axes = {"algorithm": self.algorithms, "first_k": self.first_k, "quality": self.quality}
        combos = [{}]
        for name, values in axes.items():
            if values:
                combos = [{**c, name: v} for c in combos for v in values]
        base = self.base.model_dump()
        return [OfflineModelConfig(**{**base, **c}) for c in combos]


@dg.asset_check(asset=offline_model, blocking=True)
def offline_references_present(context: dg.AssetCheckExecutionContext, config: ModelRunConfig,
                               lake: LakeResource) -> dg.AssetCheckResult:
    """References for the model's training tasks (its train-task evaluations normalise by
    them; blocking, so those never run without them). A held-out evaluation refuses a task
    without references itself, before any compute (`reference_returns`): so a model can
    train while its held-out tasks' datasets are still being recorded (`make demo`)."""
    _, selection = registered_model(config.models_dir, context.partition_key)
    return check_result(checks.references_cover(lake.lake(), selection.env_name,
                                                list(selection.task_names)))


offline_checks = [offline_references_present]
