"""Offline multi-task models (BC-Sable, CQL-Sable, Oryx) trained on the lake, and their
zero-shot evaluations on the train and test tasks.

Wiring only: training is `trainer.offline.train`, evaluation `trainer.offline.evaluate`.
Every model lives in `<models_dir>/<config id>`, the config id a hash of the model's config
and dataset selection, so models of different configs (ablations, seeds, sizes) coexist and
never overwrite each other; materialising the same config again resumes (or finds finished)
its run. Evaluations are rows of the lake's `evaluations` table keyed by the config id, so
any two models can be compared with a query.
"""

import base64
import io
import os
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field

from pipelines.resources import LakeResource

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
            batch_mode=self.batch_mode, agent_masking=self.agent_masking, seed=self.seed,
            **overrides)
        selection = DataSelection(
            env=self.env, tasks=tuple(self.tasks) if self.tasks else None,
            split=None if self.tasks else self.split, first_k=self.first_k,
            quality=self.quality, low_fraction=self.low_fraction,
            episodes_per_task=self.episodes_per_task, fraction=self.fraction,
            runs=tuple(self.runs) if self.runs else None, seed=self.seed)
        config.check_selection(selection)
        return config, selection


def _png_md(png: bytes, alt: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def _figure_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def training_curves_png(history: list[dict], title: str) -> bytes:
    """Loss parts and per-task loss vs update (and periodic evaluations, if any)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = [r for r in history if "eval_normalised_return" in r]
    fig, axes = plt.subplots(1, 3 if evals else 2, figsize=(13 if evals else 10, 3.6), dpi=90)
    ups = [r["update"] for r in history]
    for key in ("loss", "policy_loss", "critic_loss", "conservative_loss"):
        ys = [r[key] for r in history]
        if any(ys):
            axes[0].plot(ups, ys, lw=1, label=key)
    axes[0].set(xlabel="update", ylabel="loss", title=title)
    axes[0].legend(fontsize=7)
    tasks = list(history[0]["task_loss"]) if history else []
    for t in tasks:
        pts = [(r["update"], r["task_loss"][t]) for r in history if r["task_loss"][t] is not None]
        if pts:
            axes[1].plot(*zip(*pts, strict=True), lw=1, label=t.split("/", 1)[1])
    axes[1].set(xlabel="update", ylabel="per-task loss")
    axes[1].legend(fontsize=7)
    if evals:
        axes[2].plot([r["update"] for r in evals], [r["eval_normalised_return"] for r in evals],
                     "o-")
        axes[2].set(xlabel="update", ylabel="mean normalised return (train tasks)")
    for ax in axes:
        ax.grid(alpha=0.3)
    return _figure_png(fig)


def task_bars_png(results, title: str) -> bytes:
    """Normalised return per task (1 = online Sable)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(results) + 2), 3.6), dpi=90)
    names = [r.task.split("/", 1)[1] for r in results]
    ax.bar(names, [r.normalised_return for r in results], color="tab:blue")
    ax.axhline(1.0, color="tab:green", ls="--", label="online Sable")
    ax.set(ylabel="normalised return", title=title)
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return _figure_png(fig)


@dg.asset(group_name="offline", kinds={"jax"})
def offline_model(context: dg.AssetExecutionContext, config: OfflineModelConfig,
                  lake: LakeResource) -> dg.Output[dict]:
    """Train (or resume) one offline model on the lake's datasets; the value is a reference
    to its run directory (`<models_dir>/<config id>`)."""
    from trainer.offline import config_id, train

    offline_config, selection = config.build()
    cid = config_id(offline_config, selection)
    run_dir = models_root(config.models_dir) / cid
    context.log.info(f"model {cid} ({offline_config.algorithm}) on "
                     f"{', '.join(selection.task_names)} -> {run_dir}")
    result = train(lake.lake(), selection, offline_config, run_dir)
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
        metadata["training_curves"] = _png_md(
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


def _evaluate(context: dg.AssetExecutionContext, config: OfflineEvalConfig, lake: LakeResource,
              model: dict, role: str) -> dg.MaterializeResult:
    from trainer.offline import evaluate
    from trainer.offline.checkpoint import read_model_info

    run_dir = (models_root(config.models_dir) / config.model) if config.model else Path(
        model["run_dir"])
    info = read_model_info(run_dir)
    tasks, split = config.tasks, config.split
    if not tasks and split is None:
        if role == "train":
            tasks = info["tasks"]
        else:
            split = TEST_SPLIT_OF.get(info["selection"].get("split") or "")
            if split is None:
                raise ValueError(f"model {info['config_id']} was not trained on a named train "
                                 "split: give the test split or tasks in the config")
    results = evaluate(lake.lake(), run_dir, tasks=tasks or None, split=split,
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
        "per_task_plot": _png_md(task_bars_png(results, title), "per-task normalised return"),
    })


@dg.asset(group_name="offline", kinds={"jax", "parquet"})
def offline_eval_train(context: dg.AssetExecutionContext, config: OfflineEvalConfig,
                       lake: LakeResource, offline_model: dict) -> dg.MaterializeResult:
    """The model on its own training tasks (raw and normalised returns) -> `evaluations`."""
    return _evaluate(context, config, lake, offline_model, "train")


@dg.asset(group_name="offline", kinds={"jax", "parquet"})
def offline_eval_test(context: dg.AssetExecutionContext, config: OfflineEvalConfig,
                      lake: LakeResource, offline_model: dict) -> dg.MaterializeResult:
    """Zero-shot on held-out tasks (the test split paired with the training split, or as
    configured) -> `evaluations`."""
    return _evaluate(context, config, lake, offline_model, "test")
