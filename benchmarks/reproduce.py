"""Reproduce the paper's experiments at a named scale, through the same Dagster assets as the UI.

    .venv/bin/python benchmarks/reproduce.py --preset cpu-small
    .venv/bin/python benchmarks/reproduce.py --preset cpu-small --envs lbf \\
        --experiments ablations --seeds 0 1 --set num_updates=100

1. `online_sable` for every task the preset needs (its train and held-out splits), with the
   preset's online config for its env; a task dataset already complete in the lake with that
   config is reused as it is (another config replaces it);
2. the `reproduce` job's `reproduction`, once per env: every model of the preset
   (`trainer.experiments`), trained or found finished, evaluated with the paper's protocol;
   then `report`, once.
The runs (one per task dataset, one per env) go side by side, one per CPU core
(`pipelines.launch`; `--workers N` to change); an env's models start once its datasets are in
the lake, beside the other env's datasets.
A second launch reuses finished datasets, models and evaluations. The runs land in the
Dagster instance of $DAGSTER_HOME (the Makefile's `./.dagster`), so the UI shows them, and
the results in the lake's `evaluations`; `benchmarks/REPRODUCTION.md` is written from them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # this checkout's packages
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def main(argv: list[str] | None = None) -> int:
    import dagster as dg
    import polars as pl

    from pipelines.definitions import defs
    from pipelines.launch import Launch, run_parallel
    from trainer.cli_overrides import parse_overrides
    from trainer.experiments import dataset_tasks
    from trainer.offline.config import OfflineConfig

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--envs", nargs="+", default=[])
    p.add_argument("--experiments", nargs="+", default=[])
    p.add_argument("--seeds", nargs="+", type=int, default=[])
    p.add_argument("--eval-episodes", type=int, default=None)
    p.add_argument("--workers", type=int, default=None,
                   help="runs side by side, each in its own process (default: one per core)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="OfflineConfig overrides for every model (a scale-down)")
    args = p.parse_args(argv)
    config = {"preset": args.preset, "envs": args.envs, "experiments": args.experiments,
              "seeds": args.seeds, "eval_episodes": args.eval_episodes,
              "offline": parse_overrides(args.set, OfflineConfig)}
    from pipelines.assets.reproduce import ReproduceConfig

    try:
        preset = ReproduceConfig(**config).narrowed()
    except ValueError as e:
        p.error(str(e).splitlines()[0])
    started = time.time()
    instance = dg.DagsterInstance.get()
    lake = defs.resources["lake"].lake()
    datasets = [Launch(f"online Sable on {task} -> lake", "build_datasets",
                       {**LOGS, "ops": {"online_sable": {
                           "config": preset.online_config(env, preset.held_out(task))}}},
                       partition_key=task,
                       tags={"sable-lake/preset": preset.name, "sable-lake/env": env})
                for task in dataset_tasks(preset) for env in [task.split("/", 1)[0]]]
    # each env's models in a run of their own, once that env's datasets are in the lake
    # (beside the other env's datasets); then one report of them all
    per_env = [Launch(f"the {preset.name} models of {env}", "reproduce",
                      {**LOGS, "ops": {"reproduction": {"config": {**config, "envs": [env]}}}},
                      asset_selection=("reproduction",),
                      after=tuple(d.label for d in datasets if d.tags["sable-lake/env"] == env))
               for env in preset.envs]
    failed, done = [], []
    for outcome in run_parallel([*datasets, *per_env], instance, args.workers, started):
        if not outcome.success:
            failed.append(outcome.failure)
        elif outcome.launch.job == "reproduce":
            done.append(outcome)
        elif outcome.metadata["online_sable"]["reused"]:  # a complete run of this config
            print(f"[{time.time() - started:6.0f}s] {outcome.launch.partition_key}: dataset "
                  "complete, reused", flush=True)
    if failed:
        print(f"reproduce: failed: {'; '.join(failed)} (see the log above)", file=sys.stderr)
        return 1
    report = defs.resolve_job_def("reproduce").execute_in_process(
        instance=instance, raise_on_error=False, run_config=LOGS,
        asset_selection=[dg.AssetKey("report")])
    if not report.success:
        print("reproduce: the report failed; see the log above", file=sys.stderr)
        return 1
    meta = [o.metadata["reproduction"] for o in done]
    print(f"[{time.time() - started:6.0f}s] done: {sum(m['models'] for m in meta)} models, "
          f"{sum(m['task_evaluations_run'] for m in meta)} task evaluations run this launch; "
          f"the report: {lake.url('reports/report.md')}")
    from lake_schema.duck import connect
    from pipelines.assets.report import gain_line
    from trainer.analysis import latest_evaluations, task_scaling_gain

    gain = task_scaling_gain(latest_evaluations(connect(lake)))
    if not gain.is_empty():
        print(f"multi-task gain on held-out tasks ({preset.notes or 'the paper scale'}):")
        for row in gain.filter(pl.col("env").is_in(preset.envs)).iter_rows(named=True):
            by_k = f"  [held-out means by k: {row['test_by_k']}]" if row["test_by_k"] else ""
            print(f"  {gain_line(row)[2:]}{by_k}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
