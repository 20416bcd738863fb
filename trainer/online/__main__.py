"""CLI: train online Sable on one task and record its dataset into the lake.

    python -m trainer.online lbf/8x8-2p-2f --run sable-seed0 --set total_env_steps=1000000

Every argument (the task, the profile, `--set` values, the run id, the lake root) is checked
before JAX is imported, so bad input is one line on stderr within a second or two: exit
status 2 for arguments, 1 for the lake. A missing lake root is created (with a warning).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from lake_schema.schema import validate_partition
from lake_schema.storage import Lake
from trainer.cli_overrides import HelpFormatter, one_line_errors, parse_overrides
from trainer.online.config import PROFILES, OnlineConfig, Schedule
from trainer.tasks import resolve_task


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer.online", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("task", help="catalogue task, env/scenario")
    parser.add_argument("--lake", default=None,
                        help="lake root (default: $SABLE_LAKE, else ./lake)")
    parser.add_argument("--run", default=None, help="run id (default: sable-seed<seed>)")
    parser.add_argument("--profile", choices=list(PROFILES), default="demo",
                        help="the OnlineConfig preset")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="override OnlineConfig fields (JSON values, else strings)")
    parser.add_argument("--checkpoint-dir", default=None,
                        help="orbax checkpoints (default: <$SABLE_CHECKPOINTS or ./checkpoints>"
                             "/online/<env>/<scenario>/<run>)")
    parser.add_argument("--fresh", action="store_true", help="never resume, start over")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log = logging.getLogger("trainer.online")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # orbax/absl may configure the root logger: print once
    return one_line_errors(parser.prog, lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    task = resolve_task(args.task)
    config = OnlineConfig.profile(args.profile, env=task.env,
                                  **parse_overrides(args.set, OnlineConfig))
    Schedule.of(task, config)  # the budget against the task
    run = args.run or f"sable-seed{config.seed}"
    validate_partition("references", {"env": task.env, "task": task.scenario, "run": run})
    lake = Lake(args.lake)
    lake.prepare_for_writing()  # a file root, an unsafe S3 endpoint
    from trainer.online.training import train_online  # JAX: only once the input is good

    result = train_online(task, config, lake, run, checkpoint_dir=args.checkpoint_dir,
                          resume=not args.fresh)
    print(json.dumps(result.summary(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
