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
import resource
import subprocess
import sys
import tempfile
import time


def run_once(task: str, level: int, steps: int) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SABLE_JAX_CACHE": "off", "JAX_PLATFORMS": "cpu",
               "XLA_FLAGS": f"--xla_backend_optimization_level={level}"}
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "trainer.online", task, "--lake", f"{tmp}/lake",
             "--checkpoint-dir", f"{tmp}/ck", "--set", f"total_env_steps={steps}"],
            env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(done.stderr.strip().splitlines()[-1] if done.stderr.strip()
                 else f"trainer.online exited with {done.returncode}")
    out = done.stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = json.loads(out[out.index("{"):])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"level": level, "compile_s": summary["compile_s"],
            "steps_per_s": summary["steps_per_s"], "final_return": summary["final_return"],
            "wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}


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
