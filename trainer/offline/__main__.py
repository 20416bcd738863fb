"""Command line: train and evaluate offline models without Dagster.

    python -m trainer.offline train --lake lake --env lbf --split demo-train \\
        --algorithm oryx --set num_updates=2000 embed_dim=64 --models models
    python -m trainer.offline evaluate --lake lake models/<config id> --split demo-test \\
        --episodes 320 --checkpoint best

`train` prints the run directory (`<models>/<config id>`; with `--seeds 0 1 2`, one per seed,
the seeds trained together in one program); `--set k=v` overrides any
OfflineConfig field (values parsed as JSON when they parse, else kept as strings). Bad input
(an unknown task or flag value, a missing lake root, a folder that is no model) is one line
on stderr, exit status 2 for arguments and 1 for the lake or files, never a traceback.

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
from trainer.cli_overrides import one_line_errors, parse_overrides
from trainer.offline.config import EvalConfig
from trainer.offline.runs import MODELS_ENV, models_root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.offline", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train (or resume) a model")
    t.add_argument("--lake", required=True)
    t.add_argument("--env", default="lbf")
    t.add_argument("--split", default=None)
    t.add_argument("--tasks", nargs="+", default=None)
    t.add_argument("--quality", default="all")
    t.add_argument("--algorithm", default="oryx")
    t.add_argument("--profile", default="demo")
    t.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    t.add_argument("--models", default=None,
                   help=f"where models live (default ${MODELS_ENV}, else ./models)")
    t.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S",
                   help="train these seeds in one program, a model each "
                        "(default: the config's seed alone)")
    t.add_argument("--processes", type=int, default=None, metavar="N",
                   help="start N local processes of this command, one data-parallel run")
    t.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="join a multi-process run whose process 0 listens here")
    t.add_argument("--num-processes", type=int, default=None, metavar="N")
    t.add_argument("--process-id", type=int, default=None, metavar="I")
    e = sub.add_parser("evaluate", help="evaluate a trained model")
    e.add_argument("run_dir")
    e.add_argument("--lake", required=True)
    e.add_argument("--split", default=None)
    e.add_argument("--tasks", nargs="+", default=None)
    defaults = EvalConfig()  # the paper's protocol: the best checkpoint, 320 episodes
    e.add_argument("--episodes", type=int, default=defaults.episodes)
    e.add_argument("--checkpoint", default=defaults.checkpoint,
                   help="best (default), latest or an update number")
    e.add_argument("--greedy", action="store_true")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--no-write", action="store_true")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv)
    if args.command == "train":
        from trainer import distributed

        try:
            distributed.check_args(args.coordinator, args.num_processes, args.process_id)
            if args.processes is not None and args.coordinator is not None:
                raise ValueError("--processes starts the processes itself: give it without "
                                 "--coordinator/--num-processes/--process-id")
            if args.processes is not None:
                return distributed.launch_local(
                    distributed.worker_command("trainer.offline", _without_processes(argv)),
                    args.processes)
        except ValueError as e:
            p.error(str(e))
        if args.coordinator is not None:
            distributed.join(args.coordinator, args.num_processes, args.process_id)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)

    return one_line_errors(p.prog, lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from trainer import distributed
    from trainer.data import DataSelection
    from trainer.offline import OfflineConfig, evaluate, train_seeds

    if args.command == "train":
        tasks = tuple(args.tasks) if args.tasks else None
        split = None if tasks else (args.split or "demo-train")
        selection = DataSelection(env=args.env, split=split, tasks=tasks, quality=args.quality)
        config = OfflineConfig.profile(args.profile, env=args.env, algorithm=args.algorithm,
                                       **parse_overrides(args.set, OfflineConfig))
        selection = dataclasses.replace(selection, seed=config.seed)  # as the assets do
        results = train_seeds(Lake(args.lake), selection, config, args.seeds or [config.seed],
                              models_root(args.models))
        if distributed.is_primary():
            print("\n".join(str(r.run_dir) for r in results))
        return 0
    checkpoint = int(args.checkpoint) if args.checkpoint.isdigit() else args.checkpoint
    results = evaluate(Lake(args.lake), args.run_dir, tasks=args.tasks, split=args.split,
                       eval_config=EvalConfig(episodes=args.episodes, seed=args.seed,
                                              greedy=args.greedy, checkpoint=checkpoint),
                       write=not args.no_write)
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
