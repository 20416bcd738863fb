"""Offline model runs: where models live, what each registered model is, training a model's
seeds, evaluating a model on its training or held-out tasks. The Dagster assets, the
reproduction and `python -m trainer.offline` all go through these, so a model trained by one
is found by the others.

A model is registered (`register_model`) before it is trained: its config and dataset
selection are written under `<models root>/specs/<config id>.json`, so the config id alone
(a Dagster partition key) says what to train, in whichever process runs it.

Importing this module does not import JAX (the Dagster code location imports it); the
functions that train or evaluate import it when called.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from lake_schema.catalogue import held_out_split, split_tasks
from lake_schema.storage import Lake
from trainer.data.selection import DataSelection
from trainer.offline.config import EvalConfig, OfflineConfig, config_id

MODELS_ENV = "SABLE_LAKE_MODELS"
SPECS_DIR = "specs"


def models_root(models_dir: str | os.PathLike | None = None) -> Path:
    """Where models live: `models_dir`, else $SABLE_LAKE_MODELS, else ./models."""
    return Path(models_dir or os.environ.get(MODELS_ENV) or "models")


def register_model(models_dir: str | os.PathLike | None, config: OfflineConfig,
                   selection: DataSelection) -> str:
    """Record what the model of (config, selection) is, under its config id, and return the
    id. Idempotent: the id is a hash of what is recorded, so a second registration writes the
    same file (atomically: a reader never sees half of it)."""
    cid = config_id(config, selection)
    path = models_root(models_dir) / SPECS_DIR / f"{cid}.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_text(json.dumps({"config": config.to_json(),
                                       "selection": selection.to_json()}, indent=1))
        partial.replace(path)
    return cid


def registered_model(models_dir: str | os.PathLike | None, cid: str
                     ) -> tuple[OfflineConfig, DataSelection]:
    """(OfflineConfig, DataSelection) of the registered model `cid`; a model never registered
    (or registered under another models root) is a ValueError naming the file it looked for."""
    path = models_root(models_dir) / SPECS_DIR / f"{cid}.json"
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"model {cid} is not registered: no {path} (register it with "
                         "`pipelines.launch` or `trainer.offline.runs.register_model`)") from None
    return OfflineConfig.from_json(spec["config"]), DataSelection.from_json(spec["selection"])


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


def evaluated_models(lake: Lake, models_dir: str | os.PathLike | None = None,
                     episodes: int | None = None) -> set[str]:
    """Config ids of the models whose current training run (model.json's `trained_since`) the
    lake has train and held-out evaluations of, of `episodes` episodes per task when given:
    what a second launch of an experiment need not run. A model retrained under the same id
    is not among them: its predecessor's evaluations are not its own."""
    import polars as pl

    from lake_schema.delta import is_table
    from lake_schema.duck import connect
    from trainer.analysis import LATEST_EVALUATIONS

    if not (lake.exists("") and is_table(lake, "evaluations")):  # a new lake: nothing done
        return set()
    latest = connect(lake).sql(LATEST_EVALUATIONS).pl()
    if latest.is_empty():
        return set()
    if episodes is not None:
        latest = latest.filter(pl.col("episodes") == episodes)
    latest = latest.with_columns(pl.col("config").str.json_path_match("$.trained_since")
                                 .alias("since"))
    done = set()
    for (model,), rows in latest.group_by("model"):
        info = models_root(models_dir) / model / "model.json"
        since = json.loads(info.read_text()).get("trained_since") if info.exists() else None
        if since is None:  # no model.json here, or one without its training date
            continue
        if {"train", "test"} <= set(rows.filter(pl.col("since") == since)["split"]):
            done.add(model)
    return done


def mean_normalised(results) -> float:
    """Mean normalised return over the evaluated tasks."""
    return sum(r.normalised_return for r in results) / len(results)
