"""Random-policy environment throughput of `trainer.envs` (env-steps/s, after compilation).

Two figures per task, both B vmapped envs x T scanned steps with uniform-random legal actions:
- `step`: the bare loop (step_batch + action sampling, only a reward sum kept): what a
  trainer that consumes steps on the fly sees;
- `rollout`: `random_rollout`, which also stacks every EnvStep and action ([T + 1, B, ...]),
  as data collection does.

    .venv/bin/python benchmarks/env_throughput.py [--num-envs 256] [--num-steps 128]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp

from trainer.envs import make_env, random_actions, random_rollout

DEFAULT_TASKS = ("lbf/8x8-2p-2f", "rware/tiny-2ag", "rware/medium-32ag", "connector/12x12x4a")


def bare_random_loop(env, num_envs: int, num_steps: int):
    """A jitted scan of uniform-random steps of `num_envs` vmapped envs: the env's limit."""

    @jax.jit
    def run(key):
        state, step = env.reset_batch(key, num_envs)

        def body(carry, k):
            state, step, total = carry
            state, step = env.step_batch(state, random_actions(k, step.legal))
            return (state, step, total + step.reward.sum()), None

        init = (state, step, jnp.zeros((), jnp.float32))
        (_, _, total), _ = jax.lax.scan(body, init, jax.random.split(key, num_steps))
        return total

    return run


def _time(fn, repeats: int) -> float:
    jax.block_until_ready(fn(0))  # compile + warm up
    best = float("inf")
    for i in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(i + 1))
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--num-steps", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tasks", nargs="*", default=list(DEFAULT_TASKS))
    args = parser.parse_args()
    b, t = args.num_envs, args.num_steps
    print(f"jax {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind}), "
          f"{platform.machine()}, {os.cpu_count()} CPUs; {b} envs x {t} steps, best of "
          f"{args.repeats}")
    print(f"{'task':24s} {'step env-steps/s':>18s} {'rollout env-steps/s':>20s} {'compile s':>10s}")
    for name in args.tasks:
        env = make_env(name)
        t0 = time.perf_counter()
        bare = bare_random_loop(env, b, t)
        jax.block_until_ready(bare(jax.random.PRNGKey(0)))
        compile_s = time.perf_counter() - t0
        bare_s = _time(lambda i, bare=bare: bare(jax.random.PRNGKey(i)), args.repeats)
        roll_s = _time(
            lambda i, env=env: random_rollout(env, jax.random.PRNGKey(i), b, t), args.repeats
        )
        print(f"{name:24s} {b * t / bare_s:18,.0f} {b * t / roll_s:20,.0f} {compile_s:10.1f}")


if __name__ == "__main__":
    main()
