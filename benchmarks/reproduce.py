"""Reproduce the paper's experiments at a named scale, through the same Dagster assets as the UI.

    .venv/bin/python benchmarks/reproduce.py --preset cpu-small
    .venv/bin/python benchmarks/reproduce.py --preset cpu-small --envs lbf \\
        --experiments ablations --seeds 0 1 --set num_updates=100

One experiment submitted to the run queue of the Dagster instance of $DAGSTER_HOME (the
Makefile's `./.dagster`; `pipelines.launch`), as the UI's `launch_experiment` job submits it:
`online_sable` for every task the preset needs (its train and held-out splits, each with the
preset's online config for its env; a task dataset already complete in the lake with that
config is reused as it is), then every model of the preset (`trainer.experiments`), each a
partition trained and evaluated with the paper's protocol in a run of its own, then `report`.
The daemon starts each run once what it reads is in the lake, `max_concurrent_runs` at a
time (dagster.yaml); it is started for the launch unless one runs (`make ui`). A second
launch reuses finished datasets and does not run again the models the lake has
evaluations of. `benchmarks/REPRODUCTION.md` is written from the lake's `evaluations`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # this checkout's packages
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    import dagster as dg
    import polars as pl

    from trainer.cli_overrides import parse_overrides
    from trainer.offline.config import OfflineConfig

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--envs", nargs="+", default=[])
    p.add_argument("--experiments", nargs="+", default=[])
    p.add_argument("--seeds", nargs="+", type=int, default=[])
    p.add_argument("--eval-episodes", type=int, default=None)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="OfflineConfig overrides for every model (a scale-down)")
    args = p.parse_args(argv)
    from pipelines.experiments import ReproduceConfig

    try:
        experiment = ReproduceConfig(
            preset=args.preset, envs=args.envs, experiments=args.experiments,
            seeds=args.seeds, eval_episodes=args.eval_episodes,
            offline=parse_overrides(args.set, OfflineConfig)).experiment()
    except ValueError as e:
        p.error(str(e).splitlines()[0])
    from lake_schema.duck import connect
    from pipelines.assets.report import gain_line
    from pipelines.definitions import defs
    from pipelines.launch import queue_daemon, submit, wait
    from trainer.analysis import latest_evaluations, task_scaling_gain
    from trainer.offline.runs import evaluated_models

    started = time.time()
    instance = dg.DagsterInstance.get()
    lake = defs.resources["lake"].lake()
    done = evaluated_models(lake, experiment.ops["offline_eval_test"]["episodes"])
    backfill = submit(instance, experiment, skip_models=done)
    print(f"[{time.time() - started:6.0f}s] {experiment.name}: {len(experiment.datasets)} "
          f"task datasets, {len(experiment.models)} models ({len(done)} already evaluated), "
          f"the report: backfill {backfill}", flush=True)
    with queue_daemon(instance):
        finished = wait(instance, backfill, lambda run: print(
            f"[{time.time() - started:6.0f}s] {run.line()}", flush=True))
    if failed := [f.line() for f in finished if not f.success]:
        print(f"reproduce: failed: {'; '.join(failed)}", file=sys.stderr)
        return 1
    print(f"[{time.time() - started:6.0f}s] done; the report: {lake.url('reports/report.md')}")
    gain = task_scaling_gain(latest_evaluations(connect(lake)))
    envs = {t.split("/", 1)[0] for t in experiment.datasets}
    if not gain.is_empty():
        print("multi-task gain on held-out tasks:")
        for row in gain.filter(pl.col("env").is_in(sorted(envs))).iter_rows(named=True):
            by_k = f"  [held-out means by k: {row['test_by_k']}]" if row["test_by_k"] else ""
            print(f"  {gain_line(row)[2:]}{by_k}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
