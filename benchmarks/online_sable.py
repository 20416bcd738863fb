"""Online Sable learning curves vs the random policy, and training-loop throughput.

Per task: `train_online` (demo profile unless overridden) into a scratch lake, then
- the learning curve: mean return of the E recorded episodes at each checkpoint (plus the
  task's success measure: lbf return, rware deliveries per episode = return, connector
  fraction of agents connected, read from the recorded step rewards);
- throughput: env-steps/s of the jitted updates alone, of the training loop with recording
  (updates + blocking recording + waits for the background writer), and of random-policy
  stepping of the same B vmapped environments (a bare lax.scan of step_batch).

    .venv/bin/python benchmarks/online_sable.py lbf/8x8-2p-2f --budget 1000000
    .venv/bin/python benchmarks/online_sable.py rware/tiny-2ag --budget 2000000 \
        --set num_envs=64 rollout_length=128
Results (JSON) go to benchmarks/_data/online/<env>_<scenario>.json; the write-up is
benchmarks/online_sable.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import time
from pathlib import Path

import jax
import numpy as np
from env_throughput import bare_random_loop  # beside this script

from lake_schema.catalogue import get_task
from lake_schema.reader import Selection, read_table
from lake_schema.storage import Lake
from trainer.cli_overrides import parse_overrides
from trainer.envs import make_env
from trainer.online import OnlineConfig, train_online

OUT = Path(__file__).parent / "_data" / "online"


def random_steps_per_s(task: str, num_envs: int, num_steps: int, repeats: int = 3) -> float:
    """Env steps/s of uniform-random stepping of `num_envs` vmapped envs (after compiling)."""
    run = bare_random_loop(make_env(task), num_envs, num_steps)
    jax.block_until_ready(run(jax.random.PRNGKey(0)))
    best = float("inf")
    for i in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(run(jax.random.PRNGKey(i + 1)))
        best = min(best, time.perf_counter() - t0)
    return num_envs * num_steps / best


def success_per_checkpoint(lake: Lake, task_name: str, run: str) -> dict[int, float]:
    """The task's success measure per checkpoint, from the recorded rows."""
    task = get_task(task_name)
    sel = Selection(env=task.env, tasks=[task.scenario], runs=[run])
    if task.env != "connector":  # lbf: normalised return; rware: deliveries = return
        eps = read_table(lake, "episodes", sel, ["checkpoint", "return"])
        ck, ret = eps["checkpoint"].to_numpy(), eps["return"].to_numpy()
        return {int(k): float(ret[ck == k].mean()) for k in np.unique(ck)}
    # connector: each step's team reward is the mean over agents, so N x reward is
    # (#agents connecting now) - 0.03 * (#still unconnected); with at most 16 agents the
    # penalty is < 0.5, so round() counts connections.
    steps = read_table(lake, "steps", sel, ["checkpoint", "episode", "reward"])
    ck, ep = steps["checkpoint"].to_numpy(), steps["episode"].to_numpy()
    conn = np.round(steps["reward"].to_numpy() * task.num_agents).clip(min=0)
    out = {}
    for k in np.unique(ck):
        m = ck == k
        per_episode = np.bincount(ep[m], weights=conn[m])
        out[int(k)] = float(per_episode.mean() / task.num_agents)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task")
    parser.add_argument("--budget", type=int, required=True, help="env steps")
    parser.add_argument("--checkpoints", type=int, default=10)
    parser.add_argument("--episodes", type=int, default=32, help="episodes per checkpoint")
    parser.add_argument("--reference-episodes", type=int, default=128)
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logging.getLogger("trainer.online").addHandler(handler)
    logging.getLogger("trainer.online").setLevel(logging.INFO)
    logging.getLogger("trainer.online").propagate = False

    config = OnlineConfig.profile(
        args.profile, env=args.task.split("/")[0], total_env_steps=args.budget,
        num_checkpoints=args.checkpoints,
        episodes_per_checkpoint=args.episodes, reference_episodes=args.reference_episodes,
        progress_interval_s=30.0, **parse_overrides(args.set, OnlineConfig),
    )
    name = args.task.replace("/", "_")
    scratch = OUT / f"lake_{name}"
    shutil.rmtree(scratch, ignore_errors=True)
    lake = Lake(scratch / "lake")
    result = train_online(args.task, config, lake, "bench", checkpoint_dir=scratch / "ck",
                          resume=False)
    success = success_per_checkpoint(lake, args.task, "bench")
    random_sps = random_steps_per_s(args.task, config.num_envs, config.rollout_length)
    loop_s = result.train_s + result.record_s + result.write_wait_s
    record = {
        "task": args.task,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
                   f"jax {jax.__version__} {jax.default_backend()}",
        "command": "benchmarks/online_sable.py " + " ".join(
            [args.task, f"--budget {args.budget}", f"--checkpoints {args.checkpoints}",
             f"--episodes {args.episodes}", f"--reference-episodes {args.reference_episodes}",
             f"--profile {args.profile}"] + (["--set", *args.set] if args.set else [])),
        "config": json.loads(config.to_json()),
        "params": result.param_count,
        "env_steps": result.total_env_steps,
        "curve": [
            {"checkpoint": r.checkpoint, "env_steps": r.env_steps, "quality": r.quality,
             "mean_return": r.mean_return, "std_return": r.std_return,
             "success": success[r.checkpoint]}
            for r in result.curve
        ],
        "final_return": result.reference_return, "final_std": result.reference_std,
        "random_return": result.random_return, "random_std": result.random_std,
        "compile_s": result.compile_s, "train_s": result.train_s, "record_s": result.record_s,
        "write_s": result.write_s, "write_wait_s": result.write_wait_s,
        "reference_s": result.reference_s, "wall_s": result.wall_s,
        "train_steps_per_s": result.steps_per_s,
        "loop_steps_per_s_with_recording": result.trained_env_steps / loop_s,
        "random_steps_per_s": random_sps,
        "recording_fraction": result.recording_fraction,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(record, indent=1))
    shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps({k: v for k, v in record.items() if k != "config"}, indent=1))


if __name__ == "__main__":
    main()
