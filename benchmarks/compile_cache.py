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
import subprocess
import sys
import tempfile
import time


def run_once(task: str, cache: str, lake: str, checkpoints: str) -> dict:
    env = {**os.environ, "SABLE_JAX_CACHE": cache, "JAX_PLATFORMS": "cpu"}
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "trainer.online", task, "--lake", lake, "--fresh",
         "--checkpoint-dir", checkpoints, "--set", "total_env_steps=20000",
         "num_checkpoints=2", "episodes_per_checkpoint=4", "reference_episodes=4"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    summary = json.loads(out[out.index("{"):])
    return {"compile_s": summary["compile_s"], "wall_s": time.perf_counter() - start,
            "steps_per_s": summary["steps_per_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", default="lbf/8x8-2p-2f")
    parser.add_argument("--runs", type=int, default=2, help="warm runs after the cold one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for label, cache in [("off", "off")] + [("cold", f"{tmp}/jax")] + [
            ("warm", f"{tmp}/jax")
        ] * args.runs:
            result = run_once(args.task, cache, f"{tmp}/lake", f"{tmp}/ckpt")
            print(f"{label:5s} compile {result['compile_s']:6.1f} s   "
                  f"wall {result['wall_s']:6.1f} s   "
                  f"training {result['steps_per_s']:7.0f} env steps/s", flush=True)
    load = os.getloadavg()
    print(f"task {args.task}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; "
          f"load average at the end {load[0]:.2f}")


if __name__ == "__main__":
    main()
