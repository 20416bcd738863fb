"""`make demo`: the main job, end to end, on the embedded defaults (./lake, ./.dagster, CPU).

online Sable on the lbf demo split's train and test tasks -> lake (checked by
`dataset_status`) -> loader cache ->
offline BC-Sable and Oryx on the train tasks -> zero-shot evaluation on the held-out tasks ->
the report. Every step is a real materialisation in the local Dagster instance, so the whole
run is visible in the UI afterwards (`make ui`).
"""

from __future__ import annotations

import os
import sys
import time
import warnings

from lake_schema.catalogue import split_tasks
from lake_schema.cli import main as lake_cli
from pipelines.assets.offline import TEST_SPLIT_OF
from pipelines.assets.report import REPORT_DIR
from pipelines.definitions import defs

ENV = "lbf"
ALGORITHMS = ("bc", "oryx")
# The `demo` profiles (trainer.online.config.PROFILES, trainer.offline.config.PROFILES): small
# budgets, the whole chain in minutes on 2 CPU cores.
ONLINE = {"profile": "demo"}
OFFLINE = {"env": ENV, "split": "demo-train", "profile": "demo"}
EVAL = {"episodes": 16}
LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
SUMMARY_SQL = (
    "SELECT task, split, model, algorithm, round(mean_return, 3) AS mean_return, "
    "round(normalised_return, 3) AS normalised FROM evaluations "
    "ORDER BY split DESC, task, algorithm"
)


def run_demo(instance=None, online: dict = ONLINE, offline: dict = OFFLINE,
             evaluation: dict = EVAL, algorithms: tuple[str, ...] = ALGORITHMS) -> int:
    """The chain on the lbf demo split; the arguments shrink it for tests."""
    import dagster as dg

    warnings.filterwarnings("ignore", "scatter inputs have incompatible types", FutureWarning)
    started = time.time()
    instance = instance or dg.DagsterInstance.get()
    lake = defs.resources["lake"].lake()
    tasks = split_tasks(ENV, offline["split"]) + split_tasks(ENV, TEST_SPLIT_OF[offline["split"]])

    datasets = defs.resolve_job_def("build_datasets")
    for task in tasks:
        print(f"[{time.time() - started:5.0f}s] online Sable on {task.name} -> lake", flush=True)
        result = datasets.execute_in_process(
            instance=instance, partition_key=task.name,
            run_config={**LOGS, "ops": {"online_sable": {"config": online}}},
        )
        if not result.success:
            return _failed(f"online_sable[{task.name}]")
    status = defs.resolve_job_def("check_datasets").execute_in_process(
        instance=instance, run_config=LOGS)
    if not status.success:
        return _failed("check_datasets")
    meta = status.asset_materializations_for_node("dataset_status")[0].metadata
    print(f"[{time.time() - started:5.0f}s] dataset_status: {meta['tasks'].value} task "
          f"datasets, incomplete: {meta['incomplete'].value}", flush=True)

    train_eval = defs.resolve_job_def("train_and_evaluate")
    for algorithm in algorithms:
        print(f"[{time.time() - started:5.0f}s] offline {algorithm} on {offline['split']}, "
              "evaluated on its train and held-out tasks", flush=True)
        result = train_eval.execute_in_process(
            instance=instance,
            run_config={**LOGS, "ops": {
                "offline_model": {"config": {**offline, "algorithm": algorithm}},
                "offline_eval_train": {"config": evaluation},
                "offline_eval_test": {"config": evaluation},
            }},
        )
        if not result.success:
            return _failed(f"train_and_evaluate ({algorithm})")

    print(f"\n[{time.time() - started:5.0f}s] done.\n")
    lake_cli(["--root", lake.root, "query", SUMMARY_SQL])
    print(f"\nlake:             {lake.root}")
    print(f"report:           {lake.url(REPORT_DIR)}/report.md")
    print(f"Dagster instance: {os.environ.get('DAGSTER_HOME', '(DAGSTER_HOME unset)')}")
    print(f'try:              .venv/bin/python -m lake_schema query "{SUMMARY_SQL}"')
    print("UI:               make ui   (dagster dev -m pipelines.definitions -h 127.0.0.1)")
    return 0


def _failed(what: str) -> int:
    print(f"demo failed at {what}: see the log above", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(run_demo())
