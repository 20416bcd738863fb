"""CLI: train online Sable on one task and record its dataset into the lake.

    python -m trainer.online lbf/8x8-2p-2f --run sable-seed0 --set total_env_steps=1000000
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from lake_schema.storage import Lake
from trainer.cli_overrides import one_line_errors, parse_overrides
from trainer.online.config import PROFILES, OnlineConfig
from trainer.online.training import train_online
from trainer.tasks import resolve_task


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.online", description=__doc__)
    parser.add_argument("task", help="catalogue task, env/scenario")
    parser.add_argument("--root", default=None, help="lake root (default $SABLE_LAKE or ./lake)")
    parser.add_argument("--run", default=None, help="run id (default sable-seed<seed>)")
    parser.add_argument("--profile", choices=PROFILES, default="demo")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="override OnlineConfig fields")
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--fresh", action="store_true", help="never resume, start over")
    args = parser.parse_args(argv)

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log = logging.getLogger("trainer.online")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # orbax/absl may configure the root logger: print once
    return one_line_errors(parser.prog, lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    config = OnlineConfig.profile(args.profile, env=resolve_task(args.task).env,
                                  **parse_overrides(args.set, OnlineConfig))
    result = train_online(
        args.task, config, Lake(args.root), args.run or f"sable-seed{config.seed}",
        checkpoint_dir=args.checkpoint_dir, resume=not args.fresh,
    )
    print(json.dumps(result.summary(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
