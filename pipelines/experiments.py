"""What an experiment is in Dagster's terms: the task datasets it records, the models it trains
(each a partition of the offline assets) and the one run config all its runs share.

`pipelines.launch` submits an `Experiment` to the instance's run queue as one backfill. The
three kinds of launch build one here: the demo (`pipelines.demo`), a reproduction preset
(`ReproduceConfig`, `benchmarks/reproduce.py`) and a grid of models
(`pipelines.assets.offline.AblationSweepConfig`); the UI's `launch_experiment` job takes the
last two as its config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from pydantic import Field

from pipelines.assets.offline import AblationSweepConfig, OfflineEvalConfig
from trainer.data.selection import DataSelection
from trainer.experiments import (
    EXPERIMENTS,
    PRESETS,
    Preset,
    dataset_tasks,
    get_preset,
    narrow,
    seed_groups,
)
from trainer.offline.config import OfflineConfig

EXPERIMENT_TAG = "sable-lake/experiment"
# The ops that read a model's registered spec (`<models_dir>/specs/<id>.json`), so each gets
# the experiment's models_dir: the offline assets and the model's blocking check (Dagster
# names a check's op `<asset>_<check>`).
MODEL_REGISTRY_READERS = ("offline_model", "offline_model_offline_references_present",
                          "offline_eval_train", "offline_eval_test")


@dataclass(frozen=True)
class Experiment:
    """One launch: `datasets` (tasks whose `online_sable` and `dataset_card` partitions run,
    then `dataset_status`), `models` (each trained and evaluated on its train and held-out
    tasks in one run of its partition), then `report`. `ops` is the config of each asset
    (`online_sable`, `offline_eval_train`, ...), the same in every run; `tags` go on every
    run (the experiment's name under `sable-lake/experiment`)."""

    name: str
    datasets: tuple[str, ...] = ()
    models: tuple[tuple[OfflineConfig, DataSelection], ...] = ()
    ops: dict[str, dict[str, Any]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def run_tags(self) -> dict[str, str]:
        return {EXPERIMENT_TAG: self.name, **self.tags}

    def run_config(self, models_dir: str = "") -> dict[str, Any]:
        """The run config every run of the experiment gets (each run reads its own assets')."""
        ops = {name: {"config": dict(config)} for name, config in self.ops.items()}
        if self.models:
            for name in MODEL_REGISTRY_READERS:
                ops.setdefault(name, {"config": {}})["config"].setdefault("models_dir",
                                                                          models_dir)
        return {"ops": ops}


class ReproduceConfig(dg.Config):
    """A preset (`trainer.experiments`), optionally narrowed (experiments, seeds, envs) and
    scaled down (`offline` overrides every model's knobs except the one its experiment
    varies)."""

    preset: str = Field(default="cpu-small", description=f"one of {', '.join(PRESETS)}")
    experiments: list[str] = Field(default_factory=list, description=(
        f"a subset of the preset's experiments ({', '.join(EXPERIMENTS)}); empty: all"))
    seeds: list[int] = Field(default_factory=list, description="empty: the preset's seeds")
    envs: list[str] = Field(default_factory=list, description="empty: the preset's envs")
    offline: dict[str, Any] = Field(default_factory=dict, description=(
        "OfflineConfig overrides (a scale-down, e.g. num_updates), stated with the results"))
    eval_episodes: int | None = Field(default=None, ge=1, description=(
        "episodes per task of the final evaluation; null: the preset's"))

    def narrowed(self) -> Preset:
        """The preset with this launch's subsets (ValueError naming a value it lacks)."""
        return narrow(get_preset(self.preset), experiments=self.experiments,
                      seeds=self.seeds, envs=self.envs, eval_episodes=self.eval_episodes)

    def experiment(self) -> Experiment:
        """Every dataset and model of the narrowed preset, each model's config validated."""
        preset = self.narrowed()
        models = tuple((config, selection) for group in seed_groups(preset, self.offline)
                       for _, config, selection in group)
        episodes = {"episodes": preset.eval_episodes}
        return Experiment(
            preset.name, tuple(t for t in dataset_tasks(preset)
                               if t.split("/", 1)[0] in preset.envs),
            models, ops={"online_sable": {"preset": preset.name},
                         "offline_eval_train": episodes, "offline_eval_test": episodes},
            tags={"sable-lake/preset": preset.name})


def sweep_experiment(sweep: AblationSweepConfig, evaluation: OfflineEvalConfig,
                     name: str = "sweep") -> Experiment:
    """A grid of models on datasets already in the lake (each config validated)."""
    models = tuple(model.build() for model in sweep.grid())
    knobs = evaluation.model_dump(exclude_none=True, exclude={"models_dir"})
    return Experiment(name, (), models,
                      ops={"offline_eval_train": knobs, "offline_eval_test": knobs})


class LaunchConfig(dg.Config):
    """What the `launch_experiment` job submits: a reproduction preset (`reproduce`), or
    without one the grid of models `sweep` on the datasets already in the lake."""

    reproduce: ReproduceConfig | None = Field(default=None, description="a preset's experiments")
    sweep: AblationSweepConfig = Field(default_factory=AblationSweepConfig)
    evaluation: OfflineEvalConfig = Field(default_factory=OfflineEvalConfig,
                                          description="the sweep's evaluation")
    name: str = Field(default="sweep", description="the sweep's `sable-lake/experiment` tag")
    models_dir: str = Field(default="", description="default $SABLE_LAKE_MODELS or ./models")

    def experiment(self) -> Experiment:
        if self.reproduce is not None:
            return self.reproduce.experiment()
        return sweep_experiment(self.sweep, self.evaluation, self.name)
