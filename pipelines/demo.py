"""`make demo`: the main job, end to end, on the embedded defaults (./lake, ./.dagster, CPU).

online Sable on the lbf demo split's train and test tasks -> lake (checked by
`dataset_status`) -> offline BC-Sable and Oryx on the train tasks, and BC-Sable on the first
train task alone (the single-task baseline) -> zero-shot evaluation on the held-out tasks ->
the report, whose multi-task / single-task ratio on held-out tasks is the paper's headline in
miniature. The demo is one experiment submitted to the Dagster instance's run queue
(`pipelines.launch`): one backfill whose runs (one per task dataset, training tasks first;
one per model with its evaluations, the held-out one in a run of its own when the held-out
datasets land later; the report) the daemon starts as their inputs land,
`max_concurrent_runs` at a time (dagster.yaml), so the whole run is in the UI afterwards
(`make ui`) as the UI would have launched it.
"""

from __future__ import annotations

import os
import sys
import time

from lake_schema.catalogue import held_out_split, split_tasks
from lake_schema.cli import main as lake_cli
from lake_schema.duck import connect
from pipelines.assets.offline import OfflineModelConfig
from pipelines.assets.report import gain_line
from pipelines.definitions import defs
from pipelines.experiments import Experiment
from pipelines.launch import Finished, queue_daemon, submit, wait
from pipelines.plots import REPORTS_DIR
from trainer.analysis import latest_evaluations, task_scaling_gain
from trainer.offline.config import config_id
from trainer.offline.runs import evaluated_models

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
SUMMARY_SQL = (
    "SELECT task, split, json_extract_string(config, '$.name') AS name, model, "
    "round(mean_return, 3) AS mean_return, round(normalised_return, 3) AS normalised "
    "FROM evaluations ORDER BY split DESC, task, name"
)


def demo_experiment(online: dict = ONLINE, offline: dict = OFFLINE, evaluation: dict = EVAL,
                    models: tuple[tuple[str, dict], ...] = MODELS) -> Experiment:
    """The demo's datasets (the split's train and held-out tasks) and models, each model's
    config validated."""
    tasks = [*split_tasks(ENV, offline["split"]),
             *split_tasks(ENV, held_out_split(offline["split"]))]
    built = tuple(OfflineModelConfig(**{**offline, **override, "algorithm": algorithm}).build()
                  for algorithm, override in models)
    return Experiment("demo", tuple(t.name for t in tasks), built, ops={
        "online_sable": online, "offline_eval_train": evaluation,
        "offline_eval_test": evaluation})


def run_demo(instance=None, online: dict = ONLINE, offline: dict = OFFLINE,
             evaluation: dict = EVAL, models: tuple[tuple[str, dict], ...] = MODELS) -> int:
    """The chain on the lbf demo split, as one experiment through the persistent
    `instance`'s run queue (its daemon started for the demo unless one runs); the arguments
    shrink it for tests."""
    import dagster as dg

    started = time.time()
    instance = instance or dg.DagsterInstance.get()
    lake = defs.resources["lake"].lake()
    experiment = demo_experiment(online, offline, evaluation, models)

    def progress(run: Finished) -> None:
        print(f"[{time.time() - started:5.0f}s] {run.line()}", flush=True)

    # A second demo reuses the datasets (online_sable finds them complete) and does not run
    # the models the lake has evaluations of again.
    done = evaluated_models(lake, episodes=evaluation.get("episodes")) & {
        config_id(c, s) for c, s in experiment.models}
    # Submitted first: a daemon started after it finds the backfill on its first pass.
    backfill = submit(instance, experiment, skip_models=done)
    print(f"[{time.time() - started:5.0f}s] submitted: {len(experiment.datasets)} task "
          f"datasets, {len(experiment.models) - len(done)} models ({len(done)} evaluated "
          f"before), the report (backfill {backfill}; `make ui` follows it)", flush=True)
    with queue_daemon(instance):
        finished = wait(instance, backfill, progress)
    if failed := [f.line() for f in finished if not f.success]:
        return _failed("; ".join(failed))
    if not any(f.what == "report" for f in finished):
        return _failed("the report (it never ran: see the backfill in the UI)")

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


def _failed(what: str) -> int:
    print(f"demo failed at {what}: see the log above", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(run_demo())
