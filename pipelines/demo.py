"""`make demo`: the main job, end to end, on the embedded defaults (./lake, ./.dagster, CPU).

online Sable on the lbf demo split's train and test tasks -> lake (checked by
`dataset_status`) -> loader cache ->
offline BC-Sable and Oryx on the train tasks, and BC-Sable on the first train task alone (the
single-task baseline) -> zero-shot evaluation on the held-out tasks -> the report, whose
multi-task / single-task ratio on held-out tasks is the paper's headline in miniature. Every
step is a real materialisation in the local Dagster instance, so the whole run is visible in
the UI afterwards (`make ui`). The runs go side by side, one per CPU core, each as soon as
what it reads exists (`pipelines.launch`): the models start while the held-out tasks'
datasets are still being recorded.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable

from lake_schema.catalogue import held_out_split, split_tasks
from lake_schema.cli import main as lake_cli
from lake_schema.duck import connect
from pipelines.assets.offline import OfflineModelConfig
from pipelines.assets.report import gain_line
from pipelines.definitions import defs
from pipelines.launch import Launch, Outcome, run_parallel
from pipelines.plots import REPORTS_DIR
from trainer.analysis import latest_evaluations, task_scaling_gain
from trainer.offline.config import config_id

ENV = "lbf"
# (algorithm, selection override): the multi-task models on the whole train split, then the
# single-task baseline (same budget) on its first task.
MODELS: tuple[tuple[str, dict], ...] = (("bc", {}), ("oryx", {}), ("bc", {"first_k": 1}))
# The `demo` profiles (trainer.online.config.PROFILES, trainer.offline.config.PROFILES), with
# a third of the profile's online budget per task: on a new 2-core machine, where nothing is
# compiled yet, the five tasks' online runs are most of the demo's time (benchmarks/
# RESULTS.md), and 100k steps already separate the datasets' quality from random.
ONLINE = {"profile": "demo", "total_env_steps": 100_000}
OFFLINE = {"env": ENV, "split": "demo-train", "profile": "demo"}
# 32 final episodes per task (the paper: 320), as many as the periodic evaluation on the
# training tasks that picks the best checkpoint: one compiled evaluation program for both.
EVAL = {"episodes": 32}
LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
# Every demo run's tag (a model's run adds what it trains: `offline.model_tags`), so the UI's
# Runs page filters the demo's runs apart.
TAGS = {"sable-lake/experiment": "demo"}
SUMMARY_SQL = (
    "SELECT task, split, json_extract_string(config, '$.name') AS name, model, "
    "round(mean_return, 3) AS mean_return, round(normalised_return, 3) AS normalised "
    "FROM evaluations ORDER BY split DESC, task, name"
)


def run_demo(instance=None, online: dict = ONLINE, offline: dict = OFFLINE,
             evaluation: dict = EVAL, models: tuple[tuple[str, dict], ...] = MODELS,
             workers: int | None = None) -> int:
    """The chain on the lbf demo split; the arguments shrink it for tests. Its runs go
    `workers` at a time, each in its own process (`pipelines.launch`; default one per CPU
    core), into the persistent `instance`, each as soon as what it reads exists: a model
    once the train tasks' datasets are in the lake, its held-out evaluation once the model
    and the held-out tasks' references are."""
    import dagster as dg

    started = time.time()
    instance = instance or dg.DagsterInstance.get()
    lake = defs.resources["lake"].lake()
    train = split_tasks(ENV, offline["split"])
    test = split_tasks(ENV, held_out_split(offline["split"]))

    datasets = [Launch(f"online Sable on {task.name} -> lake", "build_datasets",
                       {**LOGS, "ops": {"online_sable": {"config": online}}},
                       partition_key=task.name, tags=TAGS) for task in train + test]
    train_data = tuple(d.label for d in datasets[:len(train)])
    all_data = tuple(d.label for d in datasets)
    launches = [*datasets, Launch("dataset status", "check_datasets", LOGS, tags=TAGS,
                                  after=all_data)]
    for algorithm, override in models:
        knobs = {**offline, **override, "algorithm": algorithm}
        cid = config_id(*OfflineModelConfig(**knobs).build())
        trained_on = (f"the first {override['first_k']} task(s) of {offline['split']}"
                      if "first_k" in override else offline["split"])
        label = f"offline {algorithm} on {trained_on} ({cid}), evaluated on its train tasks"
        launches += [
            Launch(label, "train_and_evaluate", {**LOGS, "ops": {
                "offline_model": {"config": knobs},
                "offline_eval_train": {"config": evaluation}}},
                asset_selection=("offline_model", "offline_eval_train"), tags=TAGS,
                after=train_data),
            Launch(f"{cid} on the held-out tasks", "train_and_evaluate", {**LOGS, "ops": {
                "offline_eval_test": {"config": {**evaluation, "model": cid}}}},
                asset_selection=("offline_eval_test",),
                tags={**TAGS, "sable-lake/model": cid}, after=(label, *all_data)),
        ]
    outcomes = []
    for outcome in run_parallel(launches, instance, workers, started):
        outcomes.append(outcome)
        if outcome.launch.label == "dataset status" and outcome.success:
            meta = outcome.metadata["dataset_status"]
            print(f"[{time.time() - started:5.0f}s] dataset_status: {meta['tasks']} task "
                  f"datasets, incomplete: {meta['incomplete']}", flush=True)
    if failed := _failures(outcomes):
        return _failed(failed)
    report = defs.resolve_job_def("train_and_evaluate").execute_in_process(  # every model's
        instance=instance, run_config=LOGS, asset_selection=[dg.AssetKey("report")])
    if not report.success:
        return _failed("report")

    print(f"\n[{time.time() - started:5.0f}s] done.\n")
    lake_cli(["--lake", lake.root, "query", SUMMARY_SQL])
    gain = task_scaling_gain(latest_evaluations(connect(lake)))
    if not gain.is_empty():
        print(f"\nmulti-task over single-task on the held-out tasks, at the demo's scale ("
              f"{demo_scale(online, offline, evaluation)}):")
        for row in gain.iter_rows(named=True):
            by_k = f"  [held-out means by k: {row['test_by_k']}]" if row["test_by_k"] else ""
            print(f"  {gain_line(row)[2:]}{by_k}")
        print("  One seed at this scale is a smoke test of the chain, not a finding: "
              "`benchmarks/reproduce.py --preset lbf-full` is the headline's test "
              "(benchmarks/REPRODUCTION.md).")
    print(f"\nlake:             {lake.root}")
    print(f"report:           {lake.url(REPORTS_DIR)}/report.md")
    print(f"Dagster instance: {os.environ.get('DAGSTER_HOME', '(DAGSTER_HOME unset)')}")
    print(f'try:              .venv/bin/python -m lake_schema query "{SUMMARY_SQL}"')
    print("UI:               make ui   (dagster dev on 127.0.0.1:3000, the plots on :3001)")
    return 0


