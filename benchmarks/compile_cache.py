"""Compilation with and without the persistent JAX cache: one online task, cold then warm.

Each run is a fresh process (`python -m trainer.online`) on a tiny budget, so what differs
between runs is only whether the compiled programs are already on disk. The figure is the
run's own `compile_s` (every program it compiles before the first update) and its wall time.

    .venv/bin/python benchmarks/compile_cache.py [--task lbf/8x8-2p-2f] [--runs 2]
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


def online_run(task: str, tmp: str, settings: list[str], **env_vars: str) -> dict:
    """`python -m trainer.online TASK --set SETTINGS` in a process of its own, its lake and
    checkpoints under `tmp`, with `env_vars` (`SABLE_JAX_CACHE`, `XLA_FLAGS`) on top of this
    process's environment: the run's JSON summary plus its wall and CPU (user + sys)
    seconds. A failed run ends this script with the run's last line of stderr."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **env_vars}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "trainer.online", task, "--lake", f"{tmp}/lake", "--fresh",
         "--checkpoint-dir", f"{tmp}/ckpt", "--set", *settings],
        env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(done.stderr.strip().splitlines()[-1] if done.stderr.strip()
                 else f"trainer.online exited with {done.returncode}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = json.loads(done.stdout[done.stdout.index("{"):])
    return {**summary, "wall_s": wall, "cpu_s": cpu}


def run_once(task: str, cache: str, tmp: str) -> dict:
    return online_run(task, tmp, ["total_env_steps=20000", "num_checkpoints=2",
                                  "episodes_per_checkpoint=4", "reference_episodes=4"],
                      SABLE_JAX_CACHE=cache)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", default="lbf/8x8-2p-2f")
    parser.add_argument("--runs", type=int, default=2, help="warm runs after the cold one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for label, cache in [("off", "off")] + [("cold", f"{tmp}/jax")] + [
            ("warm", f"{tmp}/jax")
        ] * args.runs:
            result = run_once(args.task, cache, tmp)
            print(f"{label:5s} compile {result['compile_s']:6.1f} s   "
                  f"wall {result['wall_s']:6.1f} s   "
                  f"training {result['steps_per_s']:7.0f} env steps/s", flush=True)
    load = os.getloadavg()
    print(f"task {args.task}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; "
          f"load average at the end {load[0]:.2f}")


if __name__ == "__main__":
    main()
