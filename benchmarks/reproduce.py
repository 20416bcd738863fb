"""Reproduce the paper's experiments at a named scale, through the same Dagster assets as the UI.

    .venv/bin/python benchmarks/reproduce.py --preset cpu-small
    .venv/bin/python benchmarks/reproduce.py --preset cpu-small --envs lbf \\
        --experiments ablations --seeds 0 1 --set num_updates=100

1. `online_sable` for every task the preset needs (its train and held-out splits), with the
   preset's online config for its env; a task dataset already complete in the lake with that
   config is reused as it is (another config replaces it);
2. the `reproduce` job: every model of the preset (`trainer.experiments`), trained or found
   finished, evaluated with the paper's protocol, then `report`.
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

    from pipelines.definitions import defs
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
    datasets = defs.resolve_job_def("build_datasets")
    for task in dataset_tasks(preset):
        print(f"[{time.time() - started:6.0f}s] online Sable on {task} -> lake", flush=True)
        env = task.split("/", 1)[0]
        result = datasets.execute_in_process(  # a completed run of this config: reused as is
            instance=instance, partition_key=task, raise_on_error=False,
            run_config={**LOGS, "ops": {"online_sable": {"config": preset.online_config(env)}}},
            tags={"sable-lake/preset": preset.name, "sable-lake/env": env})
        if not result.success:
            print(f"reproduce: online_sable[{task}] failed; see the log above", file=sys.stderr)
            return 1
        if result.asset_materializations_for_node("online_sable")[0].metadata["reused"].value:
            print(f"[{time.time() - started:6.0f}s] {task}: dataset complete, reused", flush=True)
    print(f"[{time.time() - started:6.0f}s] the {preset.name} models", flush=True)
    result = defs.resolve_job_def("reproduce").execute_in_process(
        instance=instance, raise_on_error=False,
        run_config={**LOGS, "ops": {"reproduction": {"config": config}}})
    if not result.success:
        print("reproduce: the reproduce job failed; see the log above", file=sys.stderr)
        return 1
    meta = result.asset_materializations_for_node("reproduction")[0].metadata
    print(f"[{time.time() - started:6.0f}s] done: {meta['models'].value} models, "
          f"{meta['task_evaluations_run'].value} task evaluations run this launch; "
          f"the report: {lake.url('reports/report.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
