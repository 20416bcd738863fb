"""The online loop near its limit: env steps/s of online Sable's update, one update per call
against several per call, beside (a) random-policy stepping of the same environments and
(b) the network's learning half alone (the PPO epochs' forward + backward + Adam over one
rollout's batch of the same shapes), and the rollout (acting) alone; all in one run.

    .venv/bin/python benchmarks/online_dispatch.py lbf/8x8-2p-2f --updates 6

Every figure is env steps per second (B environments x T steps per update), the best of
`--repeats` timings after compilation. Results (JSON) go to
benchmarks/_data/online_dispatch_<env>_<scenario>.json; the write-up is in RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np
from env_throughput import bare_random_loop  # beside this script

from trainer.cli_overrides import parse_overrides
from trainer.envs import make_env
from trainer.networks import Sable
from trainer.online import OnlineConfig
from trainer.online.ppo import (
    collect,
    init_ppo_state,
    make_ppo_learn,
    make_ppo_update,
    sable_config,
)

OUT = Path(__file__).parent / "_data"


def best_time(fn, repeats: int) -> float:
    """Seconds of the fastest of `repeats` calls of `fn` (after one warm-up call)."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task")
    parser.add_argument("--updates", type=int, default=6, help="updates per timing")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()

    config = OnlineConfig.profile(args.profile, env=args.task.split("/")[0],
                                  **parse_overrides(args.set, OnlineConfig))
    env = make_env(args.task)
    model = Sable(sable_config(config, env))
    steps = config.num_envs * config.rollout_length  # env steps per update
    k = args.updates
    update = make_ppo_update(env, model, config)
    state = init_ppo_state(env, model, config, jax.random.PRNGKey(0), 1_000)
    holder = {"state": state}
    learn = np.bool_(True)

    def calls_of(n: int, calls: int):
        def run():
            for _ in range(calls):
                holder["state"], metrics, _ = update(holder["state"], np.int32(n), learn,
                                                     np.bool_(False))
                jax.device_get(metrics)  # what the training loop does after every call
            return holder["state"].update
        return run

    one_per_call = best_time(calls_of(1, k), args.repeats)
    all_in_one = best_time(calls_of(k, 1), args.repeats)

    # (b) the learning half alone, on one real rollout's batch
    state = holder["state"]
    rollout = jax.jit(lambda s, a, b: collect(env, model, config, s, a, b)[0])
    batch = rollout(state, jax.random.PRNGKey(1), jax.random.PRNGKey(2))
    learn = jax.jit(make_ppo_learn(model, config, env.num_agents))
    lr = np.float32(config.learning_rate)
    learn_s = best_time(lambda: learn(state.params, state.opt_state, batch,
                                      jax.random.PRNGKey(3), lr), args.repeats)
    rollout_s = best_time(lambda: rollout(state, jax.random.PRNGKey(4), jax.random.PRNGKey(5)),
                          args.repeats)
    # (a) random-policy stepping of the same B environments for T steps
    bare = bare_random_loop(env, config.num_envs, config.rollout_length)
    random_s = best_time(lambda: bare(jax.random.PRNGKey(6)), args.repeats)

    rates = {
        "update, 1 per call": k * steps / one_per_call,
        f"update, {k} per call": k * steps / all_in_one,
        "(b) learning half alone: epochs x minibatches of forward+backward+Adam": steps / learn_s,
        "rollout alone: Sable acting + env + GAE": steps / rollout_s,
        "(a) random-policy stepping": steps / random_s,
    }
    record = {
        "task": args.task,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
                   f"jax {jax.__version__} {jax.default_backend()}",
        "load_1min_at_end": os.getloadavg()[0],
        "command": "benchmarks/online_dispatch.py " + " ".join(
            [args.task, f"--updates {k}", f"--repeats {args.repeats}",
             f"--profile {args.profile}"] + (["--set", *args.set] if args.set else [])),
        "shapes": {"B": config.num_envs, "T": config.rollout_length, "N": env.num_agents,
                   "embed": config.embed_dim, "epochs": config.ppo_epochs,
                   "minibatches": config.num_minibatches},
        "env_steps_per_s": {name: round(v, 1) for name, v in rates.items()},
        "update_vs_learning_half": round(rates[f"update, {k} per call"] / rates[
            "(b) learning half alone: epochs x minibatches of forward+backward+Adam"], 3),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    name = args.task.replace("/", "_")
    (OUT / f"online_dispatch_{name}.json").write_text(json.dumps(record, indent=1))
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
