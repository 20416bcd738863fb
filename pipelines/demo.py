"""`make demo`: the main job, on the embedded defaults (./lake, ./.dagster, CPU).

Today it materialises the random-policy rollouts of the lbf demo tasks through the local
Dagster instance and summarises the lake with DuckDB; later issues grow it into the whole
chain (online Sable -> lake -> loader -> offline training -> zero-shot evaluation -> report).
"""

from __future__ import annotations

import os
import sys

import dagster as dg

from lake_schema.catalogue import split_tasks
from lake_schema.cli import main as lake_cli
from pipelines.definitions import defs

ENV = "lbf"
SUMMARY_SQL = (
    "SELECT task, run, quality, count(*) AS episodes, sum(length) AS steps, "
    "round(avg(return), 3) AS mean_return FROM episodes GROUP BY ALL ORDER BY ALL"
)


def run_demo() -> int:
    instance = dg.DagsterInstance.get()
    lake = defs.resources["lake"].lake()
    tasks = split_tasks(ENV, "demo-train") + split_tasks(ENV, "demo-test")
    job = defs.resolve_implicit_global_asset_job_def()
    for task in tasks:
        print(f"materialising random_rollouts[{task.name}] ...", flush=True)
        result = job.execute_in_process(
            instance=instance, partition_key=task.name,
            asset_selection=[dg.AssetKey("random_rollouts")],
        )
        if not result.success:
            print(f"demo failed on {task.name}", file=sys.stderr)
            return 1
    print(f"\nlake: {lake.root}\n")
    lake_cli(["--root", lake.root, "query", SUMMARY_SQL])
    print(f"\nDagster instance: {os.environ.get('DAGSTER_HOME', '(DAGSTER_HOME unset)')}")
    print(f'try:  .venv/bin/python -m lake_schema query "{SUMMARY_SQL}"')
    print("UI:   make ui   (dagster dev -m pipelines.definitions -h 127.0.0.1)")
    return 0


if __name__ == "__main__":
    sys.exit(run_demo())
