"""Command line: train and evaluate offline models without Dagster.

    python -m trainer.offline train --lake lake --env lbf --split demo-train \\
        --algorithm oryx --set num_updates=2000 embed_dim=64 --models models
    python -m trainer.offline evaluate --lake lake models/<config id> --split demo-test \\
        --episodes 320 --checkpoint best

`train` prints the run directory (`<models>/<config id>`; with `--seeds 0 1 2`, one per seed,
the seeds trained together in one program); `--set k=v` overrides any
OfflineConfig field (values parsed as JSON when they parse, else kept as strings). Bad input
(an unknown task or flag value, a root that holds no lake, a folder that is no model) is one
line on stderr, exit status 2 for arguments and 1 for the lake or files, never a traceback;
the arguments and the lake are checked before JAX is imported.

Data parallel over several processes (`trainer.distributed`): `--processes N` starts N local
processes of the same command; on a cluster, start the command once per host with
`--coordinator HOST:PORT --num-processes N --process-id I` (process 0 listens on HOST:PORT).
Each process reads its slice of every global batch; process 0 writes the run's files.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from lake_schema.storage import Lake
from trainer import distributed
from trainer.cli_overrides import HelpFormatter, one_line_errors, parse_overrides
from trainer.data.selection import QUALITY_SUBSETS, DataSelection
from trainer.offline.config import ALGORITHMS, PROFILES, EvalConfig, OfflineConfig
from trainer.offline.runs import MODELS_ENV, models_root

LAKE_HELP = "lake root (default: $SABLE_LAKE, else ./lake)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer.offline", description=__doc__,
                                formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train (or resume) a model", formatter_class=HelpFormatter)
    t.add_argument("--lake", default=None, help=LAKE_HELP)
    t.add_argument("--env", default="lbf", help="the environment of every task")
    t.add_argument("--split", default=None, help="a split of the env (default: demo-train, "
                                                  "unless --tasks names the tasks)")
    t.add_argument("--tasks", nargs="+", default=None, help="env/scenario or scenario names")
    t.add_argument("--quality", choices=QUALITY_SUBSETS, default="all",
                   help="which episodes, by the lake's quality tags")
    t.add_argument("--low-fraction", type=float, default=None, metavar="F",
                   help="with --quality high+low: the share of low episodes kept, in (0, 1]")
    t.add_argument("--algorithm", choices=ALGORITHMS, default="oryx",
                   help="bc (BC-Sable), cql (CQL-Sable) or oryx")
    t.add_argument("--profile", choices=list(PROFILES), default="demo",
                   help="the OfflineConfig preset")
    t.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override OfflineConfig fields (JSON values, else strings)")
    t.add_argument("--models", default=None,
                   help=f"where models live (default: ${MODELS_ENV}, else ./models)")
    t.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S",
                   help="train these seeds in one program, a model each "
                        "(default: the config's seed alone)")
    t.add_argument("--processes", type=int, default=None, metavar="N",
                   help="start N local processes of this command, one data-parallel run")
    t.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="join a multi-process run whose process 0 listens here")
    t.add_argument("--num-processes", type=int, default=None, metavar="N",
                   help="processes in the run (with --coordinator)")
    t.add_argument("--process-id", type=int, default=None, metavar="I",
                   help="this process's index, 0..N-1 (with --coordinator)")
    e = sub.add_parser("evaluate", help="evaluate a trained model", formatter_class=HelpFormatter)
    e.add_argument("run_dir", help="the model's run directory, <models>/<config id>")
    e.add_argument("--lake", default=None, help=LAKE_HELP)
    e.add_argument("--split", default=None, help="a split of the model's env")
    e.add_argument("--tasks", nargs="+", default=None, help="env/scenario names")
    defaults = EvalConfig()  # the paper's protocol: the best checkpoint, 320 episodes
    e.add_argument("--episodes", type=int, default=defaults.episodes, help="episodes per task")
    e.add_argument("--checkpoint", default=defaults.checkpoint,
                   help="best, latest or an update number")
    e.add_argument("--greedy", action="store_true", help="argmax actions")
    e.add_argument("--seed", type=int, default=0, help="the evaluation seed")
    e.add_argument("--no-write", action="store_true",
                   help="print the results only, write no evaluations row")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv)
    if args.command == "train":
        try:
            distributed.check_args(args.coordinator, args.num_processes, args.process_id)
            if args.processes is not None and args.coordinator is not None:
                raise ValueError("--processes starts the processes itself: give it without "
                                 "--coordinator/--num-processes/--process-id")
            if args.processes is not None and args.processes < 1:
                raise ValueError(f"--processes {args.processes} must be >= 1")
        except ValueError as e:
            p.error(str(e))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)
    run = _train if args.command == "train" else _evaluate
    return one_line_errors(p.prog, lambda: run(args, argv))


def _train(args: argparse.Namespace, argv: list[str]) -> int:
    """Every check first (selection, config, seeds, lake: JAX-free), then the processes, then
    JAX."""
    tasks = tuple(args.tasks) if args.tasks else None
    split = None if tasks else (args.split or "demo-train")
    selection = DataSelection(env=args.env, split=split, tasks=tasks, quality=args.quality,
                              low_fraction=args.low_fraction)
    config = OfflineConfig.profile(args.profile, env=args.env, algorithm=args.algorithm,
                                   **parse_overrides(args.set, OfflineConfig))
    selection = dataclasses.replace(selection, seed=config.seed)  # as the assets do
    seeds = args.seeds or [config.seed]
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise ValueError(f"--seeds: seed {twice[0]} is given twice (one model per seed)")
    lake = Lake(args.lake)
    lake.check_holds_lake()
    if args.processes is not None:
        return distributed.launch_local(
            distributed.worker_command("trainer.offline", _without_processes(argv)),
            args.processes)
    if args.coordinator is not None:
        distributed.join(args.coordinator, args.num_processes, args.process_id)
    from trainer.offline.training import train_seeds  # JAX: only once the input is good

    results = train_seeds(lake, selection, config, seeds, models_root(args.models))
    if distributed.is_primary():
        print("\n".join(str(r.run_dir) for r in results))
    return 0


def _evaluate(args: argparse.Namespace, argv: list[str]) -> int:
    checkpoint = int(args.checkpoint) if args.checkpoint.isdigit() else args.checkpoint
    eval_config = EvalConfig(episodes=args.episodes, seed=args.seed, greedy=args.greedy,
                             checkpoint=checkpoint)
    lake = Lake(args.lake)
    lake.check_holds_lake()
    from trainer.offline.evaluation import evaluate  # JAX: only once the input is good

    results = evaluate(lake, args.run_dir, tasks=args.tasks, split=args.split,
                       eval_config=eval_config, write=not args.no_write)
    for r in results:
        print(f"{r.task}\t{r.split}\treturn {r.mean_return:.4f} +- {r.std_return:.4f}\t"
              f"normalised {r.normalised_return:.4f}")
    return 0


def _without_processes(argv: list[str]) -> list[str]:
    """argv less `--processes N` (each local process is one of the N)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--processes":
            skip = True
        elif not a.startswith("--processes="):
            out.append(a)
    return out


if __name__ == "__main__":
    sys.exit(main())
