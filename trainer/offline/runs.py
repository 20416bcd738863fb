"""Offline model runs: where models live, training a model's seeds, evaluating a model on its
training or held-out tasks. The Dagster assets, the reproduction and `python -m
trainer.offline` all go through these, so a model trained by one is found by the others.

Importing this module does not import JAX (the Dagster code location imports it); the
functions that train or evaluate import it when called.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from lake_schema.catalogue import held_out_split, split_tasks
from lake_schema.storage import Lake
from trainer.data.selection import DataSelection
from trainer.offline.config import EvalConfig, OfflineConfig

MODELS_ENV = "SABLE_LAKE_MODELS"


def models_root(models_dir: str | os.PathLike | None = None) -> Path:
    """Where models live: `models_dir`, else $SABLE_LAKE_MODELS, else ./models."""
    return Path(models_dir or os.environ.get(MODELS_ENV) or "models")


def train_models(lake: Lake, models_dir: str | None, offline_config: OfflineConfig,
                 selection: DataSelection, seeds: Sequence[int], devices: list | None,
                 log: Callable[[str], None]) -> list[tuple[dict, Any]]:
    """Train (or resume) the model of (offline_config, selection) for each seed, the seeds in
    one program (`trainer.offline.train_seeds`), each in `<models root>/<config id>`;
    returns (a reference to it, its TrainResult) per seed."""
    from trainer.offline.training import train_seeds

    results = train_seeds(lake, selection, offline_config, list(seeds), models_root(models_dir),
                          devices=devices, log=log)
    return [({"config_id": r.config_id, "run_dir": str(r.run_dir.absolute()),
              "env": offline_config.env, "algorithm": offline_config.algorithm,
              "train_tasks": list(selection.task_names), "split": selection.split,
              "update": r.update}, r) for r in results]


def eval_targets(info: dict, role: str, tasks: Sequence[str] | None = None,
                 split: str | None = None) -> tuple[list[str] | None, str | None]:
    """(tasks, split) to evaluate a model on: as given, else its own training tasks (`train`)
    or the test split paired with its training split (`test`, `catalogue.held_out_split`)."""
    if not tasks and split is None:
        if role == "train":
            tasks = info["tasks"]
        else:
            split = held_out_split(info["selection"].get("split") or "")
            if split is None:
                raise ValueError(f"model {info['config_id']} was not trained on a named train "
                                 "split: give the test split or tasks to evaluate it on")
    return (list(tasks) if tasks else None), split


def evaluate_model(lake: Lake, run_dir: Path, eval_config: EvalConfig, role: str,
                   tasks: Sequence[str] | None = None, split: str | None = None,
                   log: Callable[[str], None] | None = None, skip: Collection[str] = ()):
    """(model info, TaskResults) of the model in `run_dir` on its `role` tasks
    (`eval_targets`) less the `skip` ones (catalogue names: already evaluated), written to
    the lake's `evaluations`; progress lines to `log`."""
    from trainer.offline.checkpoint import read_model_info
    from trainer.offline.evaluation import evaluate

    info = read_model_info(run_dir)
    tasks, split = eval_targets(info, role, tasks, split)
    if skip:
        names = tasks or [t.name for t in split_tasks(info["env"], split)]
        tasks, split = [n for n in names if n not in skip], None
        if not tasks:
            return info, []
    return info, evaluate(lake, run_dir, tasks=tasks, split=split, eval_config=eval_config,
                          log=log)


def mean_normalised(results) -> float:
    """Mean normalised return over the evaluated tasks."""
    return sum(r.normalised_return for r in results) / len(results)