def demo_scale(online: dict, offline: dict, evaluation: dict) -> str:
    """What the printed ratio is measured at, from the configs the demo ran (the paper: 5
    training tasks, 3 seeds, ~4M steps of near-expert data per task, embed 512, 60k updates,
    320 episodes)."""
    from trainer.offline.config import OfflineConfig
    from trainer.online.config import OnlineConfig

    on = {k: v for k, v in online.items() if k != "profile"}
    off = {k: v for k, v in offline.items() if k not in ("profile", "split")}
    online_config = OnlineConfig.profile(online.get("profile", "demo"), env=ENV, **on)
    offline_config = OfflineConfig.profile(offline.get("profile", "demo"), **off)
    tasks = len(split_tasks(ENV, offline["split"]))
    return (f"{ENV} {offline['split']}: {tasks} training tasks against the first alone, 1 "
            f"seed, {online_config.total_env_steps:,} online env steps per task, embed "
            f"{offline_config.embed_dim}, {offline_config.num_updates} updates, "
            f"{evaluation.get('episodes', 320)} episodes per task")


def _failures(outcomes: Iterable[Outcome]) -> str:
    """"label: error" of each failed run ("" when none failed)."""
    return "; ".join(o.failure for o in outcomes if not o.success)


def _failed(what: str) -> int:
    print(f"demo failed at {what}: see the log above", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(run_demo())
