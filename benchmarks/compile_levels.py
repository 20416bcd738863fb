"""Online Sable at XLA:CPU's LLVM optimisation levels: cold compile, training speed, CPU time.

    .venv/bin/python benchmarks/compile_levels.py --task lbf/10x10-3p-3f --levels 3 2 --repeats 2

Each run is `python -m trainer.online TASK` with the demo's settings and 100k env steps in a
process of its own, the persistent compilation cache off (`SABLE_JAX_CACHE=off`, so every
program compiles cold, as on a new machine) and `XLA_FLAGS=--xla_backend_optimization_level=N`
(every program at level N; `trainer.compiled` sets it per program instead). Levels alternate
within each repeat, so a drift of the machine's speed hits each level alike. Prints one line
per run: the compile time, env steps per second of the training updates, the final return,
and the process's wall and CPU (user + sys) seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

from compile_cache import online_run  # beside this script


def run_once(task: str, level: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run = online_run(task, tmp, [f"total_env_steps={steps}"], SABLE_JAX_CACHE="off",
                         XLA_FLAGS=f"--xla_backend_optimization_level={level}")
    return {"level": level, **{k: run[k] for k in ("compile_s", "steps_per_s",
                                                    "final_return")},
            "wall_s": round(run["wall_s"], 1), "cpu_s": round(run["cpu_s"], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="lbf/10x10-3p-3f")
    parser.add_argument("--levels", type=int, nargs="+", default=[3, 2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=100_000)
    args = parser.parse_args()
    print(f"{args.task}, {args.steps:,} env steps; load average {os.getloadavg()[0]:.2f}")
    for _ in range(args.repeats):
        for level in args.levels:
            print(json.dumps(run_once(args.task, level, args.steps)), flush=True)


if __name__ == "__main__":
    main()
