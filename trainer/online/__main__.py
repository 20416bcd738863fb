"""CLI: train online Sable on one task and record its dataset into the lake.

    python -m trainer.online lbf/8x8-2p-2f --run sable-seed0 --set total_env_steps=1000000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys

from lake_schema.storage import Lake
from trainer.online.config import PROFILES, OnlineConfig
from trainer.online.train import train_online


def _parse_overrides(pairs: list[str]) -> dict[str, object]:
    """`name=value` pairs; values are read as JSON (numbers, true/false, null) or strings."""
    fields = {f.name for f in dataclasses.fields(OnlineConfig)}
    out: dict[str, object] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or name not in fields:
            raise SystemExit(f"--set {pair!r}: expected NAME=VALUE, NAME one of {sorted(fields)}")
        try:
            out[name] = json.loads(raw)
        except json.JSONDecodeError:
            out[name] = raw
    return out


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
    try:
        config = OnlineConfig.profile(args.profile, **_parse_overrides(args.set))
        result = train_online(
            args.task, config, Lake(args.root), args.run or f"sable-seed{config.seed}",
            checkpoint_dir=args.checkpoint_dir, resume=not args.fresh,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result.summary(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
